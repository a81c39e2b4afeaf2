// Step Functions callback pattern: a state machine started the job with
// `.waitForTaskToken` and passed $$.Task.Token as SFN_TASK_TOKEN. We keep the task
// alive with SendTaskHeartbeat and end it with SendTaskSuccess / SendTaskFailure, so
// the state machine learns the outcome (and our exit name) without polling Batch.
#include "runner/cloud/aws.h"
#include "runner/cloud/cloud.h"

#include "runner/error.h"
#include "runner/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { OUTPUT_MAX = 256 * 1024, ERROR_MAX = 256, CAUSE_MAX = 32768 };

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running, stop, finished;
    long interval_s;
} sfn = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static const char *task_token(void) {
    const char *t = getenv("SFN_TASK_TOKEN");
    return (t && *t) ? t : NULL;
}

// One SendTask* call; returns the AWS error code in `code` ("" on success).
static int sfn_call(const char *action, cJSON *payload, char *code, size_t n) {
    char target[96], what[128];
    snprintf(target, sizeof target, "AWSStepFunctions.%s", action);
    snprintf(what, sizeof what, "Step Functions %s", action);
    aws_response resp = {0};
    int rc = aws_json_call("states", "SFN", "states", "1.0", target, payload, &resp, what);
    code[0] = '\0';
    if (rc == 0 && resp.status != 200) {
        aws_copy(code, n, resp.error_code[0] ? resp.error_code : "HTTP error");
        rc = error_set(EXIT_REMOTE_IO, "%s: HTTP %ld %s", what, resp.status, resp.error_code);
    }
    aws_response_free(&resp);
    return rc;
}

static void *heartbeat_main(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += sfn.interval_s;
        pthread_mutex_lock(&sfn.lock);
        while (!sfn.stop && pthread_cond_timedwait(&sfn.wake, &sfn.lock, &until) != ETIMEDOUT) {
        }
        bool stop = sfn.stop;
        pthread_mutex_unlock(&sfn.lock);
        if (stop) return NULL;
        cJSON *payload = cJSON_CreateObject();
        cJSON_AddStringToObject(payload, "taskToken", task_token());
        char code[128];
        int rc = sfn_call("SendTaskHeartbeat", payload, code, sizeof code);
        cJSON_Delete(payload);
        if (rc) {
            log_warn("sfn_heartbeat", "%s", error_message());
            error_clear();
        }
        // The task is gone (timed out, finished, bad token): nobody listens any more.
        if (rc && (strcmp(code, "TaskTimedOut") == 0 || strcmp(code, "TaskDoesNotExist") == 0 ||
                   strcmp(code, "InvalidToken") == 0))
            return NULL;
    }
}

bool cloud_sfn_wanted(void) { return task_token() != NULL; }

int cloud_sfn_start(void) {
    const char *token = task_token();
    if (!token) return 0;
    log_redact(token); // whoever holds it can end the task
    pthread_mutex_lock(&sfn.lock);
    if (sfn.running || sfn.finished) {
        pthread_mutex_unlock(&sfn.lock);
        return 0;
    }
    const char *v = getenv("RUNNER_SFN_HEARTBEAT_S");
    sfn.interval_s = (v && atol(v) > 0) ? atol(v) : 60;
    sfn.stop = false;
    sfn.running = pthread_create(&sfn.thread, NULL, heartbeat_main, NULL) == 0;
    pthread_mutex_unlock(&sfn.lock);
    log_info("sfn_callback", "task token present: heartbeat every %ld s", sfn.interval_s);
    return 0;
}

static void heartbeat_stop(void) {
    pthread_mutex_lock(&sfn.lock);
    bool running = sfn.running;
    sfn.stop = true;
    sfn.running = false;
    pthread_cond_broadcast(&sfn.wake);
    pthread_mutex_unlock(&sfn.lock);
    if (running) pthread_join(sfn.thread, NULL);
}

// {"exit":"OK","code":0, ...fields of extra}, within Step Functions' 256 KiB.
static char *success_output(int code, const cJSON *extra) {
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "exit", exitcode_name(code));
    cJSON_AddNumberToObject(out, "code", code);
    const cJSON *item;
    cJSON_ArrayForEach(item, extra) {
        if (!cJSON_GetObjectItemCaseSensitive(out, item->string))
            cJSON_AddItemToObject(out, item->string, cJSON_Duplicate(item, true));
    }
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    if (text && strlen(text) <= OUTPUT_MAX) return text;
    cJSON_free(text);
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "exit", exitcode_name(code));
    cJSON_AddNumberToObject(out, "code", code);
    cJSON_AddBoolToObject(out, "truncated", true);
    text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    return text;
}

void cloud_sfn_finish(int code, const char *reason, const cJSON *output) {
    const char *token = task_token();
    if (!token) return;
    pthread_mutex_lock(&sfn.lock);
    bool already = sfn.finished;
    sfn.finished = true;
    pthread_mutex_unlock(&sfn.lock);
    if (already) return;
    heartbeat_stop();
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddStringToObject(payload, "taskToken", token);
    const char *action;
    if (code == 0) {
        action = "SendTaskSuccess";
        char *text = success_output(code, output);
        cJSON_AddStringToObject(payload, "output", text ? text : "{}");
        cJSON_free(text);
    } else {
        action = "SendTaskFailure";
        char error[ERROR_MAX + 1], *cause = malloc(CAUSE_MAX + 1);
        aws_copy(error, sizeof error, exitcode_name(code));
        cJSON_AddStringToObject(payload, "error", error);
        if (cause) {
            // The cause shows in the Step Functions console: secrets stay out of it too.
            char *redacted = log_redacted(reason ? reason : "");
            aws_copy(cause, CAUSE_MAX + 1, redacted ? redacted : "");
            free(redacted);
            cJSON_AddStringToObject(payload, "cause", cause);
            free(cause);
        }
    }
    char aws_code[128];
    int rc = sfn_call(action, payload, aws_code, sizeof aws_code);
    cJSON_Delete(payload);
    if (rc) {
        log_error("sfn_callback", "%s failed: %s", action, error_message());
        error_clear();
    } else {
        log_info("sfn_callback", "%s sent (%s)", action, exitcode_name(code));
    }
}
