// Command line: getopt_long parsing, docker flags, precedence defaults < config < env < flags.
#include "check.h"
#include "runner/cli.h"
#include "runner/error.h"

#include <stdlib.h>
#include <unistd.h>

static int parse(runner_config *cfg, cli_action *action, int argc, const char **argv) {
    error_clear();
    return cli_parse(argc, (char **)argv, cfg, action, NULL);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_original_command(void) {
    runner_config cfg;
    cli_action action;
    const char *argv[] = {"runner", "src/main.py", "--architecture", "bert"};
    CHECK_INT(parse(&cfg, &action, 4, argv), 0);
    CHECK_STR(cfg.architecture, "bert");
    CHECK_INT(action, CLI_RUN);
    CHECK_INT(cfg.mode, MODE_PIPELINE);
    CHECK_STR(cfg.output_path, "./out");

    const char *defaults[] = {"runner"};
    CHECK_INT(parse(&cfg, &action, 1, defaults), 0);
    CHECK_STR(cfg.architecture, "distil"); // the original's default
    CHECK_INT(cfg.gpus, -1);
    CHECK(cfg.serve);

    // main.py elsewhere than argv[1] is an unexpected argument.
    const char *late[] = {"runner", "--architecture", "bert", "src/main.py"};
    CHECK_INT(parse(&cfg, &action, 4, late), EXIT_USAGE);
    CHECK(strstr(error_message(), "src/main.py") != NULL);
}

static void test_docker_flags(void) {
    runner_config cfg;
    cli_action action;
    const char *gpus[] = {"runner", "--gpus", "all"};
    CHECK_INT(parse(&cfg, &action, 3, gpus), EXIT_USAGE);
    CHECK(strstr(error_message(), "resourceRequirements") != NULL);
    const char *device[] = {"runner", "--gpus=device=0,1"};
    CHECK_INT(parse(&cfg, &action, 2, device), EXIT_USAGE);
    const char *shm[] = {"runner", "--shm-size=15gb"};
    CHECK_INT(parse(&cfg, &action, 2, shm), EXIT_USAGE);
    CHECK(strstr(error_message(), "linuxParameters.sharedMemorySize") != NULL);
    const char *port[] = {"runner", "-p", "6006:6006"};
    CHECK_INT(parse(&cfg, &action, 3, port), EXIT_USAGE);
    CHECK(strstr(error_message(), "port mappings") != NULL);
    const char *joined[] = {"runner", "-p6379:6379"};
    CHECK_INT(parse(&cfg, &action, 2, joined), EXIT_USAGE);
    // runner's own --gpus takes a count or auto.
    const char *ours[] = {"runner", "--gpus", "4"};
    CHECK_INT(parse(&cfg, &action, 3, ours), 0);
    CHECK_INT(cfg.gpus, 4);
    const char *autog[] = {"runner", "--gpus", "auto"};
    CHECK_INT(parse(&cfg, &action, 3, autog), 0);
    CHECK_INT(cfg.gpus, -1);
}

static void test_bad_values(void) {
    runner_config cfg;
    cli_action action;
    struct {
        const char *flag, *value, *needle;
    } cases[] = {
        {"--architecture", "gpt2", "valid: bert, distil"},
        {"--mode", "serve", "valid: pipeline"},
        {"--backend", "tpu", "valid: auto, cpu, cuda"},
        {"--epochs", "two", "--epochs"},
        {"--epochs", "0", "1..100000"},
        {"--epochs", "3x", "--epochs"},
        {"--learning-rate", "nan", "--learning-rate"},
        {"--metrics-port", "70000", "1..65535"},
        {"--min-shm", "15 parsecs", "size"},
        {"--log-format", "xml", "json"},
        {"--seed", "-1", "--seed"},
        {"--gpus", "-2", "--gpus"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[] = {"runner", cases[i].flag, cases[i].value};
        CHECK_INT(parse(&cfg, &action, 3, argv), EXIT_USAGE);
        if (!strstr(error_message(), cases[i].needle))
            fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, error_message(), cases[i].needle);
        CHECK(strstr(error_message(), cases[i].needle) != NULL);
    }
    const char *unknown[] = {"runner", "--architectur-typo"};
    CHECK_INT(parse(&cfg, &action, 2, unknown), EXIT_USAGE);
    CHECK(strstr(error_message(), "--architectur-typo") != NULL);
    CHECK(strstr(error_message(), "--architecture") != NULL); // the valid ones are listed
    const char *typo[] = {"runner", "--epocs", "3"};
    CHECK_INT(parse(&cfg, &action, 3, typo), EXIT_USAGE);
    CHECK(strstr(error_message(), "did you mean --epochs?") != NULL);
    const char *missing[] = {"runner", "--epochs"};
    CHECK_INT(parse(&cfg, &action, 2, missing), EXIT_USAGE);
    CHECK(strstr(error_message(), "--epochs") != NULL);
}

static void test_actions(void) {
    runner_config cfg;
    cli_action action;
    const char *check[] = {"runner", "--check", "--json"};
    CHECK_INT(parse(&cfg, &action, 3, check), 0);
    CHECK_INT(action, CLI_CHECK);
    CHECK(cfg.json);
    const char *mode[] = {"runner", "--mode", "check"};
    CHECK_INT(parse(&cfg, &action, 3, mode), 0);
    CHECK_INT(action, CLI_CHECK);
    CHECK(!cfg.json);
    const char *codes[] = {"runner", "--exit-codes", "--json"};
    CHECK_INT(parse(&cfg, &action, 3, codes), 0);
    CHECK_INT(action, CLI_EXIT_CODES);
    CHECK(cfg.json);
    const char *help[] = {"runner", "-h"};
    CHECK_INT(parse(&cfg, &action, 2, help), 0);
    CHECK_INT(action, CLI_HELP);
    const char *version[] = {"runner", "--version"};
    CHECK_INT(parse(&cfg, &action, 2, version), 0);
    CHECK_INT(action, CLI_VERSION);
    const char *serve[] = {"runner", "--no-serve", "--verbose"};
    CHECK_INT(parse(&cfg, &action, 3, serve), 0);
    CHECK(!cfg.serve);
    CHECK(cfg.verbose);
}

static void test_precedence(void) {
    char dir[] = "/tmp/runner-cli-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/arguments.json", dir);
    write_file(path, "{\"EPOCHS\": 3, \"TRAIN_BATCH_SIZE\": 32, \"LEARNING_RATE\": 5e-5,"
                     " \"architecture\": \"electra\", \"max_length\": 64}");
    runner_config cfg;
    cli_action action;

    // config only
    unsetenv("RUNNER_EPOCHS");
    unsetenv("RUNNER_ARCHITECTURE");
    const char *config_only[] = {"runner", "--config", path};
    CHECK_INT(parse(&cfg, &action, 3, config_only), 0);
    CHECK_INT(cfg.epochs, 3);
    CHECK_INT(cfg.train_batch_size, 32);
    CHECK_CLOSE(cfg.learning_rate, 5e-5, 0, 1e-12);
    CHECK_STR(cfg.architecture, "electra");
    CHECK_INT(cfg.max_length, 64);       // the flag name with underscores works too
    CHECK_INT(cfg.valid_batch_size, 16); // untouched: default

    // env over config
    setenv("RUNNER_EPOCHS", "4", 1);
    setenv("RUNNER_ARCHITECTURE", "bert-tiny", 1);
    CHECK_INT(parse(&cfg, &action, 3, config_only), 0);
    CHECK_INT(cfg.epochs, 4);
    CHECK_STR(cfg.architecture, "bert-tiny");
    CHECK_INT(cfg.train_batch_size, 32);

    // flags over env, in any position
    const char *flags[] = {"runner", "--epochs", "5", "--config", path};
    CHECK_INT(parse(&cfg, &action, 5, flags), 0);
    CHECK_INT(cfg.epochs, 5);
    CHECK_STR(cfg.architecture, "bert-tiny");

    // RUNNER_CONFIG names the file when --config does not
    setenv("RUNNER_CONFIG", path, 1);
    unsetenv("RUNNER_EPOCHS");
    const char *bare[] = {"runner"};
    CHECK_INT(parse(&cfg, &action, 1, bare), 0);
    CHECK_INT(cfg.epochs, 3);
    unsetenv("RUNNER_CONFIG");

    // a bad environment value names the variable
    setenv("RUNNER_EPOCHS", "many", 1);
    CHECK_INT(parse(&cfg, &action, 1, bare), EXIT_USAGE);
    CHECK(strstr(error_message(), "RUNNER_EPOCHS") != NULL);
    // ... unless a flag would win anyway? No: every source is validated.
    unsetenv("RUNNER_EPOCHS");
    unsetenv("RUNNER_ARCHITECTURE");
    setenv("RUNNER_NO_SUCH_THING", "1", 1); // unknown RUNNER_* variables are other areas'
    CHECK_INT(parse(&cfg, &action, 1, bare), 0);
    unsetenv("RUNNER_NO_SUCH_THING");
    setenv("RUNNER_SERVE", "false", 1);
    CHECK_INT(parse(&cfg, &action, 1, bare), 0);
    CHECK(!cfg.serve);
    const char *serve_flag[] = {"runner", "--serve"};
    CHECK_INT(parse(&cfg, &action, 2, serve_flag), 0);
    CHECK(cfg.serve);
    unsetenv("RUNNER_SERVE");

    unlink(path);
    rmdir(dir);
}

extern char **environ;

// The tests set the RUNNER_* variables they need; none may leak in from the caller.
static void clear_runner_environment(void) {
    for (bool found = true; found;) {
        found = false;
        for (char **env = environ; *env; env++) {
            if (strncmp(*env, "RUNNER_", 7) != 0) continue;
            char name[256];
            size_t len = strcspn(*env, "=");
            if (len >= sizeof name) continue;
            memcpy(name, *env, len);
            name[len] = '\0';
            unsetenv(name);
            found = true;
            break;
        }
    }
}

int main(void) {
    clear_runner_environment();
    test_original_command();
    test_docker_flags();
    test_bad_values();
    test_actions();
    test_precedence();
    return check_summary();
}
