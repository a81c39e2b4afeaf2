// Glue between runner_config and the cloud: locations from a Secrets Manager secret,
// and the summary a Step Functions task receives when the job succeeds.
#include "runner/cloud/aws.h"
#include "runner/cloud/cloud.h"

#include "runner/error.h"
#include "runner/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct {
    const char *name;
    size_t offset;
    const char *default_value;
} location_field;

static const location_field FIELDS[] = {
    {"data", offsetof(runner_config, data_path), ""},
    {"model", offsetof(runner_config, model_path), ""},
    {"output", offsetof(runner_config, output_path), "./out"},
    {"hyperspace", offsetof(runner_config, hyperspace_path), ""},
};

// "data", "DATA_URI", "data_bucket" ... -> the field, and whether it names a bucket.
static const location_field *field_for(const char *key, bool *bucket) {
    for (size_t i = 0; i < sizeof FIELDS / sizeof FIELDS[0]; i++) {
        size_t n = strlen(FIELDS[i].name);
        if (strncasecmp(key, FIELDS[i].name, n) != 0) continue;
        const char *rest = key + n;
        *bucket = strcasecmp(rest, "_bucket") == 0;
        if (!*rest || *bucket || strcasecmp(rest, "_uri") == 0 || strcasecmp(rest, "_path") == 0)
            return &FIELDS[i];
    }
    return NULL;
}

int cloud_apply_secret(runner_config *cfg) {
    if (!cfg->secret_id[0]) return 0;
    cJSON *secret = cloud_secret_get("--secret-id", cfg->secret_id);
    if (!secret) return error_code() ? error_code() : EXIT_REMOTE_IO;
    if (!cJSON_IsObject(secret)) {
        cJSON_Delete(secret);
        return error_set(EXIT_USAGE, "--secret-id %s: the secret is not a JSON object",
                         cfg->secret_id);
    }
    cJSON *applied = cJSON_CreateArray();
    const cJSON *item;
    cJSON_ArrayForEach(item, secret) {
        bool bucket = false;
        const location_field *f = field_for(item->string, &bucket);
        if (!f || !cJSON_IsString(item) || !item->valuestring[0]) continue;
        char *dst = (char *)cfg + f->offset;
        if (strcmp(dst, f->default_value) != 0) continue; // set explicitly: that wins
        const char *v = item->valuestring;
        bool uri_or_path = !bucket && (strncmp(v, "s3://", 5) == 0 || strchr(v, '/'));
        int n = uri_or_path ? snprintf(dst, CONFIG_PATH_MAX, "%s", v)
                            : snprintf(dst, CONFIG_PATH_MAX, "s3://%s", v);
        if (n < 0 || n >= CONFIG_PATH_MAX) {
            cJSON_Delete(applied);
            cJSON_Delete(secret);
            return error_set(EXIT_USAGE, "--secret-id %s: %s is too long", cfg->secret_id,
                             item->string);
        }
        cJSON_AddItemToArray(applied, cJSON_CreateString(f->name));
    }
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddStringToObject(fields, "secret_id", cfg->secret_id);
    cJSON_AddItemToObject(fields, "applied", applied); // names only: the values are secret
    log_fields(LOG_INFO, "secret_locations", fields);
    cJSON_Delete(secret);
    return 0;
}

static cJSON *read_score(const char *location) {
    char local[64] = "";
    const char *path = location;
    if (cloud_is_remote(location)) {
        snprintf(local, sizeof local, "/tmp/runner-score-%d.json", (int)getpid());
        if (cloud_fetch(location, local) != 0) {
            error_clear();
            return NULL;
        }
        path = local;
    }
    cJSON *json = NULL;
    FILE *f = fopen(path, "rb");
    if (f) {
        char buf[65536];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        json = cJSON_Parse(buf);
    }
    if (local[0]) unlink(local);
    return json;
}

cJSON *cloud_job_summary(const runner_config *cfg) {
    cJSON *out = cJSON_CreateObject();
    char base[CONFIG_PATH_MAX], loc[CONFIG_PATH_MAX + 256];
    snprintf(base, sizeof base, "%s", cfg->output_path[0] ? cfg->output_path : "./out");
    size_t len = strlen(base);
    while (len > 1 && base[len - 1] == '/') base[--len] = '\0';
    snprintf(loc, sizeof loc, "%s/artefacts/%s/", base, cfg->architecture);
    cJSON_AddStringToObject(out, "artefacts", loc);
    snprintf(loc, sizeof loc, "%s/artefacts/%s/prime/model/", base, cfg->architecture);
    cJSON_AddStringToObject(out, "model", loc);
    cJSON *metrics = cJSON_CreateObject();
    static const char *const splits[] = {"validating", "testing"};
    for (int i = 0; i < 2; i++) {
        snprintf(loc, sizeof loc, "%s/artefacts/%s/prime/metrics/%s/score.json", base,
                 cfg->architecture, splits[i]);
        cJSON *score = read_score(loc);
        if (score) cJSON_AddItemToObject(metrics, splits[i], score);
    }
    cJSON_AddItemToObject(out, "metrics", metrics);
    return out;
}
