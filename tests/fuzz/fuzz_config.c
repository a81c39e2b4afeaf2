// Fuzz target for the configuration: arbitrary bytes as the text of a --config file
// (config_parse_json, what config_load_file applies), or, when the first byte is below
// TAB, as the text value of one option (config_set_text, what a flag or a RUNNER_*
// variable goes through; the second byte picks the option). Either must give 0 or
// EXIT_USAGE with a message; after success every number lies in its option's range or
// keeps its default, every string fits its field, and config_to_json replaces the whole
// redis password, at its place in the URL, by "***". Anything else aborts.
#include "runner/config.h"
#include "runner/error.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SEED_ONE                                                                                   \
    "{\"MAX_LENGTH\": 60, \"TRAIN_BATCH_SIZE\": 8, \"EPOCHS\": 7, \"LEARNING_RATE\": 0.001,"       \
    " \"WEIGHT_DECAY\": 0.02, \"N_TRIALS\": 3, \"N_INSTANCES\": 1000, \"min_shm\": \"512m\","      \
    " \"gpus\": \"auto\", \"serve\": false, \"SEED\": 5, \"architecture\": \"bert-tiny\","         \
    " \"mode\": \"train\", \"backend\": \"cpu\", \"log_format\": \"json\", \"EPOCH\": 1}"
#define SEED_TWO "{\"redis\": \"redis://user:pw@host:6379/0\", \"min_shm\": 1048576, \"gpus\": 2}\n"
#define SEED_THREE                                                                                 \
    "\x01\x05"                                                                                     \
    "15.5gb"
const char *const fuzz_seeds[] = {SEED_ONE, SEED_TWO, SEED_THREE, NULL};
const size_t fuzz_seed_sizes[] = {sizeof SEED_ONE - 1, sizeof SEED_TWO - 1, sizeof SEED_THREE - 1,
                                  0};

// A number option's value: in its range, or still the default (which may lie outside it:
// learning_rate 0 and warmup_ratio -1 mean "from the starting point").
static void check_number(const config_option *opt, double value, double fallback) {
    if (value == fallback) return;
    if (!(value >= opt->min && value <= opt->max)) abort();
}

static void check_config(const runner_config *cfg) {
    runner_config defaults;
    config_defaults(&defaults);
    int count;
    const config_option *opts = config_options(&count);
    for (int i = 0; i < count; i++) {
        const config_option *opt = &opts[i];
        const char *field = (const char *)cfg + opt->offset;
        const char *fallback = (const char *)&defaults + opt->offset;
        switch (opt->type) {
        case OPTION_INT:
            check_number(opt, *(const int *)field, *(const int *)fallback);
            break;
        case OPTION_LONG:
            check_number(opt, (double)*(const long *)field, (double)*(const long *)fallback);
            break;
        case OPTION_DOUBLE:
            check_number(opt, *(const double *)field, *(const double *)fallback);
            break;
        case OPTION_GPUS:
            if (*(const int *)field != -1) check_number(opt, *(const int *)field, -1);
            break;
        case OPTION_STRING:
        case OPTION_PATH:
        case OPTION_ARCHITECTURE:
            if (strnlen(field, opt->size) >= opt->size) abort();
            break;
        default:
            break;
        }
    }
    if ((unsigned)cfg->mode > MODE_CHECK || (unsigned)cfg->backend > BACKEND_CUDA) abort();

    cJSON *json = config_to_json(cfg);
    if (!json) abort();
    const cJSON *redis = cJSON_GetObjectItemCaseSensitive(json, "redis");
    if (!cJSON_IsString(redis)) abort();
    size_t start, len;
    const char *shown = redis->valuestring;
    if (config_redis_password_span(cfg->redis, &start, &len)) {
        size_t total = strlen(cfg->redis);
        if (start + len > total || strlen(shown) != total - len + 3 ||
            memcmp(shown, cfg->redis, start) != 0 || memcmp(shown + start, "***", 3) != 0 ||
            strcmp(shown + start + 3, cfg->redis + start + len) != 0)
            abort();
    } else if (strcmp(shown, cfg->redis) != 0) {
        abort();
    }
    cJSON_Delete(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    runner_config cfg;
    config_defaults(&cfg);
    error_clear();
    int rc;
    if (size >= 2 && data[0] < '\t') {
        int count;
        const config_option *opts = config_options(&count);
        const config_option *opt = &opts[data[1] % count];
        char *text = malloc(size - 1);
        memcpy(text, data + 2, size - 2);
        text[size - 2] = '\0';
        rc = config_set_text(&cfg, opt, text, opt->flag);
        config_suggest_flag(text);
        free(text);
    } else {
        cJSON *warnings = cJSON_CreateArray();
        rc = config_parse_json(&cfg, (const char *)data, size, "fuzz.json", warnings);
        const cJSON *w;
        cJSON_ArrayForEach(w, warnings) if (!cJSON_IsString(w)) abort();
        cJSON_Delete(warnings);
    }
    if (rc != 0 && rc != EXIT_USAGE) abort();
    if (rc != 0 && !error_message()[0]) abort();
    if (rc == 0) check_config(&cfg);
    return 0;
}
