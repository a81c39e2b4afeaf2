#pragma once
// Models by name from the Hugging Face Hub, fetched the way huggingface_hub fetches
// them and kept in its cache layout, so the runner, huggingface_hub and transformers
// share one cache (docs/hub.md).
//
// Protocol: HEAD {HF_ENDPOINT}/{repo}/resolve/{revision}/{file} (redirects not followed
// by curl: relative ones, a renamed repo's, are followed here; an absolute one is the
// CDN of an LFS file), X-Repo-Commit, ETag / X-Linked-Etag, Content-Length /
// X-Linked-Size, X-Error-Code; then GET into blobs/{etag}.incomplete, resumed by Range.
//
// Environment read here (huggingface_hub's names):
//   HF_ENDPOINT (default https://huggingface.co), HF_HUB_CACHE (else HUGGINGFACE_HUB_CACHE,
//   else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub),
//   HF_TOKEN (else HUGGING_FACE_HUB_TOKEN, else the file HF_TOKEN_PATH or $HF_HOME/token,
//   else the secret --hf-token-secret names), HF_HUB_OFFLINE (1/true/yes/on: no network,
//   the cache only), HF_HUB_DISABLE_PROGRESS_BARS (no bar on a terminal's stderr);
// and the runner's RUNNER_HUB_MAX_ATTEMPTS (default 5) and RUNNER_AWS_RETRY_BASE_MS
// (the shared backoff of runner/cloud).
//
// Exit codes: EXIT_BAD_INPUT (3) for a repo, revision or file that does not exist, a
// gated or private repo, a pickle-only repo, a shard the index names that the repo
// lacks, and a file the offline cache lacks;
// EXIT_REMOTE_IO (84) once the retries are spent (the partial .incomplete is kept for
// the next attempt) and after a second checksum mismatch; EXIT_OUTPUT (4) when the
// cache cannot be written (a full disk: the partial blob is removed, nothing is linked);
// EXIT_USAGE (2) for a malformed id or revision.
#include <stdbool.h>
#include <stddef.h>

enum { HUB_REPO_ID_MAX = 128, HUB_REVISION_MAX = 256 };

typedef struct {
    char repo_id[HUB_REPO_ID_MAX];   // "org/name"
    char revision[HUB_REVISION_MAX]; // "main", a branch, a tag, "refs/pr/N" or a commit
} hub_ref;

// True when `spec` reads as a Hub model id ("org/name" or "org/name@rev", the names
// huggingface_hub accepts) and names no existing local file or folder: a local path
// wins, as in from_pretrained. s3:// URIs are never ids.
bool hub_is_model_id(const char *spec);

// "org/name[@rev]" -> ref. `revision` (--revision; NULL or "" for none) sets the
// revision; naming two different ones is EXIT_USAGE. The default revision is "main".
int hub_ref_parse(const char *spec, const char *revision, hub_ref *out);

// The cache root huggingface_hub uses (see the variables above) into out[n].
int hub_cache_dir(char *out, size_t n);

// Fetch what a model needs into the cache: config.json, model.safetensors (else a
// sharded checkpoint: model.safetensors.index.json and every shard its weight_map
// names), and the tokenizer files the repo has (vocab.txt, tokenizer.json, vocab.json,
// merges.txt, tokenizer_config.json, special_tokens_map.json). The snapshot folder
// ({cache}/models--org--name/snapshots/{commit}) goes into dir[n]. Concurrent callers on
// one cache (workers, containers on a shared volume) download each file once.
// `token_secret` (--hf-token-secret; NULL or "" for none) names a Secrets Manager secret
// read for the token when neither HF_TOKEN nor a token file gives one.
int hub_fetch_model(const hub_ref *ref, const char *token_secret, char *dir, size_t n);
