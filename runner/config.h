#pragma once
// The job's configuration. Precedence, lowest first: built-in defaults, --config JSON
// (the original's arguments.json keys), RUNNER_* environment variables, flags.
// config.c owns parsing; each area reads only the fields it needs.
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { CONFIG_PATH_MAX = 1024 };

typedef enum {
    MODE_PIPELINE, // split -> search -> prime training -> evaluation -> export (default)
    MODE_TRAIN,
    MODE_PREDICT,
    MODE_EMBED,
    MODE_PRETRAIN,
    MODE_CHECK,
} run_mode;

typedef enum { BACKEND_AUTO, BACKEND_CPU, BACKEND_CUDA } backend_choice;

// --precision: what the linear layers of inference passes (evaluation, predict, embed)
// compute in. auto = the backend's own (CPU fp32, CUDA bf16); bf16 on a CPU without bf16
// instructions runs fp32 with a warning; fp32 on CUDA is refused (docs/kernels.md).
typedef enum { PRECISION_AUTO, PRECISION_FP32, PRECISION_BF16 } precision_choice;

typedef struct {
    // What to run.
    char architecture[64]; // "bert", "distil", "electra", "roberta", "bert-tiny", ...
    run_mode mode;
    backend_choice backend;
    precision_choice precision;
    int gpus; // -1 = auto (all visible, none required), N = require N
    char config_path[CONFIG_PATH_MAX];
    char hyperspace_path[CONFIG_PATH_MAX];
    char data_path[CONFIG_PATH_MAX];   // dir or file; "" = bundled demo data
    char model_path[CONFIG_PATH_MAX];  // HF model dir, s3:// prefix, Hub id [org/]name[@rev], or ""
    char revision[256];                // Hub revision of a model id (--revision), "" = main
    char prefetch[CONFIG_PATH_MAX];    // --prefetch: the Hub model id to cache, then exit
    char output_path[CONFIG_PATH_MAX]; // local dir or s3:// URI
    char input_path[CONFIG_PATH_MAX];  // predict/embed/pretrain input

    // The original's arguments.json keys.
    int max_length;               // MAX_LENGTH
    int train_batch_size;         // TRAIN_BATCH_SIZE
    int valid_batch_size;         // VALID_BATCH_SIZE
    int test_batch_size;          // TEST_BATCH_SIZE
    int epochs;                   // EPOCHS
    double learning_rate;         // LEARNING_RATE; 0 = from the starting point
    double weight_decay;          // WEIGHT_DECAY
    double max_gradient_norm;     // MAX_GRADIENT_NORM
    double warmup_ratio;          // WARMUP_RATIO; -1 = from the starting point
    int n_trials;                 // N_TRIALS
    long n_instances;             // N_INSTANCES (0 = all)
    int save_total_limit;         // save_total_limit
    int early_stopping_patience;  // early_stopping_patience
    char pretrained_model_name[256]; // pretrained_model_name
    double dropout;               // hidden and attention dropout probability
    double max_bad_rows;          // fraction of malformed rows skipped before exit 3
    bool require_learning;        // a model no better than the baseline exits 9
    uint64_t seed;                // SEED (the original split with 5)

    // Resources.
    uint64_t min_shm_bytes; // 0 = computed from workers and batch size
    int threads;            // OpenMP threads per worker, 0 = all cores
    int workers;            // worker processes, 0 = one per GPU (one on CPU)

    // Servers.
    char bind_address[64]; // 0.0.0.0
    int metrics_port;      // 6006
    int api_port;          // 6007
    int dashboard_port;    // 8265
    bool serve;            // false: no HTTP servers (--no-serve)

    // Coordination.
    char redis[512]; // "embedded" | "off" | redis://[:password@]host:port
    int redis_port;  // 6379, for the embedded server
    int rendezvous_timeout_s;
    int redis_outage_timeout_s; // a single node's patience with a lost Redis (300)

    // Cloud.
    char secret_id[256]; // Secrets Manager secret holding bucket names, or ""
    char hf_token_secret[512]; // Secrets Manager secret holding the HF token, or ""

    // Logging.
    int log_format; // log_format from log.h
    bool verbose;
    bool json; // --json for --check / --exit-codes
} runner_config;

// Fill `cfg` with built-in defaults.
void config_defaults(runner_config *cfg);

// ---- Sources, applied in precedence order by cli_parse() (runner/cli.h) ---------------
// One table describes every option: its flag (--NAME), its environment variable
// (RUNNER_NAME, dashes as underscores), its --config JSON key (the original's
// arguments.json key where one exists, else NAME with underscores) and its type.
typedef enum {
    OPTION_INT, OPTION_LONG, OPTION_DOUBLE, OPTION_U64, OPTION_STRING, OPTION_PATH,
    OPTION_BOOL, OPTION_SIZE, OPTION_ARCHITECTURE, OPTION_MODE, OPTION_BACKEND,
    OPTION_GPUS, OPTION_LOG_FORMAT, OPTION_PRECISION,
} option_type;

typedef struct {
    const char *flag;     // "train-batch-size"
    const char *json_key; // "TRAIN_BATCH_SIZE"
    option_type type;
    size_t offset, size;  // the field in runner_config
    double min, max;      // inclusive range for numbers
    const char *group;    // --help section
    const char *metavar;
    const char *help;
} config_option;

const config_option *config_options(int *count);
// Find an option by flag name (without dashes), NULL when none.
const config_option *config_option_find(const char *flag);
// Set one option from text (a flag's or an environment variable's value). `origin`
// names the source in errors ("--epochs", "RUNNER_EPOCHS"). 0 or EXIT_USAGE.
int config_set_text(runner_config *cfg, const config_option *opt, const char *value,
                    const char *origin);
// Apply a --config JSON file: 0, or EXIT_USAGE naming the file (unreadable, malformed,
// truncated) or the key (wrong type, out of range). Unknown keys are appended to
// `warnings` (a cJSON array of strings, may be NULL).
int config_load_file(runner_config *cfg, const char *path, cJSON *warnings);
// The text of a --config file (`len` bytes, need not be NUL-terminated; `origin` names it
// in errors): what config_load_file applies once it has read the file (config_file.c).
// 0 or EXIT_USAGE, as config_load_file.
int config_parse_json(runner_config *cfg, const char *text, size_t len, const char *origin,
                      cJSON *warnings);
int config_load_json(runner_config *cfg, const cJSON *root, const char *origin,
                     cJSON *warnings);
// Apply every RUNNER_<NAME> environment variable of the table. 0 or EXIT_USAGE.
int config_apply_env(runner_config *cfg);
// The effective configuration as JSON (passwords in URLs replaced by "***").
cJSON *config_to_json(const runner_config *cfg);
// Valid names, comma-separated, for messages and --help.
const char *config_architecture_names(void);
const char *config_mode_names(void);
const char *config_mode_name(run_mode mode);
const char *config_precision_name(precision_choice precision); // "auto", "fp32", "bf16"
// The option a mistyped name most likely meant (flag or --config key, compared without
// case, dashes or underscores), or NULL when none is within two edits. Returns the
// spelling of the same kind: a --config key for a key, a flag name for a flag.
const char *config_suggest_key(const char *key);
const char *config_suggest_flag(const char *flag);
// The password inside a redis:// URL (for log_redact), "" when none; into `out`.
void config_redis_password(const char *url, char *out, size_t size);
// Where that password lies in `url`: true with its offset and length, false when none.
bool config_redis_password_span(const char *url, size_t *start, size_t *len);
