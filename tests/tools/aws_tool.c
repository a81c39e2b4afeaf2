// Drives runner/cloud from the Python tests (tests/integration/test_aws_*.py), one
// operation per run, against moto or the local IMDS/ECS responder:
//   aws_tool fetch URI LOCAL_PATH
//   aws_tool fetch-prefix URI LOCAL_DIR
//   aws_tool upload-file LOCAL_PATH URI [METADATA_JSON]
//   aws_tool upload-tree LOCAL_DIR URI [METADATA_JSON]
//   aws_tool check-output URI               -> exit 0 when the job could write there
//   aws_tool resume URI LOCAL_DIR NEW_FILE    -> fetch-prefix, write NEW_FILE, upload twice
//   aws_tool head URI                        -> {"exists":bool,"size":N}
//   aws_tool list URI                        -> one "key size" line per object
//   aws_tool secret SECRET_ID                -> the secret as JSON
//   aws_tool credentials                     -> {"access_key":..,"token_len":N,"expires_in":N,
//                                               "region":..,"secret_sha256":..,"token_sha256":..}
//   aws_tool spot WAIT_S                     -> {"action":..,"time":..}, or exit 1 on timeout
//   aws_tool sfn CODE REASON [OUTPUT_JSON] [RUN_S]
//   aws_tool ecs                             -> the labels as JSON ("null" when none)
//   aws_tool apply-secret SECRET_ID [OUTPUT]  -> {"data","model","output","hyperspace"}
//   aws_tool summary OUTPUT ARCHITECTURE     -> cloud_job_summary() as JSON
// Exit status: the runner's exit code of the operation; the reason goes to stderr.
#include "runner/cloud/aws.h"
#include "runner/cloud/cloud.h"
#include "runner/cloud/s3.h"
#include "runner/error.h"
#include "runner/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t notice_lock = PTHREAD_MUTEX_INITIALIZER;
static char notice_action[64], notice_time[64];

static void on_notice(const char *action, const char *when) {
    pthread_mutex_lock(&notice_lock);
    aws_copy(notice_action, sizeof notice_action, action);
    aws_copy(notice_time, sizeof notice_time, when);
    pthread_mutex_unlock(&notice_lock);
}

static int print_each(const char *key, long long size, void *ud) {
    (void)ud;
    printf("%s %lld\n", key, size);
    return 0;
}

static int finish(int rc) {
    if (rc) fprintf(stderr, "aws_tool: %s (exit %d)\n", error_message(), rc);
    return rc;
}

static int usage(void) {
    fprintf(stderr, "usage: aws_tool fetch|fetch-prefix|upload-file|upload-tree|head|list|"
                    "secret|credentials|spot|sfn|ecs ARGS\n");
    return EXIT_USAGE;
}

int main(int argc, char **argv) {
    log_init(LOG_FORMAT_JSON, getenv("AWS_TOOL_DEBUG") ? LOG_DEBUG : LOG_INFO);
    if (argc < 2) return usage();
    const char *op = argv[1];
    if (strcmp(op, "fetch") == 0 && argc == 4) return finish(cloud_fetch(argv[2], argv[3]));
    if (strcmp(op, "fetch-prefix") == 0 && argc == 4)
        return finish(cloud_fetch_prefix(argv[2], argv[3]));
    if ((strcmp(op, "upload-file") == 0 || strcmp(op, "upload-tree") == 0) &&
        (argc == 4 || argc == 5)) {
        cJSON *meta = argc == 5 ? cJSON_Parse(argv[4]) : NULL;
        if (argc == 5 && !meta) return usage();
        int rc = op[7] == 'f' ? cloud_upload_file(argv[2], argv[3], meta)
                              : cloud_upload_tree(argv[2], argv[3], meta);
        cJSON_Delete(meta);
        return finish(rc);
    }
    if (strcmp(op, "resume") == 0 && argc == 5) { // what a resumed attempt does
        int rc = cloud_fetch_prefix(argv[2], argv[3]);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[3], argv[4]);
        FILE *f = rc == 0 ? fopen(path, "w") : NULL;
        if (f) fputs("written by this attempt\n", f), fclose(f);
        if (rc == 0 && !f) rc = error_set(EXIT_OUTPUT, "%s: cannot write", path);
        if (rc == 0) rc = cloud_upload_tree(argv[3], argv[2], NULL);
        if (rc == 0) rc = cloud_upload_tree(argv[3], argv[2], NULL);
        return finish(rc);
    }
    if (strcmp(op, "check-output") == 0 && argc == 3) return finish(cloud_check_output(argv[2]));
    if (strcmp(op, "head") == 0 && argc == 3) {
        s3_location loc;
        bool exists = false;
        long long size = -1;
        int rc = s3_parse_uri(argv[2], &loc);
        if (rc == 0) rc = s3_head_object(&loc, &exists, &size);
        if (rc == 0) printf("{\"exists\":%s,\"size\":%lld}\n", exists ? "true" : "false", size);
        return finish(rc);
    }
    if (strcmp(op, "list") == 0 && argc == 3) {
        s3_location loc;
        int rc = s3_parse_uri(argv[2], &loc);
        if (rc == 0) rc = s3_list(&loc, print_each, NULL);
        return finish(rc);
    }
    if (strcmp(op, "secret") == 0 && argc == 3) {
        cJSON *secret = cloud_secret_get("--secret-id", argv[2]);
        if (!secret) return finish(error_code() ? error_code() : EXIT_INTERNAL);
        char *text = cJSON_PrintUnformatted(secret);
        printf("%s\n", text);
        cJSON_free(text);
        cJSON_Delete(secret);
        return 0;
    }
    if (strcmp(op, "credentials") == 0 && argc == 2) {
        aws_credentials c;
        int rc = aws_credentials_get(&c);
        // Hashes, not the secrets, so that a test can compare them with boto3's.
        char secret_hash[65], token_hash[65];
        aws_sha256_hex(c.secret_key, strlen(c.secret_key), secret_hash);
        aws_sha256_hex(c.token, strlen(c.token), token_hash);
        if (rc == 0)
            printf("{\"access_key\":\"%s\",\"token_len\":%zu,\"expires_in\":%lld,"
                   "\"region\":\"%s\",\"secret_sha256\":\"%s\",\"token_sha256\":\"%s\"}\n",
                   c.access_key, strlen(c.token),
                   c.expiration ? (long long)(c.expiration - time(NULL)) : -1LL, aws_region(),
                   secret_hash, token_hash);
        return finish(rc);
    }
    if (strcmp(op, "spot") == 0 && argc == 3) {
        cloud_spot_watcher_start(on_notice);
        double wait_s = atof(argv[2]);
        int rc = 1;
        for (double waited = 0; waited < wait_s; waited += 0.05) {
            pthread_mutex_lock(&notice_lock);
            if (notice_action[0]) {
                printf("{\"action\":\"%s\",\"time\":\"%s\"}\n", notice_action, notice_time);
                rc = 0;
            }
            pthread_mutex_unlock(&notice_lock);
            if (rc == 0) break;
            usleep(50000);
        }
        cloud_spot_watcher_stop();
        return rc;
    }
    if (strcmp(op, "sfn") == 0 && argc >= 4 && argc <= 6) {
        cJSON *output = argc >= 5 ? cJSON_Parse(argv[4]) : NULL;
        cloud_sfn_start();
        if (argc == 6) usleep((useconds_t)(atof(argv[5]) * 1e6));
        cloud_sfn_finish(atoi(argv[2]), argv[3], output);
        cJSON_Delete(output);
        return 0;
    }
    if (strcmp(op, "ecs") == 0 && argc == 2) {
        cJSON *labels = cloud_ecs_labels();
        char *text = labels ? cJSON_PrintUnformatted(labels) : NULL;
        printf("%s\n", text ? text : "null");
        cJSON_free(text);
        cJSON_Delete(labels);
        return 0;
    }
    if (strcmp(op, "apply-secret") == 0 && (argc == 3 || argc == 4)) {
        runner_config cfg;
        config_defaults(&cfg);
        aws_copy(cfg.secret_id, sizeof cfg.secret_id, argv[2]);
        if (argc == 4) aws_copy(cfg.output_path, sizeof cfg.output_path, argv[3]);
        int rc = cloud_apply_secret(&cfg);
        if (rc == 0)
            printf("{\"data\":\"%s\",\"model\":\"%s\",\"output\":\"%s\",\"hyperspace\":\"%s\"}\n",
                   cfg.data_path, cfg.model_path, cfg.output_path, cfg.hyperspace_path);
        return finish(rc);
    }
    if (strcmp(op, "summary") == 0 && argc == 4) {
        runner_config cfg;
        config_defaults(&cfg);
        aws_copy(cfg.output_path, sizeof cfg.output_path, argv[2]);
        aws_copy(cfg.architecture, sizeof cfg.architecture, argv[3]);
        cJSON *summary = cloud_job_summary(&cfg);
        char *text = cJSON_PrintUnformatted(summary);
        printf("%s\n", text);
        cJSON_free(text);
        cJSON_Delete(summary);
        return 0;
    }
    return usage();
}
