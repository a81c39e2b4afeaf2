#include "runner/cli.h"

#include "runner/error.h"
#include "version.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#ifdef RUNNER_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

enum {
    CODE_TABLE = 1000,   // + index: an option of the table
    CODE_NEGATED = 2000, // + index: --no-NAME of a boolean option
    CODE_HELP = 3000,
    CODE_VERSION,
    CODE_CHECK,
    CODE_JSON,
    CODE_EXIT_CODES,
    CODE_PREFETCH,
    CODE_CONFIG,
    CODE_SHM_SIZE, // docker's, refused
    CODE_PUBLISH,  // docker's -p/--publish, refused
};

enum { OPTIONS_MAX = 128 };

typedef struct {
    int code;
    const char *value;
} parsed_flag;

static struct option long_options[OPTIONS_MAX];
static char negated_names[OPTIONS_MAX][72];
static int long_option_count;

static void add_long(const char *name, int has_arg, int code) {
    if (long_option_count >= OPTIONS_MAX - 1) return;
    long_options[long_option_count++] = (struct option){name, has_arg, NULL, code};
    long_options[long_option_count] = (struct option){0, 0, 0, 0};
}

static void build_long_options(void) {
    if (long_option_count) return;
    int count;
    const config_option *table = config_options(&count);
    for (int i = 0; i < count; i++) {
        if (table[i].type == OPTION_BOOL) {
            add_long(table[i].flag, no_argument, CODE_TABLE + i);
            snprintf(negated_names[i], sizeof negated_names[i], "no-%s", table[i].flag);
            add_long(negated_names[i], no_argument, CODE_NEGATED + i);
        } else {
            add_long(table[i].flag, required_argument, CODE_TABLE + i);
        }
    }
    add_long("help", no_argument, CODE_HELP);
    add_long("version", no_argument, CODE_VERSION);
    add_long("check", no_argument, CODE_CHECK);
    add_long("json", no_argument, CODE_JSON);
    add_long("exit-codes", no_argument, CODE_EXIT_CODES);
    add_long("prefetch", required_argument, CODE_PREFETCH);
    add_long("config", required_argument, CODE_CONFIG);
    add_long("shm-size", required_argument, CODE_SHM_SIZE);
    add_long("publish", required_argument, CODE_PUBLISH);
}

// Every flag, for the one-line "valid flags" list of an unknown-flag error.
static const char *valid_flags(void) {
    static char buf[2048];
    size_t len = 0;
    for (int i = 0; i < long_option_count && len < sizeof buf; i++) {
        int code = long_options[i].val;
        if (code == CODE_SHM_SIZE || code == CODE_PUBLISH) continue;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s--%s", len ? " " : "",
                                long_options[i].name);
    }
    return buf;
}

static bool is_main_py(const char *arg) {
    size_t len = strlen(arg);
    return len >= 7 && strcmp(arg + len - 7, "main.py") == 0 && (len == 7 || arg[len - 8] == '/');
}

// Docker's --gpus values ("all", "device=0,1", "count=2") in a job command: GPUs of a
// Batch job come from its job definition.
static bool is_docker_gpus_value(const char *value) {
    return strcmp(value, "all") == 0 || strstr(value, "device=") || strstr(value, "count=") ||
           strstr(value, "capabilities=");
}

int cli_parse(int argc, char **argv, runner_config *cfg, cli_action *action, cJSON *warnings) {
    config_defaults(cfg);
    *action = CLI_RUN;
    build_long_options();

    // argv without a leading src/main.py; getopt_long permutes this copy, not argv.
    char **args = calloc((size_t)argc + 1, sizeof *args);
    parsed_flag *flags = calloc((size_t)argc + 1, sizeof *flags);
    if (!args || !flags) {
        free(args);
        free(flags);
        return error_set(EXIT_INTERNAL, "out of memory parsing the command line");
    }
    int n = 0;
    args[n++] = argc > 0 ? argv[0] : "runner";
    for (int i = 1; i < argc; i++)
        if (!(i == 1 && is_main_py(argv[i]))) args[n++] = argv[i];
    args[n] = NULL;

    int rc = 0, flag_count = 0;
    const char *config_path = getenv("RUNNER_CONFIG");
    bool want_json = false;
    const char *prefetch = NULL;
    opterr = 0;
    optind = 0; // full re-initialisation (glibc), so cli_parse can run more than once
    for (;;) {
        int index = -1;
        int code = getopt_long(n, args, ":hp:", long_options, &index);
        if (code == -1) break;
        const char *text = optind > 0 && optind <= n ? args[optind - 1] : "?";
        if (code == '?') {
            if (optopt && optopt < 256 && optopt != 'p')
                rc = error_set(EXIT_USAGE, "unknown option '-%c' (valid: -h %s)", optopt,
                               valid_flags());
            else {
                // "--epocs" or "--epocs=3": suggest the flag it most likely meant.
                char name[80];
                snprintf(name, sizeof name, "%s", text + strspn(text, "-"));
                name[strcspn(name, "=")] = '\0';
                const char *hint = config_suggest_flag(name);
                rc = error_set(EXIT_USAGE, "unknown option '%s'%s%s%s (valid: %s)", text,
                               hint ? "; did you mean --" : "", hint ? hint : "", hint ? "?" : "",
                               valid_flags());
            }
            break;
        }
        if (code == ':') {
            rc = error_set(EXIT_USAGE, "option '%s' needs a value (see runner --help)", text);
            break;
        }
        if (code == 'h' || code == CODE_HELP) {
            *action = CLI_HELP;
            goto done;
        }
        if (code == CODE_VERSION) {
            *action = CLI_VERSION;
            goto done;
        }
        if (code == 'p' || code == CODE_PUBLISH) {
            rc = error_set(EXIT_USAGE,
                           "'-p %s' is a docker flag, not a runner flag: publish ports with the "
                           "port mappings of the job definition (or docker run -p); runner's own "
                           "ports are --metrics-port, --api-port, --dashboard-port",
                           optarg);
            break;
        }
        if (code == CODE_SHM_SIZE) {
            rc = error_set(EXIT_USAGE,
                           "'--shm-size %s' is a docker flag, not a runner flag: set "
                           "linuxParameters.sharedMemorySize (MiB) in the Batch job definition "
                           "(or docker run --shm-size); runner checks it, see --min-shm",
                           optarg);
            break;
        }
        if (code >= CODE_TABLE && code < CODE_NEGATED) {
            int count;
            const config_option *opt = &config_options(&count)[code - CODE_TABLE];
            if (opt->type == OPTION_GPUS && is_docker_gpus_value(optarg)) {
                rc =
                    error_set(EXIT_USAGE,
                              "'--gpus %s' is docker's flag: give the job GPUs with "
                              "resourceRequirements [{\"type\": \"GPU\", \"value\": \"N\"}] in the "
                              "Batch job definition (or docker run --gpus); runner's --gpus takes "
                              "N or auto",
                              optarg);
                break;
            }
        }
        if (code == CODE_CONFIG)
            config_path = optarg;
        else if (code == CODE_CHECK)
            *action = CLI_CHECK;
        else if (code == CODE_EXIT_CODES)
            *action = CLI_EXIT_CODES;
        else if (code == CODE_PREFETCH)
            *action = CLI_PREFETCH, prefetch = optarg;
        else if (code == CODE_JSON)
            want_json = true;
        else
            flags[flag_count++] = (parsed_flag){code, optarg};
    }
    if (!rc && optind < n)
        rc = error_set(EXIT_USAGE,
                       "unexpected argument '%s' (runner takes flags only; see "
                       "runner --help)",
                       args[optind]);
    if (rc || *action == CLI_EXIT_CODES) goto done;

    if (config_path && *config_path) {
        snprintf(cfg->config_path, sizeof cfg->config_path, "%s", config_path);
        if ((rc = config_load_file(cfg, config_path, warnings))) goto done;
    }
    if ((rc = config_apply_env(cfg))) goto done;
    for (int i = 0; i < flag_count && !rc; i++) {
        int count;
        const config_option *table = config_options(&count);
        int code = flags[i].code;
        char origin[80];
        if (code >= CODE_NEGATED) {
            const config_option *opt = &table[code - CODE_NEGATED];
            snprintf(origin, sizeof origin, "--no-%s", opt->flag);
            rc = config_set_text(cfg, opt, "false", origin);
        } else {
            const config_option *opt = &table[code - CODE_TABLE];
            snprintf(origin, sizeof origin, "--%s", opt->flag);
            rc = config_set_text(cfg, opt, opt->type == OPTION_BOOL ? "true" : flags[i].value,
                                 origin);
        }
    }
    if (rc) goto done;
    cfg->json = want_json;
    if (prefetch) {
        if (strlen(prefetch) >= sizeof cfg->prefetch) {
            rc = error_set(EXIT_USAGE, "--prefetch: the model id is too long");
            goto done;
        }
        snprintf(cfg->prefetch, sizeof cfg->prefetch, "%s", prefetch);
    }
    if (cfg->mode == MODE_CHECK) *action = CLI_CHECK;

done:
    if (*action == CLI_EXIT_CODES) cfg->json = want_json;
    free(args);
    free(flags);
    return rc;
}

static const char *const GROUPS[][2] = {
    {"job", "What to run"},
    {"training", "Training (the original's arguments.json keys)"},
    {"resources", "Resources"},
    {"servers", "Servers"},
    {"coordination", "Coordination and cloud"},
    {"logging", "Logging"},
};

void cli_print_help(FILE *out) {
    fputs("Usage: runner [src/main.py] [--architecture NAME] [--mode MODE] [options]\n"
          "       runner --check [--json]        preflight only: report, then exit with its code\n"
          "       runner --exit-codes [--json]   print the exit-code table\n"
          "       runner --prefetch ORG/NAME[@REV] fill the Hugging Face cache, then exit\n"
          "       runner --help | --version\n\n"
          "Fine-tunes BERT-family models for named-entity tagging: the container command of a\n"
          "GPU training image on AWS Batch (CPU backend when no GPU is visible).\n",
          out);
    int count;
    const config_option *table = config_options(&count);
    for (size_t g = 0; g < sizeof GROUPS / sizeof GROUPS[0]; g++) {
        fprintf(out, "\n%s:\n", GROUPS[g][1]);
        if (g == 0)
            fprintf(out, "  %-34s %s\n", "--config FILE.json",
                    "settings file (local path); keys as arguments.json");
        for (int i = 0; i < count; i++) {
            if (strcmp(table[i].group, GROUPS[g][0]) != 0) continue;
            char left[80];
            if (table[i].type == OPTION_BOOL)
                snprintf(left, sizeof left, "--%s, --no-%s", table[i].flag, table[i].flag);
            else
                snprintf(left, sizeof left, "--%s %s", table[i].flag, table[i].metavar);
            fprintf(out, "  %-34s %s\n", left, table[i].help);
        }
    }
    fputs("\nActions:\n"
          "  --check [--json]                   run the preflight checks only\n"
          "  --exit-codes [--json]              the exit codes and what AWS Batch does with each\n"
          "  --prefetch ORG/NAME[@REV]          download a Hub model into the Hugging Face cache\n"
          "                                     (HF_HUB_CACHE / HF_HOME; docs/hub.md), then exit\n"
          "  --help, -h                         this text\n"
          "  --version                          version, commit, build type, CUDA versions\n"
          "\nEvery option can also be set in the environment as RUNNER_<NAME> (dashes as\n"
          "underscores, e.g. RUNNER_TRAIN_BATCH_SIZE=32) or in --config FILE.json (the\n"
          "original's keys: MAX_LENGTH, TRAIN_BATCH_SIZE, EPOCHS, LEARNING_RATE, ...).\n"
          "Precedence: built-in defaults < --config < environment < flags.\n"
          "\nExamples:\n"
          "  runner src/main.py --architecture bert          the original job command\n"
          "  runner --architecture bert-tiny --epochs 1 --no-serve --output /tmp/out\n"
          "  runner --check --json --gpus 8 --min-shm 15gb   is this machine fit for the job?\n"
          "  runner --mode predict --model out/artefacts/bert/prime/model --input text.csv\n"
          "\nExit codes: `runner --exit-codes` prints the table (0 ok, 2 usage, 5 resources,\n"
          "80-84 retryable); docs/cli.md describes every option.\n",
          out);
}

void cli_print_version(FILE *out) {
    fprintf(out, "runner %s\ncommit %s\nbuild %s\n", RUNNER_VERSION, RUNNER_GIT_COMMIT,
            RUNNER_BUILD_TYPE[0] ? RUNNER_BUILD_TYPE : "unspecified");
#ifdef RUNNER_HAVE_CUDA
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    fprintf(out, "CUDA runtime %d.%d\n", runtime / 1000, runtime % 1000 / 10);
    if (driver)
        fprintf(out, "CUDA driver %d.%d\n", driver / 1000, driver % 1000 / 10);
    else
        fputs("CUDA driver none (no NVIDIA driver loaded)\n", out);
#else
    fputs("CUDA not built in (CPU backend only)\n", out);
#endif
}
