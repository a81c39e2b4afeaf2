// The job's context: where its inputs and outputs are (s3:// and Hub inputs fetched
// into local folders), which backend, model shape and tokenizer, and how a model is
// created. Every mode runs on one (runner/job/job.c opens it). See context.h.
#include "runner/job/context.h"

#include "runner/cloud/cloud.h"
#include "runner/cloud/hub.h"
#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/job/files.h"
#include "runner/log.h"
#include "runner/model/safetensors.h"

#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// The bundled demo data: $RUNNER_DATA_DIR/demo (the image), else data/demo next to the
// binary or up to two levels above it (a build tree), else ./data/demo.
static int find_demo_data(char *out, size_t cap) {
    const char *env = getenv("RUNNER_DATA_DIR");
    if (env && env[0] && files_join(out, cap, "%s/demo", env) == 0 && files_is_dir(out)) return 0;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        static const char *const ups[] = {"", "/..", "/../.."};
        for (int i = 0; i < 3; i++)
            if (files_join(out, cap, "%s%s/data/demo", exe, ups[i]) == 0 && files_is_dir(out))
                return 0;
    }
    if (files_is_dir("data/demo")) return files_join(out, cap, "data/demo");
    return error_set(EXIT_BAD_INPUT, "no --data given and the bundled demo data was not found "
                     "(set RUNNER_DATA_DIR to the directory holding demo/)");
}

// A local directory for an s3:// location: $RUNNER_WORK_DIR (else $TMPDIR/runner-work)
// /<what>-<hash of the URI>, so two locations never share one (a retried attempt of the
// same job finds its own again).
static int staging_dir(char *out, size_t cap, const char *what, const char *uri) {
    const char *base = getenv("RUNNER_WORK_DIR"), *tmp = getenv("TMPDIR");
    char fallback[PATH_MAX];
    snprintf(fallback, sizeof fallback, "%s/runner-work", tmp && tmp[0] ? tmp : "/tmp");
    uint64_t hash = 0xcbf29ce484222325ULL; // FNV-1a
    for (const char *p = uri; *p; p++) hash = (hash ^ (unsigned char)*p) * 0x100000001b3ULL;
    int rc = files_join(out, cap, "%s/%s-%016llx", base && base[0] ? base : fallback, what,
                        (unsigned long long)hash);
    if (rc == 0) rc = files_mkdirs(out);
    return rc;
}

// A local copy of an input that may be an s3:// URI (a prefix for directories).
static int local_input(const char *uri, const char *what, bool prefix, char *out, size_t cap) {
    if (!cloud_is_remote(uri)) return files_join(out, cap, "%s", uri);
    int rc = staging_dir(out, cap, what, uri);
    if (rc) return rc;
    if (prefix) return cloud_fetch_prefix(uri, out);
    const char *base = strrchr(uri, '/');
    size_t len = strlen(out);
    if ((rc = files_join(out + len, cap - len, "/%s", base ? base + 1 : "input"))) return rc;
    return cloud_fetch(uri, out);
}

// What a job that names no model starts from on a GPU: the checkpoint the original
// job's from_pretrained fetched for each architecture. On a CPU the full-size shapes
// would take hours, so there the demo trains bert-tiny from scratch instead.
static const char *default_pretrained(const char *architecture) {
    static const char *const DEFAULTS[][2] = {
        {"bert", "google-bert/bert-base-uncased"},
        {"distil", "distilbert/distilbert-base-uncased"},
        {"electra", "google/electra-base-discriminator"},
        {"roberta", "FacebookAI/roberta-base"},
    };
    for (size_t i = 0; i < sizeof DEFAULTS / sizeof DEFAULTS[0]; i++)
        if (strcmp(architecture, DEFAULTS[i][0]) == 0) return DEFAULTS[i][1];
    return NULL;
}

// The model to start from into ctx->model_dir ("" = from scratch): --model, else
// pretrained_model_name, else the architecture's pretrained default on a GPU. Each is a
// local folder, an s3:// prefix or a Hugging Face Hub id (fetched into the shared cache).
// pretrained_model_name "none" trains from scratch even on a GPU; "default" takes the
// architecture's checkpoint even on a CPU (hours at full size, but a cache or a mirror
// may hold a smaller model under that id: the tests' mock Hub does).
static int model_input(job_context *ctx) {
    const runner_config *cfg = ctx->cfg;
    const char *spec = cfg->model_path, *origin = "--model";
    bool trains = cfg->mode == MODE_PIPELINE || cfg->mode == MODE_TRAIN;
    // predict and embed without --model use the run's own prime/model, whatever base
    // model the (shared) arguments.json names.
    if (!spec[0] && (trains || cfg->mode == MODE_PRETRAIN))
        spec = cfg->pretrained_model_name, origin = "pretrained_model_name";
    if (strcmp(spec, "default") == 0) {
        spec = default_pretrained(cfg->architecture);
        if (!spec)
            return error_set(EXIT_USAGE, "%s default: architecture %s has no pretrained default "
                             "(bert, distil, electra and roberta have one)", origin,
                             cfg->architecture);
        log_info("model", "%s default: architecture %s starts from %s, its pretrained default",
                 origin, cfg->architecture, spec);
        origin = "the architecture's default";
    }
    if (!spec[0] && trains && ctx->on_gpu && default_pretrained(cfg->architecture)) {
        spec = default_pretrained(cfg->architecture);
        origin = "the architecture's default on a GPU";
        log_info("model", "no --model: architecture %s on a GPU starts from %s, as the original "
                 "job's from_pretrained did (pretrained_model_name \"none\" trains from scratch)",
                 cfg->architecture, spec);
    }
    if (!spec[0] || strcmp(spec, "none") == 0) return 0;
    if (hub_is_model_id(spec)) {
        hub_ref ref;
        int rc = hub_ref_parse(spec, cfg->revision, &ref);
        if (rc == 0) {
            log_info("model", "%s %s: a Hugging Face Hub id", origin, spec);
            rc = hub_fetch_model(&ref, cfg->hf_token_secret, ctx->model_dir,
                                 sizeof ctx->model_dir);
        }
        return rc;
    }
    if (cfg->revision[0])
        return error_set(EXIT_USAGE, "--revision %s: %s %s is not a Hub model id", cfg->revision,
                         origin, spec);
    return local_input(spec, "model", true, ctx->model_dir, sizeof ctx->model_dir);
}

static bool is_big_shape(const char *name) {
    return strcmp(name, "bert") == 0 || strcmp(name, "bert-base") == 0 ||
           strcmp(name, "distil") == 0 || strcmp(name, "distilbert") == 0 ||
           strcmp(name, "electra") == 0 || strcmp(name, "roberta") == 0;
}

// The effective precision of the backend's GEMMs, for the log line.
static const char *precision_text(const backend *be) {
    if (be->act_dtype == DTYPE_BF16) return "precision bf16";
    return be->infer_dtype == DTYPE_BF16
               ? "precision bf16 (inference GEMMs: evaluation, predict, embed; training fp32)"
               : "precision fp32";
}

// --precision on the backend just made (docs/kernels.md "bf16 inference on the CPU"):
// bf16 where the backend cannot give it is a speed lost, so it runs fp32 with a warning;
// fp32 where the backend computes in bf16 (CUDA) would be an accuracy promise broken, so it
// is refused.
static int apply_precision(job_context *ctx) {
    backend *be = ctx->be;
    precision_choice want = ctx->cfg->precision;
    if (want == PRECISION_AUTO) return 0;
    act_dtype_t dtype = want == PRECISION_BF16 ? DTYPE_BF16 : DTYPE_F32;
    if (be->infer_dtype == dtype) return 0;
    if (dtype == DTYPE_F32)
        return error_set(EXIT_USAGE, "--precision fp32: the %s backend computes in bf16 only "
                         "(--backend cpu runs fp32)", be->name);
    if (be->set_infer_dtype && be->set_infer_dtype(be, dtype) == 0) return 0;
    log_warn("precision", "--precision bf16: %s; running fp32",
             be->set_infer_dtype ? error_message() : "this backend has no bf16 GEMMs");
    error_clear();
    return 0;
}

static int pick_backend(job_context *ctx) {
    const runner_config *cfg = ctx->cfg;
    int threads = cfg->threads > 0 ? cfg->threads : omp_get_num_procs();
    omp_set_num_threads(threads);
#ifdef RUNNER_HAVE_CUDA
    if (cfg->backend != BACKEND_CPU) {
        const char *local_rank = getenv("LOCAL_RANK");
        int device = local_rank ? atoi(local_rank) : 0;
        ctx->be = backend_create("cuda", device, threads);
        if (ctx->be) {
            ctx->on_gpu = true;
            int rc = apply_precision(ctx);
            if (rc == 0) log_info("backend", "cuda device %d, %s", device, precision_text(ctx->be));
            return rc;
        }
        if (cfg->backend == BACKEND_CUDA) return error_code() ? error_code() : EXIT_GPU_FAULT;
        log_warn("backend", "CUDA unavailable (%s); using the CPU", error_message());
        error_clear();
    }
#else
    if (cfg->backend == BACKEND_CUDA)
        return error_set(EXIT_GPU_FAULT, "--backend cuda: this build has no CUDA backend");
#endif
    ctx->be = backend_create("cpu", 0, threads);
    if (!ctx->be) return error_code() ? error_code() : EXIT_INTERNAL;
    int rc = apply_precision(ctx);
    if (rc == 0) log_info("backend", "cpu, %d OpenMP threads, %s", threads, precision_text(ctx->be));
    return rc;
}

int job_context_open(job_context *ctx, const runner_config *cfg, int rank, int world_size,
                     bool need_data) {
    memset(ctx, 0, sizeof *ctx);
    ctx->cfg = cfg;
    ctx->rank = rank;
    ctx->world_size = world_size;
    int rc = 0;

    // Output: local, or a staging directory uploaded at the end (and resumed from).
    if (cloud_is_remote(cfg->output_path)) {
        rc = staging_dir(ctx->output, sizeof ctx->output, "output", cfg->output_path);
        if (rc == 0) rc = cloud_fetch_prefix(cfg->output_path, ctx->output);
    } else {
        rc = files_join(ctx->output, sizeof ctx->output, "%s",
                        cfg->output_path[0] ? cfg->output_path : "./out");
        // predict/embed may name their output file: the output root is its directory.
        size_t len = strlen(ctx->output);
        bool file = (len > 6 && strcmp(ctx->output + len - 6, ".jsonl") == 0) ||
                    (len > 4 && strcmp(ctx->output + len - 4, ".npy") == 0);
        if (rc == 0 && file && (cfg->mode == MODE_PREDICT || cfg->mode == MODE_EMBED)) {
            char *slash = strrchr(ctx->output, '/');
            if (slash) *slash = '\0';
            else snprintf(ctx->output, sizeof ctx->output, ".");
        }
    }
    if (rc == 0)
        rc = files_join(ctx->artefacts, sizeof ctx->artefacts, "%s/artefacts/%s", ctx->output,
                        cfg->architecture);
    if (rc == 0) rc = files_mkdirs(ctx->artefacts);
    // An attempt killed while writing (SIGKILL, a lost instance) leaves temporaries
    // beside the files it was replacing; rank 0, the only writer, clears them before it
    // writes (or uploads) anything.
    if (rc == 0 && rank == 0 && files_remove_temporaries(ctx->artefacts) < 0) rc = error_code();
    if (rc) return rc;

    // Inputs.
    if (need_data || cfg->data_path[0]) {
        // An s3:// location naming a .csv/.json(l) file is one object, else a prefix.
        bool prefix = !strstr(cfg->data_path, ".csv") && !strstr(cfg->data_path, ".json");
        if (cfg->data_path[0])
            rc = local_input(cfg->data_path, "data", prefix, ctx->data, sizeof ctx->data);
        else
            rc = find_demo_data(ctx->data, sizeof ctx->data);
        if (rc == 0 && !files_exists(ctx->data))
            rc = error_set(EXIT_BAD_INPUT, "%s: no such file or directory (--data)", ctx->data);
        if (rc) return rc;
    }
    if (cfg->hyperspace_path[0]) {
        rc = local_input(cfg->hyperspace_path, "hyperspace", false, ctx->hyperspace,
                         sizeof ctx->hyperspace);
    } else if (ctx->data[0]) {
        char candidate[PATH_MAX];
        const char *dir = files_is_dir(ctx->data) ? ctx->data : NULL;
        if (dir && files_join(candidate, sizeof candidate, "%s/hyperspace.json", dir) == 0 &&
            files_exists(candidate))
            snprintf(ctx->hyperspace, sizeof ctx->hyperspace, "%s", candidate);
    }
    if (rc) return rc;

    if ((rc = pick_backend(ctx))) return rc;
    if ((rc = model_input(ctx))) return rc;
    // predict and embed without --model use this output's prime/model (modes.c).
    if (!ctx->model_dir[0] && (cfg->mode == MODE_PREDICT || cfg->mode == MODE_EMBED)) return 0;

    // Model shape and tokenizer.
    if (ctx->model_dir[0]) {
        char path[PATH_MAX];
        rc = files_join(path, sizeof path, "%s/config.json", ctx->model_dir);
        if (rc == 0) rc = bert_config_load(path, &ctx->bcfg);
        if (rc == 0) rc = tokenizer_load_dir(ctx->model_dir, &ctx->tok);
        snprintf(ctx->shape, sizeof ctx->shape, "%s", "pretrained");
        if (rc == 0)
            log_info("model", "%s: L%d C%d from %s", cfg->architecture, ctx->bcfg.num_layers,
                     ctx->bcfg.hidden_size, ctx->model_dir);
        return rc;
    }
    // No pretrained model: train from scratch. On a CPU the full-size shapes would take
    // hours, so "bert" (and the other full-size names) map to bert-tiny (L2 C128); with a
    // GPU they keep their size. Named small presets are used as given. RoBERTa is BERT's
    // encoder with its own embeddings and tokenizer, so it takes the BERT preset of the
    // same size (bert-base on a GPU, as roberta-base) and the RoBERTa changes below.
    bool roberta = strcmp(cfg->architecture, "roberta") == 0;
    snprintf(ctx->shape, sizeof ctx->shape, "%s", roberta ? "bert-base" : cfg->architecture);
    if (!ctx->on_gpu && is_big_shape(cfg->architecture)) {
        snprintf(ctx->shape, sizeof ctx->shape, "bert-tiny");
        log_info("model", "no --model and no GPU: architecture %s runs as %s (L2 C128, random "
                 "init); pass --architecture bert-mini/bert-small or --model DIR for more",
                 cfg->architecture, roberta ? "a RoBERTa of bert-tiny's shape" : "bert-tiny");
    }
    rc = bert_config_preset(ctx->shape, &ctx->bcfg);
    if (rc) return rc;
    ctx->bcfg.hidden_dropout = ctx->bcfg.attention_dropout = (float)cfg->dropout;
    const char *dir = ctx->data[0] && files_is_dir(ctx->data) ? ctx->data : NULL;
    char data_dir[PATH_MAX];
    if (!dir && ctx->data[0]) {
        snprintf(data_dir, sizeof data_dir, "%s", ctx->data);
        char *slash = strrchr(data_dir, '/');
        if (slash) *slash = '\0';
        else snprintf(data_dir, sizeof data_dir, ".");
        dir = data_dir;
    }
    if (!dir) return error_set(EXIT_USAGE, "no --model given: pass --model DIR or --data with a vocab.txt");
    char vocab[PATH_MAX], merges[PATH_MAX];
    if (roberta) {
        // RoBERTa's tokenizer is byte-level BPE (vocab.json + merges.txt beside the data;
        // the demo's are made by scripts/make_demo_bpe.py), never the vocab.txt beside it.
        rc = files_join(vocab, sizeof vocab, "%s/vocab.json", dir);
        if (rc == 0) rc = files_join(merges, sizeof merges, "%s/merges.txt", dir);
        const char *missing = rc ? NULL : !files_exists(vocab) ? vocab : !files_exists(merges) ? merges : NULL;
        if (missing)
            rc = error_set(EXIT_BAD_INPUT, "%s: missing; --architecture roberta from scratch needs "
                           "a byte-level BPE vocabulary (vocab.json and merges.txt) beside the "
                           "data (scripts/make_demo_bpe.py --data FILE --out DIR trains one), or "
                           "--model DIR", missing);
        // The job's words always get a prefix space (is_split_into_words); texts (predict,
        // embed, pretrain) get one too, as the vocabulary was trained with it.
        if (rc == 0) rc = tokenizer_bpe_load(dir, true, &ctx->tok);
        if (rc) return rc;
        // One token type; positions counted from pad_token_id + 1, as transformers'
        // RobertaEmbeddings does, with that many more rows (514 for 512 tokens, as in
        // roberta-base).
        ctx->bcfg.arch = ARCH_ROBERTA;
        ctx->bcfg.type_vocab_size = 1;
        ctx->bcfg.position_offset = tokenizer_pad_id(ctx->tok) + 1;
        ctx->bcfg.max_position += ctx->bcfg.position_offset;
    } else {
        rc = files_join(vocab, sizeof vocab, "%s/vocab.txt", dir);
        if (rc == 0 && !files_exists(vocab))
            rc = error_set(EXIT_BAD_INPUT, "%s: missing; training from scratch needs a WordPiece "
                           "vocabulary beside the data (or --model DIR)", vocab);
        if (rc == 0) rc = tokenizer_load(vocab, true, true, &ctx->tok);
        if (rc) return rc;
    }
    ctx->bcfg.vocab_size = tokenizer_vocab_size(ctx->tok);
    if (roberta)
        log_info("model", "roberta as %s: L%d C%d H%d, byte-level BPE vocabulary %d from %s and "
                 "merges.txt (RoBERTa's tokenizer; the vocab.txt beside the data is BERT's), "
                 "positions from %d", ctx->shape, ctx->bcfg.num_layers, ctx->bcfg.hidden_size,
                 ctx->bcfg.num_heads, ctx->bcfg.vocab_size, vocab, ctx->bcfg.position_offset);
    else
        log_info("model", "%s: L%d C%d H%d, vocabulary %d from %s", ctx->shape,
                 ctx->bcfg.num_layers, ctx->bcfg.hidden_size, ctx->bcfg.num_heads,
                 ctx->bcfg.vocab_size, vocab);
    return 0;
}

void job_context_close(job_context *ctx) {
    if (ctx->tok) tokenizer_free(ctx->tok);
    if (ctx->be) ctx->be->destroy(ctx->be);
    memset(ctx, 0, sizeof *ctx);
}

int job_context_publish(const job_context *ctx) {
    if (!cloud_is_remote(ctx->cfg->output_path) || ctx->rank != 0) return 0;
    log_info("upload", "%s -> %s", ctx->output, ctx->cfg->output_path);
    return cloud_upload_tree(ctx->output, ctx->cfg->output_path, NULL);
}

int job_model_create(const job_context *ctx, bert_head head, int num_labels, int max_batch,
                     int max_seq, uint64_t seed, bert_model **out) {
    int rc = bert_create(out, ctx->be, &ctx->bcfg, head, num_labels, max_batch, max_seq);
    if (rc) return rc;
    rc = bert_init_random(*out, seed);
    if (rc == 0 && ctx->model_dir[0]) {
        char path[PATH_MAX];
        rc = safetensors_checkpoint_path(ctx->model_dir, path, sizeof path);
        if (rc == 0) rc = bert_load_safetensors(*out, path);
    }
    if (rc) {
        bert_destroy(*out);
        *out = NULL;
    }
    return rc;
}

space_start job_space_start(const job_context *ctx) {
    return (space_start){.pretrained = ctx->model_dir[0] != '\0',
                         .shape = ctx->shape,
                         .hidden_size = ctx->bcfg.hidden_size,
                         .num_layers = ctx->bcfg.num_layers};
}

void job_schedule(const job_context *ctx, double *learning_rate, double *warmup_ratio) {
    space_start start = job_space_start(ctx);
    space_defaults d;
    space_defaults_for(&start, &d);
    // config.c's defaults (0 and -1) are values no user can give: they mean "not set".
    *learning_rate = ctx->cfg->learning_rate > 0 ? ctx->cfg->learning_rate
                                                 : space_default_learning_rate(&d);
    *warmup_ratio = ctx->cfg->warmup_ratio >= 0 ? ctx->cfg->warmup_ratio : d.warmup_ratio;
}
