#include "runner/config.h"

#include "runner/error.h"
#include "runner/log.h" // LOG_FORMAT_AUTO
#include "runner/units.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const ARCHITECTURES[] = {"bert",      "distil",    "electra",    "roberta",
                                            "bert-tiny", "bert-mini", "bert-small", "bert-base"};
static const char *const MODES[] = {"pipeline", "train", "predict", "embed", "pretrain", "check"};
static const char *const BACKENDS[] = {"auto", "cpu", "cuda"};
static const char *const LOG_FORMATS[] = {"auto", "json", "text"};
static const char *const PRECISIONS[] = {"auto", "fp32", "bf16"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define FIELD(name) offsetof(runner_config, name), sizeof(((runner_config *)0)->name)

void config_defaults(runner_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    // The original defaulted to distil; the Batch job definitions pass --architecture.
    snprintf(cfg->architecture, sizeof cfg->architecture, "distil");
    cfg->mode = MODE_PIPELINE;
    cfg->backend = BACKEND_AUTO;
    cfg->gpus = -1;
    snprintf(cfg->output_path, sizeof cfg->output_path, "./out");

    cfg->max_length = 128;
    cfg->train_batch_size = 16;
    cfg->valid_batch_size = 16;
    cfg->test_batch_size = 16;
    cfg->epochs = 2;
    // 0 and -1 are no value a user can give (the ranges below start at 1e-12 and 0): they
    // mean "follow the starting point" (runner/job/space.h): a fine-tuning rate for
    // pretrained weights, a larger one scaled to the shape for random weights.
    cfg->learning_rate = 0;
    cfg->weight_decay = 0.01;
    cfg->max_gradient_norm = 1.0;
    cfg->warmup_ratio = -1;
    cfg->n_trials = 4;
    cfg->n_instances = 0;
    cfg->save_total_limit = 2;
    cfg->early_stopping_patience = 2;
    cfg->dropout = 0.1;
    cfg->max_bad_rows = 0.01;
    cfg->require_learning = true;
    cfg->seed = 5; // the original split its data with seed 5

    snprintf(cfg->bind_address, sizeof cfg->bind_address, "0.0.0.0");
    cfg->metrics_port = 6006;
    cfg->api_port = 6007;
    cfg->dashboard_port = 8265;
    cfg->serve = true;

    snprintf(cfg->redis, sizeof cfg->redis, "embedded");
    cfg->redis_port = 6379;
    cfg->rendezvous_timeout_s = 600;
    // Long enough for a managed Redis to fail over (docs/coordination.md, "Redis outages").
    cfg->redis_outage_timeout_s = 300;
    cfg->log_format = LOG_FORMAT_AUTO;
}

static const config_option OPTIONS[] = {
    // group "job"
    {"architecture", "architecture", OPTION_ARCHITECTURE, FIELD(architecture), 0, 0, "job", "NAME",
     "bert, distil (default), electra, roberta, bert-tiny, bert-mini, bert-small, bert-base"},
    {"mode", "mode", OPTION_MODE, FIELD(mode), 0, 0, "job", "MODE",
     "pipeline (default), train, predict, embed, pretrain, check"},
    {"data", "data", OPTION_PATH, FIELD(data_path), 0, 0, "job", "PATH|S3URI",
     "training data (directory or file); default the bundled demo data"},
    {"model", "model", OPTION_PATH, FIELD(model_path), 0, 0, "job", "PATH|S3URI|ORG/NAME[@REV]",
     "model to start from: a Hugging Face model directory, an s3:// prefix or a Hub id"},
    {"revision", "revision", OPTION_STRING, FIELD(revision), 0, 0, "job", "REV",
     "Hub revision of --model: branch, tag, refs/pr/N or commit (default main)"},
    {"hf-token-secret", "hf_token_secret", OPTION_STRING, FIELD(hf_token_secret), 0, 0, "job",
     "ARN", "Secrets Manager secret holding the Hugging Face token (read when neither HF_TOKEN "
     "nor $HF_HOME/token gives one)"},
    {"output", "output", OPTION_PATH, FIELD(output_path), 0, 0, "job", "PATH|S3URI",
     "where artefacts go (default ./out)"},
    {"input", "input", OPTION_PATH, FIELD(input_path), 0, 0, "job", "PATH|S3URI",
     "input of predict, embed and pretrain"},
    {"hyperspace", "hyperspace", OPTION_PATH, FIELD(hyperspace_path), 0, 0, "job", "PATH|S3URI",
     "hyper-parameter search space (JSON)"},
    {"pretrained-model-name", "pretrained_model_name", OPTION_STRING, FIELD(pretrained_model_name),
     0, 0, "job", "NAME", "Hub id to start from when --model is not given (\"none\": from scratch)"},
    // group "training" (the original's arguments.json keys)
    {"max-length", "MAX_LENGTH", OPTION_INT, FIELD(max_length), 8, 512, "training", "N",
     "tokens per sequence"},
    {"train-batch-size", "TRAIN_BATCH_SIZE", OPTION_INT, FIELD(train_batch_size), 1, 65536,
     "training", "N", "sequences per training step and worker"},
    {"valid-batch-size", "VALID_BATCH_SIZE", OPTION_INT, FIELD(valid_batch_size), 1, 65536,
     "training", "N", "sequences per validation batch"},
    {"test-batch-size", "TEST_BATCH_SIZE", OPTION_INT, FIELD(test_batch_size), 1, 65536, "training",
     "N", "sequences per test batch"},
    {"epochs", "EPOCHS", OPTION_INT, FIELD(epochs), 1, 100000, "training", "N",
     "passes over the training data"},
    {"learning-rate", "LEARNING_RATE", OPTION_DOUBLE, FIELD(learning_rate), 1e-12, 1, "training",
     "X", "AdamW learning rate (default: from the starting point, see docs/pipeline.md)"},
    {"weight-decay", "WEIGHT_DECAY", OPTION_DOUBLE, FIELD(weight_decay), 0, 1, "training", "X",
     "AdamW weight decay"},
    {"max-gradient-norm", "MAX_GRADIENT_NORM", OPTION_DOUBLE, FIELD(max_gradient_norm), 0, 1e6,
     "training", "X", "gradient clipping norm (0 = off)"},
    {"warmup-ratio", "WARMUP_RATIO", OPTION_DOUBLE, FIELD(warmup_ratio), 0, 1, "training", "X",
     "fraction of steps with linear warm-up (default: from the starting point)"},
    {"trials", "N_TRIALS", OPTION_INT, FIELD(n_trials), 0, 100000, "training", "N",
     "hyper-parameter search trials (0 = no search)"},
    {"instances", "N_INSTANCES", OPTION_LONG, FIELD(n_instances), 0, 1e15, "training", "N",
     "use the first N sentences only (0 = all)"},
    {"save-total-limit", "save_total_limit", OPTION_INT, FIELD(save_total_limit), 1, 1000,
     "training", "N", "checkpoints kept"},
    {"early-stopping-patience", "early_stopping_patience", OPTION_INT,
     FIELD(early_stopping_patience), 0, 1000, "training", "N",
     "evaluations without improvement before stopping (0 = off)"},
    {"dropout", "DROPOUT", OPTION_DOUBLE, FIELD(dropout), 0, 0.99, "training", "X",
     "hidden and attention dropout probability"},
    {"max-bad-rows", "MAX_BAD_ROWS", OPTION_DOUBLE, FIELD(max_bad_rows), 0, 1, "training", "X",
     "fraction of malformed data rows skipped before exit 3"},
    {"require-learning", "require_learning", OPTION_BOOL, FIELD(require_learning), 0, 0,
     "training", NULL,
     "exit 9 LEARNED_NOTHING when the model is no better than tagging every word O "
     "(--no-require-learning: exit 0 anyway)"},
    {"seed", "SEED", OPTION_U64, FIELD(seed), 0, 0, "training", "N",
     "random seed (split, init, dropout)"},
    // group "resources"
    {"backend", "backend", OPTION_BACKEND, FIELD(backend), 0, 0, "resources", "NAME",
     "cpu, cuda or auto (cuda when a GPU is visible)"},
    {"gpus", "gpus", OPTION_GPUS, FIELD(gpus), 0, 1024, "resources", "N|auto",
     "GPUs required (auto = all visible, none required)"},
    {"workers", "workers", OPTION_INT, FIELD(workers), 0, 1024, "resources", "N",
     "worker processes (0 = one per GPU, one on CPU)"},
    {"threads", "threads", OPTION_INT, FIELD(threads), 0, 4096, "resources", "N",
     "CPU threads per worker (0 = all cores)"},
    {"precision", "precision", OPTION_PRECISION, FIELD(precision), 0, 0, "resources",
     "auto|fp32|bf16",
     "GEMMs of evaluation, predict and embed: auto (the backend's: CPU fp32, CUDA bf16), "
     "bf16 (CPU: where it has avx512_bf16/AMX, else fp32 with a warning), fp32 (CPU only)"},
    {"min-shm", "min_shm", OPTION_SIZE, FIELD(min_shm_bytes), 0, 0, "resources", "SIZE",
     "/dev/shm needed, e.g. 15gb or 512m (default computed from workers and batch)"},
    // group "servers"
    {"bind", "bind", OPTION_STRING, FIELD(bind_address), 0, 0, "servers", "ADDR",
     "address the HTTP servers listen on (default 0.0.0.0)"},
    {"metrics-port", "metrics_port", OPTION_INT, FIELD(metrics_port), 1, 65535, "servers", "PORT",
     "Prometheus /metrics, /healthz, /readyz (default 6006)"},
    {"api-port", "api_port", OPTION_INT, FIELD(api_port), 1, 65535, "servers", "PORT",
     "JSON API /api/v1 (default 6007)"},
    {"dashboard-port", "dashboard_port", OPTION_INT, FIELD(dashboard_port), 1, 65535, "servers",
     "PORT", "dashboard (default 8265)"},
    {"serve", "serve", OPTION_BOOL, FIELD(serve), 0, 0, "servers", NULL,
     "run the HTTP servers (--no-serve: none)"},
    // group "coordination"
    {"redis", "redis", OPTION_STRING, FIELD(redis), 0, 0, "coordination", "URL",
     "embedded (default), off, or redis://[:password@]host:port"},
    {"redis-port", "redis_port", OPTION_INT, FIELD(redis_port), 1, 65535, "coordination", "PORT",
     "port of the embedded redis-server (default 6379)"},
    {"rendezvous-timeout", "rendezvous_timeout", OPTION_INT, FIELD(rendezvous_timeout_s), 1, 86400,
     "coordination", "SECONDS", "how long nodes wait for each other (default 600)"},
    {"redis-outage-timeout", "redis_outage_timeout", OPTION_INT, FIELD(redis_outage_timeout_s), 1,
     86400, "coordination", "SECONDS",
     "how long a single node works on without its Redis before exit 82 (default 300)"},
    {"secret-id", "secret_id", OPTION_STRING, FIELD(secret_id), 0, 0, "coordination", "ID",
     "Secrets Manager secret holding bucket names"},
    // group "logging"
    {"log-format", "log_format", OPTION_LOG_FORMAT, FIELD(log_format), 0, 0, "logging", "FORMAT",
     "json, text or auto (JSON lines unless stdout is a terminal)"},
    {"verbose", "verbose", OPTION_BOOL, FIELD(verbose), 0, 0, "logging", NULL, "debug lines too"},
};

const config_option *config_options(int *count) {
    *count = (int)COUNT(OPTIONS);
    return OPTIONS;
}

const config_option *config_option_find(const char *flag) {
    for (size_t i = 0; i < COUNT(OPTIONS); i++)
        if (strcmp(OPTIONS[i].flag, flag) == 0) return &OPTIONS[i];
    return NULL;
}

static const char *join_names(const char *const *names, size_t n, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "", names[i]);
    return buf;
}

const char *config_architecture_names(void) {
    static char buf[160];
    return join_names(ARCHITECTURES, COUNT(ARCHITECTURES), buf, sizeof buf);
}

const char *config_mode_names(void) {
    static char buf[120];
    return join_names(MODES, COUNT(MODES), buf, sizeof buf);
}

const char *config_mode_name(run_mode mode) {
    return (size_t)mode < COUNT(MODES) ? MODES[mode] : "?";
}

const char *config_precision_name(precision_choice precision) {
    return (size_t)precision < COUNT(PRECISIONS) ? PRECISIONS[precision] : "?";
}

static int find_name(const char *const *names, size_t n, const char *value) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], value) == 0) return (int)i;
    return -1;
}

// The index of `value` in names[], or a usage error naming what it is and the valid names.
static int choose_name(const char *const *names, size_t n, const char *origin, const char *what,
                       const char *value, int *index) {
    char valid[256];
    *index = find_name(names, n, value);
    if (*index < 0)
        return error_set(EXIT_USAGE, "%s: unknown %s '%s' (valid: %s)", origin, what, value,
                         join_names(names, n, valid, sizeof valid));
    return 0;
}

static bool parse_long(const char *text, long long *out) {
    if (!text || !*text || isspace((unsigned char)*text)) return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *text, double *out) {
    if (!text || !*text || isspace((unsigned char)*text)) return false;
    errno = 0;
    char *end = NULL;
    double v = strtod(text, &end);
    if (errno || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *text, bool *out) {
    static const char *const YES[] = {"1", "true", "yes", "on"};
    static const char *const NO[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, YES[i]) == 0) return *out = true, true;
        if (strcasecmp(text, NO[i]) == 0) return *out = false, true;
    }
    return false;
}

static int range_error(const config_option *opt, const char *origin, const char *value,
                       const char *what) {
    if (opt->type == OPTION_DOUBLE)
        return error_set(EXIT_USAGE, "%s: '%s' is not %s in %g..%g", origin, value, what, opt->min,
                         opt->max);
    return error_set(EXIT_USAGE, "%s: '%s' is not %s in %.0f..%.0f", origin, value, what, opt->min,
                     opt->max);
}

static int store_string(runner_config *cfg, const config_option *opt, const char *value,
                        const char *origin) {
    size_t len = strlen(value);
    if (len >= opt->size)
        return error_set(EXIT_USAGE, "%s: value is %zu characters, at most %zu allowed", origin,
                         len, opt->size - 1);
    if (opt->type == OPTION_PATH && len == 0 && opt->offset == offsetof(runner_config, output_path))
        return error_set(EXIT_USAGE, "%s: the output location must not be empty", origin);
    memcpy((char *)cfg + opt->offset, value, len + 1);
    return 0;
}

int config_set_text(runner_config *cfg, const config_option *opt, const char *value,
                    const char *origin) {
    char *field = (char *)cfg + opt->offset;
    long long integer;
    double real;
    bool flag;
    if (!value) value = "";
    switch (opt->type) {
    case OPTION_INT:
    case OPTION_LONG:
        if (!parse_long(value, &integer) || integer < opt->min || integer > opt->max)
            return range_error(opt, origin, value, "an integer");
        if (opt->type == OPTION_INT)
            *(int *)field = (int)integer;
        else
            *(long *)field = (long)integer;
        return 0;
    case OPTION_U64: {
        if (!*value || *value == '-' || !isdigit((unsigned char)*value))
            return error_set(EXIT_USAGE, "%s: '%s' is not a non-negative integer", origin, value);
        errno = 0;
        char *end = NULL;
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || *end)
            return error_set(EXIT_USAGE, "%s: '%s' is not a non-negative integer", origin, value);
        *(uint64_t *)field = v;
        return 0;
    }
    case OPTION_DOUBLE:
        if (!parse_double(value, &real) || real < opt->min || real > opt->max)
            return range_error(opt, origin, value, "a number");
        *(double *)field = real;
        return 0;
    case OPTION_BOOL:
        if (!parse_bool(value, &flag))
            return error_set(EXIT_USAGE, "%s: '%s' is not a boolean (true, false, 1, 0)", origin,
                             value);
        *(bool *)field = flag;
        return 0;
    case OPTION_SIZE: {
        uint64_t bytes;
        if (units_parse_size(value, &bytes) != 0)
            return error_set(EXIT_USAGE, "%s: '%s' is not a size (e.g. 15gb, 512m, 1048576)",
                             origin, value);
        *(uint64_t *)field = bytes;
        return 0;
    }
    case OPTION_STRING:
    case OPTION_PATH:
        return store_string(cfg, opt, value, origin);
    case OPTION_ARCHITECTURE:
        if (find_name(ARCHITECTURES, COUNT(ARCHITECTURES), value) < 0)
            return error_set(EXIT_USAGE, "%s: unknown architecture '%s' (valid: %s)", origin, value,
                             config_architecture_names());
        return store_string(cfg, opt, value, origin);
    case OPTION_MODE: {
        int i = find_name(MODES, COUNT(MODES), value);
        if (i < 0)
            return error_set(EXIT_USAGE, "%s: unknown mode '%s' (valid: %s)", origin, value,
                             config_mode_names());
        *(run_mode *)field = (run_mode)i;
        return 0;
    }
    case OPTION_BACKEND: {
        int i, rc = choose_name(BACKENDS, COUNT(BACKENDS), origin, "backend", value, &i);
        if (rc == 0) *(backend_choice *)field = (backend_choice)i;
        return rc;
    }
    case OPTION_PRECISION: {
        int i, rc = choose_name(PRECISIONS, COUNT(PRECISIONS), origin, "precision", value, &i);
        if (rc == 0) *(precision_choice *)field = (precision_choice)i;
        return rc;
    }
    case OPTION_LOG_FORMAT: {
        int i, rc = choose_name(LOG_FORMATS, COUNT(LOG_FORMATS), origin, "log format", value, &i);
        if (rc == 0) *(int *)field = i;
        return rc;
    }
    case OPTION_GPUS:
        if (strcmp(value, "auto") == 0) {
            *(int *)field = -1;
            return 0;
        }
        if (!parse_long(value, &integer) || integer < opt->min || integer > opt->max)
            return error_set(EXIT_USAGE, "%s: '%s' is not a GPU count (auto or 0..%.0f)", origin,
                             value, opt->max);
        *(int *)field = (int)integer;
        return 0;
    }
    return error_set(EXIT_INTERNAL, "%s: option type %d not handled", origin, (int)opt->type);
}

// The JSON keys an option answers to: the original's key and the flag with underscores.
static bool json_key_matches(const config_option *opt, const char *key) {
    if (strcmp(opt->json_key, key) == 0) return true;
    char snake[64];
    size_t i = 0;
    for (; opt->flag[i] && i < sizeof snake - 1; i++)
        snake[i] = opt->flag[i] == '-' ? '_' : opt->flag[i];
    snake[i] = '\0';
    return strcmp(snake, key) == 0;
}

// Lower case without '-' and '_', so "train_batch_size", "TRAIN-BATCH-SIZE" and
// "trainbatchsize" compare equal.
static void normalise(const char *in, char *out, size_t size) {
    size_t n = 0;
    for (; *in && n < size - 1; in++)
        if (*in != '-' && *in != '_') out[n++] = (char)tolower((unsigned char)*in);
    out[n] = '\0';
}

// Levenshtein distance, capped: names are short.
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diagonal = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int above = row[j];
            int best = diagonal + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[lb];
}

static const config_option *closest_option(const char *name) {
    char wanted[80], candidate[80];
    normalise(name, wanted, sizeof wanted);
    const config_option *best = NULL;
    int best_distance = 3; // two edits at most
    for (size_t i = 0; i < COUNT(OPTIONS); i++) {
        const char *names[2] = {OPTIONS[i].flag, OPTIONS[i].json_key};
        for (int k = 0; k < 2; k++) {
            normalise(names[k], candidate, sizeof candidate);
            int d = edit_distance(wanted, candidate);
            if (d < best_distance) {
                best_distance = d;
                best = &OPTIONS[i];
            }
        }
    }
    return best;
}

const char *config_suggest_key(const char *key) {
    const config_option *opt = closest_option(key);
    return opt ? opt->json_key : NULL;
}

const char *config_suggest_flag(const char *flag) {
    const config_option *opt = closest_option(flag);
    return opt ? opt->flag : NULL;
}

static const char *json_type_name(const cJSON *item) {
    if (cJSON_IsString(item)) return "a string";
    if (cJSON_IsNumber(item)) return "a number";
    if (cJSON_IsBool(item)) return "a boolean";
    if (cJSON_IsNull(item)) return "null";
    if (cJSON_IsArray(item)) return "an array";
    if (cJSON_IsObject(item)) return "an object";
    return "invalid";
}

static int apply_json_item(runner_config *cfg, const config_option *opt, const cJSON *item,
                           const char *origin) {
    char where[1200];
    snprintf(where, sizeof where, "%s: key '%s'", origin, item->string);
    char text[64];
    switch (opt->type) {
    case OPTION_INT:
    case OPTION_LONG:
    case OPTION_U64:
        if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) ||
            fabs(item->valuedouble) > 9.007199254740992e15)
            return error_set(EXIT_USAGE, "%s must be an integer, not %s", where,
                             cJSON_IsNumber(item) ? "a fraction" : json_type_name(item));
        snprintf(text, sizeof text, "%.0f", item->valuedouble);
        return config_set_text(cfg, opt, text, where);
    case OPTION_DOUBLE:
        if (!cJSON_IsNumber(item))
            return error_set(EXIT_USAGE, "%s must be a number, not %s", where,
                             json_type_name(item));
        snprintf(text, sizeof text, "%.17g", item->valuedouble);
        return config_set_text(cfg, opt, text, where);
    case OPTION_BOOL:
        if (!cJSON_IsBool(item))
            return error_set(EXIT_USAGE, "%s must be true or false, not %s", where,
                             json_type_name(item));
        *(bool *)((char *)cfg + opt->offset) = cJSON_IsTrue(item);
        return 0;
    case OPTION_SIZE:
        if (cJSON_IsNumber(item) && item->valuedouble >= 0 &&
            item->valuedouble == floor(item->valuedouble)) {
            snprintf(text, sizeof text, "%.0f", item->valuedouble);
            return config_set_text(cfg, opt, text, where);
        }
        if (cJSON_IsString(item)) return config_set_text(cfg, opt, item->valuestring, where);
        return error_set(EXIT_USAGE, "%s must be a size (bytes or a string like \"15gb\"), not %s",
                         where, json_type_name(item));
    case OPTION_GPUS:
        if (cJSON_IsNumber(item) && item->valuedouble == floor(item->valuedouble)) {
            snprintf(text, sizeof text, "%.0f", item->valuedouble);
            return config_set_text(cfg, opt, text, where);
        }
        if (cJSON_IsString(item)) return config_set_text(cfg, opt, item->valuestring, where);
        return error_set(EXIT_USAGE, "%s must be a GPU count or \"auto\", not %s", where,
                         json_type_name(item));
    default:
        if (!cJSON_IsString(item))
            return error_set(EXIT_USAGE, "%s must be a string, not %s", where,
                             json_type_name(item));
        return config_set_text(cfg, opt, item->valuestring, where);
    }
}

int config_load_json(runner_config *cfg, const cJSON *root, const char *origin, cJSON *warnings) {
    if (!cJSON_IsObject(root))
        return error_set(EXIT_USAGE, "%s: the configuration must be a JSON object, not %s", origin,
                         json_type_name(root));
    for (const cJSON *item = root->child; item; item = item->next) {
        const config_option *match = NULL;
        for (size_t i = 0; i < COUNT(OPTIONS) && !match; i++)
            if (json_key_matches(&OPTIONS[i], item->string)) match = &OPTIONS[i];
        if (!match) {
            if (warnings) {
                char text[512];
                const char *hint = config_suggest_key(item->string);
                snprintf(text, sizeof text, "%s: unknown key '%s' ignored%s%s%s", origin,
                         item->string, hint ? " (did you mean '" : "", hint ? hint : "",
                         hint ? "'?)" : "");
                cJSON_AddItemToArray(warnings, cJSON_CreateString(text));
            }
            continue;
        }
        int rc = apply_json_item(cfg, match, item, origin);
        if (rc) return rc;
    }
    return 0;
}

int config_parse_json(runner_config *cfg, const char *text, size_t len, const char *origin,
                      cJSON *warnings) {
    const char *error_at = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &error_at, false);
    if (!root) {
        size_t offset = error_at && error_at >= text ? (size_t)(error_at - text) : len;
        int line = 1;
        for (size_t i = 0; i < offset && i < len; i++)
            line += text[i] == '\n';
        // cJSON points at the last byte when the input ended inside a value.
        if (offset + 1 >= len)
            return error_set(EXIT_USAGE, "--config %s: truncated or empty JSON (ends at line %d)",
                             origin, line);
        return error_set(EXIT_USAGE, "--config %s: malformed JSON at line %d (byte %zu)", origin,
                         line, offset);
    }
    for (const char *p = error_at; p && p < text + len; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') continue;
        int line = 1;
        for (const char *q = text; q < p; q++)
            line += *q == '\n';
        cJSON_Delete(root);
        return error_set(EXIT_USAGE,
                         "--config %s: malformed JSON: unexpected text after the "
                         "object at line %d",
                         origin, line);
    }
    int rc = config_load_json(cfg, root, origin, warnings);
    cJSON_Delete(root);
    return rc;
}

int config_apply_env(runner_config *cfg) {
    for (size_t i = 0; i < COUNT(OPTIONS); i++) {
        char name[80] = "RUNNER_";
        size_t len = strlen(name);
        for (const char *p = OPTIONS[i].flag; *p && len < sizeof name - 1; p++)
            name[len++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        name[len] = '\0';
        const char *value = getenv(name);
        if (!value) continue;
        int rc = config_set_text(cfg, &OPTIONS[i], value, name);
        if (rc) return rc;
    }
    return 0;
}

bool config_redis_password_span(const char *url, size_t *start, size_t *len) {
    const char *scheme = strstr(url, "://");
    if (!scheme) return false;
    const char *userinfo = scheme + 3;
    const char *at = strchr(userinfo, '@');
    const char *slash = strchr(userinfo, '/');
    if (!at || (slash && slash < at)) return false;
    const char *colon = memchr(userinfo, ':', (size_t)(at - userinfo));
    const char *begin = colon ? colon + 1 : userinfo;
    if (at == begin) return false;
    *start = (size_t)(begin - url);
    *len = (size_t)(at - begin);
    return true;
}

void config_redis_password(const char *url, char *out, size_t size) {
    out[0] = '\0';
    size_t start, len;
    if (!config_redis_password_span(url, &start, &len)) return;
    if (len >= size) len = size - 1;
    memcpy(out, url + start, len);
    out[len] = '\0';
}

cJSON *config_to_json(const runner_config *cfg) {
    cJSON *json = cJSON_CreateObject();
    for (size_t i = 0; i < COUNT(OPTIONS); i++) {
        const config_option *opt = &OPTIONS[i];
        const char *field = (const char *)cfg + opt->offset;
        switch (opt->type) {
        case OPTION_INT:
        case OPTION_GPUS:
            cJSON_AddNumberToObject(json, opt->flag, *(const int *)field);
            break;
        case OPTION_LONG:
            cJSON_AddNumberToObject(json, opt->flag, (double)*(const long *)field);
            break;
        case OPTION_U64:
        case OPTION_SIZE:
            cJSON_AddNumberToObject(json, opt->flag, (double)*(const uint64_t *)field);
            break;
        case OPTION_DOUBLE:
            cJSON_AddNumberToObject(json, opt->flag, *(const double *)field);
            break;
        case OPTION_BOOL:
            cJSON_AddBoolToObject(json, opt->flag, *(const bool *)field);
            break;
        case OPTION_MODE:
            cJSON_AddStringToObject(json, opt->flag, config_mode_name(*(const run_mode *)field));
            break;
        case OPTION_BACKEND:
            cJSON_AddStringToObject(json, opt->flag, BACKENDS[*(const backend_choice *)field]);
            break;
        case OPTION_LOG_FORMAT:
            cJSON_AddStringToObject(json, opt->flag, LOG_FORMATS[*(const int *)field]);
            break;
        case OPTION_PRECISION:
            cJSON_AddStringToObject(json, opt->flag,
                                    config_precision_name(*(const precision_choice *)field));
            break;
        default: {
            size_t start, len;
            if (!config_redis_password_span(field, &start, &len)) {
                cJSON_AddStringToObject(json, opt->flag, field);
                break;
            }
            // Keep the URL's shape, hide the password: at its own place in the URL (the
            // same text may come earlier, in the user name), and all of it however long.
            char shown[CONFIG_PATH_MAX + 8];
            snprintf(shown, sizeof shown, "%.*s***%s", (int)start, field, field + start + len);
            cJSON_AddStringToObject(json, opt->flag, shown);
        }
        }
    }
    cJSON_AddStringToObject(json, "config", cfg->config_path);
    return json;
}
