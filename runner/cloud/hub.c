// The Hugging Face Hub client: huggingface_hub's hf_hub_download, in C, over the request
// engine of runner/cloud (aws_send: retries with full jitter, sinks resumed by Range).
// Each file: metadata by HEAD, then blobs/{etag}.incomplete, checked (size, and sha256
// for LFS files), renamed to blobs/{etag} and linked from snapshots/{commit}/{file}
// under a lock in {cache}/.locks, as huggingface_hub does, so either program finds
// what the other wrote.
#include "runner/cloud/hub.h"

#include "runner/cloud/aws.h"
#include "runner/cloud/cloud.h"
#include "runner/cloud/hub_internal.h"
#include "runner/cloud/hub_progress.h"
#include "runner/error.h"
#include "runner/job/files.h"
#include "runner/log.h"
#include "runner/model/safetensors.h"
#include "runner/telemetry.h"
#include "runner/timing.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

// ---- names ----------------------------------------------------------------------------

// One part of an id: [\w.-]+ without an edge '.' or '-' (the \b of its regex).
static bool id_part_valid(const char *part, const char *end) {
    if (end == part) return false;
    for (const char *c = part; c < end; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-' && *c != '.') return false;
    return (isalnum((unsigned char)*part) || *part == '_') &&
           (isalnum((unsigned char)end[-1]) || end[-1] == '_');
}

// huggingface_hub's validate_repo_id: "name" or "org/name", no "--" or "..", at most 96
// characters. Org-less names are the Hub's legacy ones ("bert-base-uncased", which the
// Hub redirects to google-bert/bert-base-uncased), as the original job named them.
static bool repo_id_valid(const char *id) {
    size_t len = strlen(id);
    if (len == 0 || len > 96 || strstr(id, "--") || strstr(id, "..")) return false;
    const char *slash = strchr(id, '/');
    if (!slash) return id_part_valid(id, id + len);
    return !strchr(slash + 1, '/') && id_part_valid(id, slash) &&
           id_part_valid(slash + 1, id + len);
}

// A revision becomes a path under refs/ (refs/pr/1 included): no empty, "." or ".."
// component, only the characters git allows in the names the Hub hands out.
static bool revision_valid(const char *rev) {
    size_t len = strlen(rev);
    if (len == 0 || len >= HUB_REVISION_MAX || rev[0] == '/' || rev[len - 1] == '/') return false;
    if (strstr(rev, "//") || strstr(rev, "..")) return false;
    for (const char *c = rev; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("._-/+", *c)) return false;
    for (const char *part = rev; part; part = strchr(part, '/') ? strchr(part, '/') + 1 : NULL)
        if (part[0] == '.' && (part[1] == '/' || part[1] == '\0')) return false;
    return true;
}

static bool is_commit_hash(const char *s) {
    size_t n = 0;
    for (; s[n]; n++)
        if (!isxdigit((unsigned char)s[n]) || isupper((unsigned char)s[n])) return false;
    return n == 40;
}

// Copy a commit id that passed is_commit_hash (40 characters) into its 41-byte home.
static void commit_copy(char dst[41], const char *src) {
    memcpy(dst, src, 40);
    dst[40] = '\0';
}

bool hub_is_model_id(const char *spec) {
    if (!spec || !*spec || strncmp(spec, "s3://", 5) == 0) return false;
    struct stat st;
    if (stat(spec, &st) == 0) return false;
    char id[HUB_REPO_ID_MAX];
    const char *at = strchr(spec, '@');
    size_t len = at ? (size_t)(at - spec) : strlen(spec);
    if (len >= sizeof id) return false;
    memcpy(id, spec, len);
    id[len] = '\0';
    return repo_id_valid(id) && (!at || revision_valid(at + 1));
}

int hub_ref_parse(const char *spec, const char *revision, hub_ref *out) {
    memset(out, 0, sizeof *out);
    const char *at = strchr(spec, '@');
    size_t len = at ? (size_t)(at - spec) : strlen(spec);
    if (len >= sizeof out->repo_id)
        return error_set(EXIT_USAGE, "Hub model id \"%s\" is too long", spec);
    memcpy(out->repo_id, spec, len);
    if (!repo_id_valid(out->repo_id))
        return error_set(EXIT_USAGE, "\"%s\" is not a Hub model id ([org/]name[@revision])", spec);
    const char *rev = at ? at + 1 : NULL;
    if (revision && *revision) {
        if (rev && strcmp(rev, revision) != 0)
            return error_set(EXIT_USAGE, "%s names revision %s but --revision is %s", spec, rev,
                             revision);
        rev = revision;
    }
    if (!rev) rev = "main";
    if (!revision_valid(rev))
        return error_set(EXIT_USAGE, "\"%s\" is not a revision (a branch, tag, refs/pr/N or "
                         "commit)", rev);
    snprintf(out->revision, sizeof out->revision, "%s", rev);
    return 0;
}

static bool env_true(const char *name) {
    const char *v = getenv(name);
    return v && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 ||
                 strcasecmp(v, "yes") == 0 || strcasecmp(v, "on") == 0);
}

static const char *env_nonempty(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int hub_home_dir(char *out, size_t n) {
    const char *v;
    if ((v = env_nonempty("HF_HOME"))) return files_join(out, n, "%s", v);
    if ((v = env_nonempty("XDG_CACHE_HOME"))) return files_join(out, n, "%s/huggingface", v);
    if ((v = env_nonempty("HOME"))) return files_join(out, n, "%s/.cache/huggingface", v);
    return error_set(EXIT_USAGE, "no Hugging Face cache: set HF_HUB_CACHE or HF_HOME (no HOME)");
}

int hub_cache_dir(char *out, size_t n) {
    const char *v;
    if ((v = env_nonempty("HF_HUB_CACHE")) || (v = env_nonempty("HUGGINGFACE_HUB_CACHE")))
        return files_join(out, n, "%s", v);
    char home[PATH_MAX];
    int rc = hub_home_dir(home, sizeof home);
    return rc ? rc : files_join(out, n, "%s/hub", home);
}

// ---- one session: endpoint, token, cache folders of one repo --------------------------

typedef struct {
    const hub_ref *ref;
    bool offline;
    int max_attempts;
    char endpoint[512];   // no trailing slash
    char token[1024];     // "" when anonymous
    char cache[PATH_MAX]; // the cache root
    char repo[PATH_MAX];  // {cache}/models--org--name
    char locks[PATH_MAX]; // {cache}/.locks/models--org--name
    char commit[41];      // the revision's commit once known
} hub_session;

static int session_open(hub_session *s, const hub_ref *ref, const char *token_secret) {
    memset(s, 0, sizeof *s);
    s->ref = ref;
    s->offline = env_true("HF_HUB_OFFLINE");
    const char *v = env_nonempty("RUNNER_HUB_MAX_ATTEMPTS");
    s->max_attempts = v ? atoi(v) : 5;
    if (s->max_attempts < 1) s->max_attempts = 1;
    v = env_nonempty("HF_ENDPOINT");
    snprintf(s->endpoint, sizeof s->endpoint, "%s", v ? v : "https://huggingface.co");
    size_t len = strlen(s->endpoint);
    while (len && s->endpoint[len - 1] == '/') s->endpoint[--len] = '\0';
    int rc = hub_cache_dir(s->cache, sizeof s->cache);
    char folder[HUB_REPO_ID_MAX + 16];
    snprintf(folder, sizeof folder, "models--%s", ref->repo_id);
    char *slash = strchr(folder, '/');
    if (slash) { // "org/name" -> "org--name", huggingface_hub's repo_folder_name
        memmove(slash + 2, slash + 1, strlen(slash + 1) + 1);
        slash[0] = slash[1] = '-';
    }
    if (rc == 0) rc = files_join(s->repo, sizeof s->repo, "%s/%s", s->cache, folder);
    if (rc == 0) rc = files_join(s->locks, sizeof s->locks, "%s/.locks/%s", s->cache, folder);
    if (rc == 0 && !s->offline) rc = hub_token_load(token_secret, s->token, sizeof s->token);
    return rc;
}

// ---- cache paths ----------------------------------------------------------------------

// The commit a revision points at in the cache (refs/{revision}), or the revision itself
// when it is a commit. 0 when known.
static int cached_commit(const hub_session *s, char commit[41]) {
    if (is_commit_hash(s->ref->revision)) {
        commit_copy(commit, s->ref->revision);
        return 0;
    }
    char path[PATH_MAX], *text = NULL;
    if (files_join(path, sizeof path, "%s/refs/%s", s->repo, s->ref->revision)) return -1;
    if (!files_exists(path)) return -1;
    if (files_read_all(path, &text, NULL)) {
        error_clear();
        return -1;
    }
    size_t n = strlen(text);
    while (n && isspace((unsigned char)text[n - 1])) text[--n] = '\0';
    bool ok = is_commit_hash(text);
    if (ok) commit_copy(commit, text);
    free(text);
    return ok ? 0 : -1;
}

// refs/{revision} <- commit, atomically, when it says something else.
static int ref_write(const hub_session *s) {
    if (is_commit_hash(s->ref->revision)) return 0;
    char have[41];
    if (cached_commit(s, have) == 0 && strcmp(have, s->commit) == 0) return 0;
    char path[PATH_MAX];
    int rc = files_join(path, sizeof path, "%s/refs/%s", s->repo, s->ref->revision);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    if (rc == 0) rc = files_mkdirs(dir);
    return rc ? rc : files_write_text(path, s->commit);
}

static int snapshot_path(const hub_session *s, const char *commit, const char *file, char *out,
                         size_t n) {
    return files_join(out, n, "%s/snapshots/%s/%s", s->repo, commit, file);
}

// snapshots/{commit}/{file} -> ../../blobs/{etag} (one more ../ per folder in `file`),
// made under a temporary name and renamed, so the link appears whole or not at all.
static int snapshot_link(const hub_session *s, const char *file, const char *etag) {
    char link[PATH_MAX], tmp[PATH_MAX + 32], target[PATH_MAX] = "", dir[PATH_MAX];
    int rc = snapshot_path(s, s->commit, file, link, sizeof link);
    if (rc) return rc;
    snprintf(dir, sizeof dir, "%s", link);
    *strrchr(dir, '/') = '\0';
    if ((rc = files_mkdirs(dir))) return rc;
    size_t ups = 2;
    for (const char *c = file; *c; c++) ups += *c == '/';
    for (size_t i = 0; i < ups; i++) strcat(target, "../");
    strcat(target, "blobs/");
    strncat(target, etag, sizeof target - strlen(target) - 1);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", link, (long)getpid());
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
        int e = errno;
        unlink(tmp);
        return error_set(EXIT_OUTPUT, "%s: cannot link the cache snapshot: %s", link, strerror(e));
    }
    return 0;
}

// ---- metadata (HEAD) ------------------------------------------------------------------

typedef struct {
    char commit[64];
    char etag[160];        // ETag (git blob id of a small file)
    char linked_etag[160]; // X-Linked-Etag (sha256 of an LFS file)
    long long linked_size; // X-Linked-Size, -1 when absent
    long long length;      // Content-Length, -1 when absent
    char error_code[64];   // X-Error-Code
    char error_message[256];
    char location[2048];
} hub_headers;

static void header_value(const char *line, const char *name, char *out, size_t n) {
    size_t len = strlen(name);
    if (strncasecmp(line, name, len) != 0 || line[len] != ':') return;
    const char *v = line + len + 1;
    while (*v == ' ' || *v == '\t') v++;
    aws_copy(out, n, v);
}

static void on_hub_header(void *ud, const char *line) {
    hub_headers *h = ud;
    if (strncasecmp(line, "HTTP/", 5) == 0) { // a new response: forget the last one's
        memset(h, 0, sizeof *h);
        h->linked_size = h->length = -1;
        return;
    }
    char number[32] = "";
    header_value(line, "X-Repo-Commit", h->commit, sizeof h->commit);
    header_value(line, "ETag", h->etag, sizeof h->etag);
    header_value(line, "X-Linked-Etag", h->linked_etag, sizeof h->linked_etag);
    header_value(line, "X-Error-Code", h->error_code, sizeof h->error_code);
    header_value(line, "X-Error-Message", h->error_message, sizeof h->error_message);
    header_value(line, "Location", h->location, sizeof h->location);
    header_value(line, "X-Linked-Size", number, sizeof number);
    if (number[0]) h->linked_size = strtoll(number, NULL, 10);
    number[0] = '\0';
    header_value(line, "Content-Length", number, sizeof number);
    if (number[0]) h->length = strtoll(number, NULL, 10);
}

// huggingface_hub's _normalize_etag: drop a weak "W/" and the quotes.
static void etag_normalize(const char *in, char *out, size_t n) {
    if (strncmp(in, "W/", 2) == 0) in += 2;
    while (*in == '"') in++;
    aws_copy(out, n, in);
    size_t len = strlen(out);
    while (len && out[len - 1] == '"') out[--len] = '\0';
}

// An etag names a file in blobs/: hex digits (a git id or a sha256) and nothing else.
static bool etag_valid(const char *etag) {
    size_t n = 0;
    for (; etag[n]; n++)
        if (!isxdigit((unsigned char)etag[n])) return false;
    return n >= 32 && n <= 128;
}

typedef struct {
    char etag[160];
    long long size;
    bool lfs;             // the etag is the content's sha256
    char url[2048];       // where to GET it
    bool url_is_endpoint; // on the Hub's own host: the token may go there
} file_meta;

// Same scheme, host and port (curl's URL parser decides what each part is).
static bool same_origin(const char *a, const char *b) {
    CURLU *ua = curl_url(), *ub = curl_url();
    bool same = false;
    if (ua && ub && curl_url_set(ua, CURLUPART_URL, a, 0) == CURLUE_OK &&
        curl_url_set(ub, CURLUPART_URL, b, 0) == CURLUE_OK) {
        same = true;
        const CURLUPart parts[] = {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT};
        for (size_t i = 0; i < 3 && same; i++) {
            char *x = NULL, *y = NULL;
            curl_url_get(ua, parts[i], &x, CURLU_DEFAULT_PORT);
            curl_url_get(ub, parts[i], &y, CURLU_DEFAULT_PORT);
            same = x && y && strcasecmp(x, y) == 0;
            curl_free(x);
            curl_free(y);
        }
    }
    curl_url_cleanup(ua);
    curl_url_cleanup(ub);
    return same;
}

// A redirect's Location resolved against the URL it answered.
static bool is_relative(const char *location) {
    return location[0] == '/' && location[1] != '/';
}

static int resolve_location(const char *base, const char *location, char *out, size_t n) {
    CURLU *u = curl_url();
    char *full = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
              curl_url_set(u, CURLUPART_URL, location, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK && strlen(full) < n;
    if (ok) snprintf(out, n, "%s", full);
    curl_free(full);
    curl_url_cleanup(u);
    return ok ? 0 : error_set(EXIT_REMOTE_IO, "the Hub redirected to \"%s\", not a URL", location);
}

static struct curl_slist *auth_headers(const hub_session *s, bool to_endpoint) {
    struct curl_slist *h = curl_slist_append(NULL, "Accept-Encoding: identity");
    if (to_endpoint && s->token[0]) {
        char line[1100];
        snprintf(line, sizeof line, "Authorization: Bearer %s", s->token);
        h = curl_slist_append(h, line);
    }
    return h;
}

// Map a final Hub answer that is not a file to an exit code and a one-line reason.
static int hub_error(const hub_session *s, const char *file, long status, const hub_headers *h) {
    const char *repo = s->ref->repo_id, *rev = s->ref->revision, *code = h->error_code;
    if (strcmp(code, "GatedRepo") == 0)
        return error_set(EXIT_BAD_INPUT, "%s is gated: accept its licence at %s/%s and set "
                         "HF_TOKEN to a token of that account (HTTP %ld)", repo, s->endpoint,
                         repo, status);
    if (strcmp(code, "RepoNotFound") == 0)
        return error_set(EXIT_BAD_INPUT, "%s: repository not found on %s (a private repo needs "
                         "HF_TOKEN) (HTTP %ld)", repo, s->endpoint, status);
    if (strcmp(code, "RevisionNotFound") == 0)
        return error_set(EXIT_BAD_INPUT, "%s: revision \"%s\" not found (HTTP %ld)", repo, rev,
                         status);
    if (strcmp(code, "EntryNotFound") == 0 || status == 404)
        return error_set(EXIT_BAD_INPUT, "%s@%s: file %s not found (HTTP %ld)", repo, rev, file,
                         status);
    if (status == 401 || status == 403)
        return error_set(EXIT_BAD_INPUT, "%s: access refused (HTTP %ld%s%s): set HF_TOKEN, and "
                         "accept the licence at %s/%s if the repo is gated", repo, status,
                         h->error_message[0] ? ": " : "", h->error_message, s->endpoint, repo);
    return error_set(EXIT_BAD_INPUT, "%s@%s: %s: the Hub answered HTTP %ld %s", repo, rev, file,
                     status, code);
}

// The HEAD of huggingface_hub's get_hf_file_metadata. 0 with *absent = true when the
// Hub says the file does not exist (EntryNotFound) and `optional`.
static int file_metadata(hub_session *s, const char *file, bool optional, file_meta *out,
                         bool *absent) {
    *absent = false;
    memset(out, 0, sizeof *out);
    char *rev = aws_uri_encode(s->ref->revision, false), *name = aws_uri_encode(file, true);
    char url[2048];
    int rc = rev && name ? 0 : error_set(EXIT_INTERNAL, "out of memory");
    if (rc == 0)
        rc = files_join(url, sizeof url, "%s/%s/resolve/%s/%s", s->endpoint, s->ref->repo_id, rev,
                        name);
    free(rev);
    free(name);
    if (rc) return rc;
    char what[2300];
    hub_headers h;
    aws_response resp = {0};
    for (int hop = 0;; hop++) {
        snprintf(what, sizeof what, "HEAD %s", url);
        bool to_endpoint = same_origin(url, s->endpoint);
        struct curl_slist *headers = auth_headers(s, to_endpoint);
        memset(&h, 0, sizeof h);
        h.linked_size = h.length = -1;
        aws_request req = {.method = "HEAD", .url = url, .headers = headers, .body_fd = -1,
                           .timeout_ms = 10000, .max_attempts = s->max_attempts,
                           .on_header = on_hub_header, .hook_ud = &h};
        rc = aws_send(&req, &resp, what);
        curl_slist_free_all(headers);
        aws_response_free(&resp);
        if (rc) return rc;
        // A renamed or moved repo answers a relative redirect to its new name: follow it
        // (as huggingface_hub does); an absolute one is the CDN of an LFS file.
        if (resp.status >= 300 && resp.status < 400 && is_relative(h.location)) {
            if (hop >= 10) return error_set(EXIT_REMOTE_IO, "%s: more than 10 redirects", what);
            char next[2048];
            if ((rc = resolve_location(url, h.location, next, sizeof next))) return rc;
            snprintf(url, sizeof url, "%s", next);
            continue;
        }
        break;
    }
    if (resp.status >= 400) {
        if (optional && strcmp(h.error_code, "EntryNotFound") == 0) {
            *absent = true;
            if (!s->commit[0] && is_commit_hash(h.commit))
                commit_copy(s->commit, h.commit);
            return 0;
        }
        return hub_error(s, file, resp.status, &h);
    }
    if (!is_commit_hash(h.commit))
        return error_set(EXIT_REMOTE_IO, "%s: no X-Repo-Commit in the answer: %s does not look "
                         "like a Hugging Face Hub (HF_ENDPOINT; a proxy in the way?)", what,
                         s->endpoint);
    if (s->commit[0] && strcmp(s->commit, h.commit) != 0)
        return error_set(EXIT_REMOTE_IO, "%s: the revision moved from %s to %s while its files "
                         "were fetched; run again", what, s->commit, h.commit);
    commit_copy(s->commit, h.commit);
    etag_normalize(h.linked_etag[0] ? h.linked_etag : h.etag, out->etag, sizeof out->etag);
    if (!etag_valid(out->etag))
        return error_set(EXIT_REMOTE_IO, "%s: the Hub's ETag \"%s\" is not a content id", what,
                         out->etag);
    out->lfs = h.linked_etag[0] && strlen(out->etag) == 64;
    out->size = h.linked_size >= 0 ? h.linked_size : h.length;
    if (out->size < 0) return error_set(EXIT_REMOTE_IO, "%s: the Hub gave no file size", what);
    if (resp.status >= 300 && resp.status < 400 && h.location[0]) {
        if ((rc = resolve_location(url, h.location, out->url, sizeof out->url))) return rc;
    } else {
        snprintf(out->url, sizeof out->url, "%s", url);
    }
    out->url_is_endpoint = same_origin(out->url, s->endpoint);
    return 0;
}

// ---- download -------------------------------------------------------------------------

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

// Bytes free to this process on the filesystem of the folder holding `file`, -1 when
// unknown.
static long long free_bytes(const char *file) {
    char dir[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    struct statvfs st;
    return statvfs(slash ? dir : ".", &st) == 0 ? (long long)st.f_bavail * (long long)st.f_frsize
                                                : -1;
}

// The blob could not be written. When the filesystem is full, its part is removed: on a
// full disk it only holds the space other files need (nothing under a final name refers
// to it), and one line names the path, the size and the space there is. Other causes
// (permissions, I/O errors) keep aws_send's reason and the part.
static int blob_write_failed(const hub_session *s, const char *file, const file_meta *m,
                             const char *partial) {
    long long have = file_size(partial), room = free_bytes(partial);
    if (room < 0 || room >= m->size - (have > 0 ? have : 0)) return EXIT_OUTPUT;
    char why[1024];
    snprintf(why, sizeof why, "%s", error_message());
    unlink(partial);
    return error_set(EXIT_OUTPUT, "%s (%s@%s: %s has %lld bytes, %lld are free in the cache %s "
                     "without its partial download, which was removed: give HF_HUB_CACHE more "
                     "room)", why, s->ref->repo_id, s->ref->revision, file, m->size,
                     free_bytes(partial), s->cache);
}

// GET into blob.incomplete (resumed), check, rename to blob. Called under the lock.
static int blob_download(const hub_session *s, const char *file, const file_meta *m,
                         const char *blob) {
    char partial[PATH_MAX + 16], what[2300];
    snprintf(partial, sizeof partial, "%s.incomplete", blob);
    snprintf(what, sizeof what, "GET %s/%s (%s)", s->ref->repo_id, file, s->ref->revision);
    for (int check = 0;; check++) {
        long long have = file_size(partial);
        if (have > m->size) { // not a prefix of this blob: start over
            unlink(partial);
            have = 0;
        }
        if (have > 0)
            log_info("hub_resume", "%s: resuming %s at byte %lld of %lld", s->ref->repo_id, file,
                     have, m->size);
        // huggingface_hub's check before a download: a warning, as statvfs can be wrong
        // (network filesystems); a full disk then fails the write itself (blob_write_failed).
        long long room = free_bytes(partial), need = m->size - (have > 0 ? have : 0);
        if (room >= 0 && room < need)
            log_warn("hub_disk_space", "%s: %s needs %lld more bytes but the cache %s has %lld "
                     "free", s->ref->repo_id, file, need, s->cache, room);
        if (have < m->size || have < 0) {
            hub_progress p;
            hub_progress_begin(&p, file, have, m->size);
            struct curl_slist *headers = auth_headers(s, m->url_is_endpoint);
            aws_request req = {.method = "GET", .url = m->url, .headers = headers, .body_fd = -1,
                               .sink_path = partial, .sink_resume = true,
                               .max_attempts = s->max_attempts,
                               .on_sink_write = hub_progress_update, .hook_ud = &p};
            aws_response resp = {0};
            int rc = aws_send(&req, &resp, what);
            hub_progress_end(&p, file_size(partial));
            curl_slist_free_all(headers);
            long status = resp.status;
            aws_response_free(&resp);
            if (rc == EXIT_REMOTE_IO)
                return error_set(EXIT_REMOTE_IO, "%s (%lld of %lld bytes kept in %s for the next "
                                 "attempt)", error_message(), file_size(partial), m->size,
                                 partial);
            if (rc == EXIT_OUTPUT) return blob_write_failed(s, file, m, partial);
            if (rc) return rc;
            if (status == 416) { // the partial file is not a prefix the server knows
                unlink(partial);
                if (check) return error_set(EXIT_REMOTE_IO, "%s: HTTP 416 twice", what);
                continue;
            }
            if (status < 200 || status >= 300)
                return error_set(status == 404 || status == 401 || status == 403
                                     ? EXIT_BAD_INPUT : EXIT_REMOTE_IO,
                                 "%s: HTTP %ld", what, status);
        }
        have = file_size(partial);
        char sum[65] = "";
        bool good = have == m->size;
        if (good && m->lfs) {
            int fd = open(partial, O_RDONLY);
            good = fd >= 0 && aws_sha256_file_hex(fd, 0, have, sum) == 0 &&
                   strcmp(sum, m->etag) == 0;
            if (fd >= 0) close(fd);
        }
        if (good) break;
        unlink(partial); // a wrong blob is never kept: the next try starts from zero
        if (check)
            return error_set(EXIT_REMOTE_IO, "%s: %s twice (%lld bytes, sha256 %s; expected %lld, "
                             "%s)", what, have == m->size ? "checksum mismatch" : "wrong size",
                             have, sum[0] ? sum : "-", m->size, m->lfs ? m->etag : "-");
        log_warn("hub_checksum", "%s: %s has %lld bytes%s%s, expected %lld; downloading again",
                 s->ref->repo_id, file, have, sum[0] ? ", sha256 " : "", sum, m->size);
    }
    if (rename(partial, blob) != 0)
        return error_set(EXIT_OUTPUT, "%s: cannot rename to %s: %s", partial, blob,
                         strerror(errno));
    return 0;
}

// One file of the repo into the cache; its snapshot path into out. *absent when the
// repo does not have it and `optional`.
static int file_fetch(hub_session *s, const char *file, bool optional, char *out, size_t n,
                      bool *absent) {
    *absent = false;
    char commit[41];
    if (s->offline) {
        if (cached_commit(s, commit) != 0)
            return error_set(EXIT_BAD_INPUT, "%s@%s is not in the cache %s (HF_HUB_OFFLINE=1): "
                             "fill it first (runner --prefetch %s)", s->ref->repo_id,
                             s->ref->revision, s->cache, s->ref->repo_id);
        snprintf(s->commit, sizeof s->commit, "%s", commit);
        int rc = snapshot_path(s, commit, file, out, n);
        if (rc) return rc;
        if (files_exists(out)) return 0;
        if (optional) {
            *absent = true;
            return 0;
        }
        return error_set(EXIT_BAD_INPUT, "%s@%s: %s is not in the cache %s (HF_HUB_OFFLINE=1)",
                         s->ref->repo_id, s->ref->revision, file, s->cache);
    }
    file_meta m;
    int rc = file_metadata(s, file, optional, &m, absent);
    if (rc == EXIT_REMOTE_IO && !s->commit[0] && cached_commit(s, commit) == 0) {
        // The Hub cannot be reached but the cache has this revision: use it, as
        // huggingface_hub does, rather than fail a job that has what it needs.
        char path[PATH_MAX];
        if (snapshot_path(s, commit, file, path, sizeof path) == 0 && files_exists(path)) {
            log_warn("hub_offline", "%s; using the cache's %s@%s (commit %s) for this run",
                     error_message(), s->ref->repo_id, s->ref->revision, commit);
            error_clear();
            s->offline = true; // the other files come from the same snapshot
            snprintf(s->commit, sizeof s->commit, "%s", commit);
            snprintf(out, n, "%s", path);
            return 0;
        }
    }
    if (rc || *absent) {
        if (*absent && s->commit[0]) { // huggingface_hub's marker of a known-missing file
            char marker[PATH_MAX], dir[PATH_MAX];
            if (files_join(marker, sizeof marker, "%s/.no_exist/%s/%s", s->repo, s->commit, file) == 0) {
                snprintf(dir, sizeof dir, "%s", marker);
                *strrchr(dir, '/') = '\0';
                if (files_mkdirs(dir) == 0) files_write_text(marker, "");
                error_clear();
            }
        }
        return rc;
    }
    if ((rc = ref_write(s))) return rc;
    if ((rc = snapshot_path(s, s->commit, file, out, n))) return rc;
    if (files_exists(out)) return 0; // huggingface_hub's shortcut: this commit's file is here
    char blob[PATH_MAX], blobs[PATH_MAX], lock_path[PATH_MAX];
    rc = files_join(blobs, sizeof blobs, "%s/blobs", s->repo);
    if (rc == 0) rc = files_join(blob, sizeof blob, "%s/%s", blobs, m.etag);
    if (rc == 0) rc = files_join(lock_path, sizeof lock_path, "%s/%s.lock", s->locks, m.etag);
    if (rc == 0) rc = files_mkdirs(blobs);
    if (rc == 0) rc = files_mkdirs(s->locks);
    if (rc) return rc;
    // filelock, which huggingface_hub uses, takes flock() on this file: the same lock.
    int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0)
        return error_set(EXIT_OUTPUT, "%s: cannot create the lock: %s", lock_path, strerror(errno));
    double waited = timing_now_s();
    if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
        log_info("hub_wait", "%s: another process is downloading %s; waiting for it",
                 s->ref->repo_id, file);
        while (flock(lock, LOCK_EX) != 0 && errno == EINTR) {}
    }
    if (!files_exists(blob)) {
        log_info("hub_fetch", "%s@%s: %s (%lld bytes) from %s", s->ref->repo_id, s->commit, file,
                 m.size, s->endpoint);
        rc = blob_download(s, file, &m, blob);
    } else if (timing_now_s() - waited > 0.5) {
        log_info("hub_fetch", "%s: %s was downloaded by another process", s->ref->repo_id, file);
    }
    if (rc == 0) rc = snapshot_link(s, file, m.etag);
    flock(lock, LOCK_UN);
    close(lock);
    return rc;
}

// ---- a model --------------------------------------------------------------------------

// A sharded checkpoint (transformers' save_pretrained with max_shard_size): every shard
// its index names, each fetched, checked and linked as a single file is.
static int shards_fetch(hub_session *s, const char *index) {
    cJSON *shards = NULL;
    int rc = safetensors_index_shards(index, &shards);
    if (rc) return rc;
    log_info("hub_shards", "%s@%s: a sharded checkpoint of %d files", s->ref->repo_id,
             s->ref->revision, cJSON_GetArraySize(shards));
    const cJSON *shard;
    cJSON_ArrayForEach(shard, shards) {
        char path[PATH_MAX];
        bool absent;
        if ((rc = file_fetch(s, shard->valuestring, false, path, sizeof path, &absent))) {
            if (rc == EXIT_BAD_INPUT) {
                char why[1024];
                snprintf(why, sizeof why, "%s", error_message());
                error_set(rc, "%s (a shard model.safetensors.index.json names)", why);
            }
            break;
        }
    }
    cJSON_Delete(shards);
    return rc;
}

// Neither model.safetensors nor an index: never unpickle, refuse a pickle-only repo with
// the Hub's way out.
static int no_weights(hub_session *s) {
    const hub_ref *ref = s->ref;
    bool absent = true;
    if (!s->offline) {
        file_meta m;
        int rc = file_metadata(s, "pytorch_model.bin", true, &m, &absent);
        if (rc) return rc;
    }
    if (!absent)
        return error_set(EXIT_BAD_INPUT, "%s@%s has pytorch_model.bin but no model.safetensors, "
                         "and a pickle is never loaded: pass the Hub's safetensors conversion "
                         "as the revision (--revision refs/pr/N, N the \"Adding `safetensors` "
                         "variant\" pull request at %s/%s/discussions)", ref->repo_id,
                         ref->revision, s->endpoint, ref->repo_id);
    return error_set(EXIT_BAD_INPUT, "%s@%s: no model.safetensors (nor a sharded "
                     "model.safetensors.index.json)%s", ref->repo_id, ref->revision,
                     s->offline ? " in the cache (HF_HUB_OFFLINE=1)" : "");
}

int hub_fetch_model(const hub_ref *ref, const char *token_secret, char *dir, size_t n) {
    hub_session s;
    int rc = session_open(&s, ref, token_secret);
    if (rc) return rc;
    log_info("hub", "%s@%s: %s (cache %s)", ref->repo_id, ref->revision,
             s.offline ? "offline, from the cache (HF_HUB_OFFLINE)" : s.endpoint, s.cache);
    // The job is not ready while its model downloads: a phase of its own on 6006/6007.
    if (!s.offline) telemetry_phase("download");
    char path[PATH_MAX];
    bool absent;
    if ((rc = file_fetch(&s, "config.json", false, path, sizeof path, &absent))) return rc;
    if ((rc = file_fetch(&s, "model.safetensors", true, path, sizeof path, &absent))) return rc;
    if (absent) {
        rc = file_fetch(&s, "model.safetensors.index.json", true, path, sizeof path, &absent);
        if (rc == 0) rc = absent ? no_weights(&s) : shards_fetch(&s, path);
        if (rc) return rc;
    }
    static const char *const TOKENIZER_FILES[] = {"vocab.txt", "tokenizer.json", "vocab.json",
                                                  "merges.txt", "tokenizer_config.json",
                                                  "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof TOKENIZER_FILES / sizeof TOKENIZER_FILES[0]; i++)
        if ((rc = file_fetch(&s, TOKENIZER_FILES[i], true, path, sizeof path, &absent))) return rc;
    rc = files_join(dir, n, "%s/snapshots/%s", s.repo, s.commit);
    if (rc == 0)
        log_info("hub_ready", "%s@%s: commit %s in %s", ref->repo_id, ref->revision, s.commit,
                 dir);
    return rc;
}
