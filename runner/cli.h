#pragma once
// The command line (DESIGN §2): getopt_long over the option table of config.h, plus
// the actions --check, --exit-codes, --prefetch, --help, --version and --config FILE.json.
// cli_parse() applies every source in precedence order: built-in defaults <
// --config JSON (or RUNNER_CONFIG) < RUNNER_* environment variables < flags.
#include "runner/config.h"

#include <cjson/cJSON.h>
#include <stdio.h>

typedef enum { CLI_RUN, CLI_CHECK, CLI_EXIT_CODES, CLI_PREFETCH, CLI_HELP, CLI_VERSION } cli_action;

// Parse argv into `cfg` (filled from defaults first). A leading "src/main.py" (any
// path ending in main.py) is accepted and ignored, for the original job command.
// Returns 0 or EXIT_USAGE with error_set() naming the flag, variable, file or key.
// Warnings (unknown config keys) are appended to `warnings` (a cJSON array, may be NULL)
// for the caller to log once logging is set up.
int cli_parse(int argc, char **argv, runner_config *cfg, cli_action *action, cJSON *warnings);
void cli_print_help(FILE *out);
void cli_print_version(FILE *out);
