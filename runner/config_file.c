// Reading a --config file (local, or s3:// through runner/cloud) into config_parse_json.
// Apart from config.c so that the parser can be built and fuzzed without the cloud
// clients (tests/fuzz/fuzz_config.c).
#include "runner/cloud/cloud.h"
#include "runner/config.h"
#include "runner/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// An s3:// configuration is fetched to a private temporary file and read from there.
static int load_remote_file(runner_config *cfg, const char *uri, cJSON *warnings) {
    char local[512];
    snprintf(local, sizeof local, "%s/runner-config-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(local);
    if (fd < 0)
        return error_set(EXIT_OUTPUT, "--config %s: cannot create %s: %s", uri, local,
                         strerror(errno));
    close(fd);
    int rc = cloud_fetch(uri, local);
    if (rc == EXIT_BAD_INPUT) { // missing or forbidden: a wrong --config, not a data problem
        char reason[1024];
        snprintf(reason, sizeof reason, "%s", error_message()); // error_set() overwrites it
        rc = error_set(EXIT_USAGE, "--config %s: %s", uri, reason);
    } else if (rc == 0)
        rc = config_load_file(cfg, local, warnings);
    unlink(local);
    if (rc && strstr(error_message(), local)) {
        // Name the URI the person gave, not the temporary copy.
        char message[1024];
        const char *at = strstr(error_message(), local);
        snprintf(message, sizeof message, "%.*s%s%s", (int)(at - error_message()), error_message(),
                 uri, at + strlen(local));
        error_set(rc, "%s", message);
    }
    return rc;
}

int config_load_file(runner_config *cfg, const char *path, cJSON *warnings) {
    if (cloud_is_remote(path)) return load_remote_file(cfg, path, warnings);
    FILE *file = fopen(path, "rb");
    if (!file) return error_set(EXIT_USAGE, "--config %s: cannot open: %s", path, strerror(errno));
    enum { CONFIG_FILE_MAX = 1 << 20 };
    char *text = malloc(CONFIG_FILE_MAX + 1);
    if (!text) {
        fclose(file);
        return error_set(EXIT_INTERNAL, "--config %s: out of memory", path);
    }
    size_t len = fread(text, 1, CONFIG_FILE_MAX + 1, file);
    int read_error = ferror(file);
    fclose(file);
    if (read_error) {
        free(text);
        return error_set(EXIT_USAGE, "--config %s: cannot read (is it a directory?)", path);
    }
    if (len > CONFIG_FILE_MAX) {
        free(text);
        return error_set(EXIT_USAGE, "--config %s: larger than 1 MiB", path);
    }
    text[len] = '\0'; // cJSON is given the length; the NUL is a second guard
    int rc = config_parse_json(cfg, text, len, path, warnings);
    free(text);
    return rc;
}
