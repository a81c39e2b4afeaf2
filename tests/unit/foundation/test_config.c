// --config JSON: the original's keys, types, unknown keys, malformed and truncated files.
#include "check.h"
#include "runner/config.h"
#include "runner/error.h"

#include <stdlib.h>
#include <unistd.h>

static char dir[] = "/tmp/runner-config-XXXXXX";

static int load_text(runner_config *cfg, const char *text, cJSON *warnings) {
    char path[128];
    snprintf(path, sizeof path, "%s/c.json", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    config_defaults(cfg);
    error_clear();
    int rc = config_load_file(cfg, path, warnings);
    unlink(path);
    return rc;
}

static void test_original_keys(void) {
    runner_config cfg;
    cJSON *warnings = cJSON_CreateArray();
    CHECK_INT(load_text(&cfg,
                        "{\"MAX_LENGTH\": 60, \"TRAIN_BATCH_SIZE\": 8, \"VALID_BATCH_SIZE\": 4,"
                        " \"TEST_BATCH_SIZE\": 2, \"EPOCHS\": 7, \"LEARNING_RATE\": 0.001,"
                        " \"WEIGHT_DECAY\": 0.02, \"MAX_GRADIENT_NORM\": 5, \"N_TRIALS\": 3,"
                        " \"N_INSTANCES\": 1000, \"save_total_limit\": 1,"
                        " \"early_stopping_patience\": 4,"
                        " \"pretrained_model_name\": \"bert-base-uncased\","
                        " \"min_shm\": \"512m\", \"gpus\": \"auto\", \"serve\": false,"
                        " \"SOMETHING_ELSE\": 1}",
                        warnings),
              0);
    CHECK_INT(cfg.max_length, 60);
    CHECK_INT(cfg.train_batch_size, 8);
    CHECK_INT(cfg.valid_batch_size, 4);
    CHECK_INT(cfg.test_batch_size, 2);
    CHECK_INT(cfg.epochs, 7);
    CHECK_CLOSE(cfg.learning_rate, 0.001, 0, 1e-12);
    CHECK_CLOSE(cfg.weight_decay, 0.02, 0, 1e-12);
    CHECK_CLOSE(cfg.max_gradient_norm, 5, 0, 0);
    CHECK_INT(cfg.n_trials, 3);
    CHECK_INT(cfg.n_instances, 1000);
    CHECK_INT(cfg.save_total_limit, 1);
    CHECK_INT(cfg.early_stopping_patience, 4);
    CHECK_STR(cfg.pretrained_model_name, "bert-base-uncased");
    CHECK_INT(cfg.min_shm_bytes, 512ull << 20);
    CHECK_INT(cfg.gpus, -1);
    CHECK(!cfg.serve);
    CHECK_INT(cJSON_GetArraySize(warnings), 1);
    CHECK(strstr(cJSON_GetArrayItem(warnings, 0)->valuestring, "SOMETHING_ELSE") != NULL);
    cJSON_Delete(warnings);
}

static void test_wrong_types(void) {
    runner_config cfg;
    struct {
        const char *text, *needle;
    } cases[] = {
        {"{\"EPOCHS\": \"2\"}", "'EPOCHS' must be an integer"},
        {"{\"EPOCHS\": 2.5}", "'EPOCHS' must be an integer, not a fraction"},
        {"{\"EPOCHS\": -1}", "EPOCHS"},
        {"{\"LEARNING_RATE\": \"fast\"}", "'LEARNING_RATE' must be a number"},
        {"{\"LEARNING_RATE\": 7}", "LEARNING_RATE"},
        {"{\"pretrained_model_name\": 3}", "'pretrained_model_name' must be a string"},
        {"{\"architecture\": \"gpt\"}", "valid: bert"},
        {"{\"serve\": \"yes\"}", "'serve' must be true or false"},
        {"{\"TRAIN_BATCH_SIZE\": null}", "not null"},
        {"{\"TRAIN_BATCH_SIZE\": [16]}", "not an array"},
        {"{\"min_shm\": true}", "'min_shm' must be a size"},
        {"{\"EPOCHS\": 1e300}", "EPOCHS"},
        {"[1, 2]", "must be a JSON object"},
        {"\"EPOCHS\"", "must be a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_INT(load_text(&cfg, cases[i].text, NULL), EXIT_USAGE);
        if (!strstr(error_message(), cases[i].needle))
            fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, error_message(), cases[i].needle);
        CHECK(strstr(error_message(), cases[i].needle) != NULL);
        CHECK(strchr(error_message(), '\n') == NULL); // one line
    }
}

static void test_bad_files(void) {
    runner_config cfg;
    CHECK_INT(load_text(&cfg, "{\"EPOCHS\": 2, \"MAX_LENGTH\": ", NULL), EXIT_USAGE);
    CHECK(strstr(error_message(), "truncated") != NULL);
    CHECK(strstr(error_message(), "c.json") != NULL);
    CHECK_INT(load_text(&cfg, "", NULL), EXIT_USAGE);
    CHECK(strstr(error_message(), "c.json") != NULL);
    CHECK_INT(load_text(&cfg, "{\"EPOCHS\": 2,,}\n", NULL), EXIT_USAGE);
    CHECK(strstr(error_message(), "malformed") != NULL);
    CHECK_INT(load_text(&cfg, "{\"EPOCHS\": 2}\n{}", NULL), EXIT_USAGE);
    CHECK_INT(load_text(&cfg, "{\n\"EPOCHS\": 2,\n oops\n}", NULL), EXIT_USAGE);
    CHECK(strstr(error_message(), "line 3") != NULL);

    config_defaults(&cfg);
    CHECK_INT(config_load_file(&cfg, "/nonexistent/arguments.json", NULL), EXIT_USAGE);
    CHECK(strstr(error_message(), "/nonexistent/arguments.json") != NULL);
    CHECK_INT(config_load_file(&cfg, dir, NULL), EXIT_USAGE); // a directory
    CHECK(strstr(error_message(), dir) != NULL);
}

static void test_redis_password_and_json(void) {
    char password[64];
    config_redis_password("redis://:s3cret-pw@10.0.0.1:6379", password, sizeof password);
    CHECK_STR(password, "s3cret-pw");
    config_redis_password("redis://user:pw2@host:6379/0", password, sizeof password);
    CHECK_STR(password, "pw2");
    config_redis_password("redis://host:6379", password, sizeof password);
    CHECK_STR(password, "");
    config_redis_password("embedded", password, sizeof password);
    CHECK_STR(password, "");

    runner_config cfg;
    config_defaults(&cfg);
    snprintf(cfg.redis, sizeof cfg.redis, "redis://:s3cret-pw@10.0.0.1:6379");
    cJSON *json = config_to_json(&cfg);
    char *text = cJSON_PrintUnformatted(json);
    CHECK(strstr(text, "s3cret-pw") == NULL);
    CHECK(strstr(text, "redis://:***@10.0.0.1:6379") != NULL);
    CHECK(strstr(text, "\"train-batch-size\":16") != NULL);
    free(text);
    cJSON_Delete(json);

    // The password is hidden where it stands, even when the user name holds the same
    // text first, and whole, however long (it used to be cut to 255 bytes).
    const struct {
        const char *url, *shown;
    } cases[] = {
        {"redis://ab:b@host:6379", "redis://ab:***@host:6379"},
        {"redis://user@host", "redis://***@host"},
        {"redis://:@host", "redis://:@host"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(cfg.redis, sizeof cfg.redis, "%s", cases[i].url);
        json = config_to_json(&cfg);
        CHECK_STR(cJSON_GetObjectItem(json, "redis")->valuestring, cases[i].shown);
        cJSON_Delete(json);
    }
    char long_pw[400];
    memset(long_pw, 'p', sizeof long_pw - 1);
    long_pw[sizeof long_pw - 1] = '\0';
    snprintf(cfg.redis, sizeof cfg.redis, "redis://:%s@h:1", long_pw);
    json = config_to_json(&cfg);
    CHECK_STR(cJSON_GetObjectItem(json, "redis")->valuestring, "redis://:***@h:1");
    cJSON_Delete(json);
}

// config_parse_json is what config_load_file applies; it takes text that is not
// NUL-terminated and names `origin` in its errors.
static void test_parse_text(void) {
    runner_config cfg;
    config_defaults(&cfg);
    const char text[] = "{\"EPOCHS\": 9}garbage";
    CHECK_INT(config_parse_json(&cfg, text, 13, "mem.json", NULL), 0);
    CHECK_INT(cfg.epochs, 9);
    CHECK_INT(config_parse_json(&cfg, text, sizeof text - 1, "mem.json", NULL), EXIT_USAGE);
    CHECK(strstr(error_message(), "mem.json") && strstr(error_message(), "after the object"));
    CHECK_INT(config_parse_json(&cfg, text, 12, "mem.json", NULL), EXIT_USAGE);
    CHECK(strstr(error_message(), "truncated") != NULL);
}

static void test_suggestions(void) {
    CHECK_STR(config_suggest_key("EPOCH"), "EPOCHS");
    CHECK_STR(config_suggest_key("train_batchsize"), "TRAIN_BATCH_SIZE");
    CHECK_STR(config_suggest_key("LEARNING_RATES"), "LEARNING_RATE");
    CHECK(config_suggest_key("NUM_GPUS_PER_TRIAL") == NULL);
    CHECK_STR(config_suggest_flag("epocs"), "epochs");
    CHECK_STR(config_suggest_flag("architecure"), "architecture");
    CHECK_STR(config_suggest_flag("metric-port"), "metrics-port");
    CHECK(config_suggest_flag("bogus") == NULL);
    runner_config cfg;
    cJSON *warnings = cJSON_CreateArray();
    CHECK_INT(load_text(&cfg, "{\"EPOCH\": 3}", warnings), 0);
    CHECK(strstr(cJSON_GetArrayItem(warnings, 0)->valuestring, "did you mean 'EPOCHS'?") != NULL);
    CHECK_INT(cfg.epochs, 2); // ignored, not guessed
    cJSON_Delete(warnings);
}

int main(void) {
    CHECK(mkdtemp(dir) != NULL);
    test_suggestions();
    test_original_keys();
    test_wrong_types();
    test_bad_files();
    test_redis_password_and_json();
    test_parse_text();
    rmdir(dir);
    return check_summary();
}
