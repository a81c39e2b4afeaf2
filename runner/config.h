#pragma once
// The job's configuration. Precedence, lowest first: built-in defaults, --config JSON
// (the original's arguments.json keys), RUNNER_* environment variables, flags.
// config.c owns parsing; each area reads only the fields it needs.
#include <stdbool.h>
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

typedef struct {
    // What to run.
    char architecture[64]; // "bert", "distil", "electra", "roberta", "bert-tiny", ...
    run_mode mode;
    backend_choice backend;
    int gpus; // -1 = auto (all visible, none required), N = require N
    char config_path[CONFIG_PATH_MAX];
    char hyperspace_path[CONFIG_PATH_MAX];
    char data_path[CONFIG_PATH_MAX];   // dir or file; "" = bundled demo data
    char model_path[CONFIG_PATH_MAX];  // HF model dir (config.json + weights) or ""
    char output_path[CONFIG_PATH_MAX]; // local dir or s3:// URI
    char input_path[CONFIG_PATH_MAX];  // predict/embed/pretrain input

    // The original's arguments.json keys.
    int max_length;               // MAX_LENGTH
    int train_batch_size;         // TRAIN_BATCH_SIZE
    int valid_batch_size;         // VALID_BATCH_SIZE
    int test_batch_size;          // TEST_BATCH_SIZE
    int epochs;                   // EPOCHS
    double learning_rate;         // LEARNING_RATE
    double weight_decay;          // WEIGHT_DECAY
    double max_gradient_norm;     // MAX_GRADIENT_NORM
    double warmup_ratio;          // WARMUP_RATIO
    int n_trials;                 // N_TRIALS
    long n_instances;             // N_INSTANCES (0 = all)
    int save_total_limit;         // save_total_limit
    int early_stopping_patience;  // early_stopping_patience
    char pretrained_model_name[256]; // pretrained_model_name
    double dropout;               // hidden and attention dropout probability
    double max_bad_rows;          // fraction of malformed rows skipped before exit 3
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

    // Cloud.
    char secret_id[256]; // Secrets Manager secret holding bucket names, or ""

    // Logging.
    int log_format; // log_format from log.h
    bool verbose;
    bool json; // --json for --check / --exit-codes
} runner_config;

// Fill `cfg` with built-in defaults.
void config_defaults(runner_config *cfg);
