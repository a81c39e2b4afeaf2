// ECS task metadata v4: who and where this task is, as labels for logs and metrics.
#include "runner/cloud/aws.h"
#include "runner/cloud/cloud.h"

#include "runner/error.h"
#include "runner/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *metadata_get(const char *base, const char *path) {
    char url[1200];
    snprintf(url, sizeof url, "%s%s", base, path);
    aws_request req = {.method = "GET", .url = url, .body_fd = -1, .connect_timeout_ms = 1000,
                       .timeout_ms = 3000, .max_attempts = 2};
    aws_response resp = {0};
    cJSON *json = NULL;
    if (aws_send(&req, &resp, "GET ECS task metadata") == 0 && resp.status == 200)
        json = cJSON_ParseWithLength(resp.body.data, resp.body.len);
    error_clear();
    aws_response_free(&resp);
    return json;
}

static void copy_label(cJSON *labels, const char *name, const cJSON *from, const char *field) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, field);
    if (cJSON_IsString(v) && v->valuestring[0]) cJSON_AddStringToObject(labels, name, v->valuestring);
}

static cJSON *fetch_labels(void) {
    const char *base = getenv("ECS_CONTAINER_METADATA_URI_V4");
    if (!base || !*base || strlen(base) > 1000) return NULL;
    cJSON *task = metadata_get(base, "/task");
    if (!task) {
        log_warn("ecs_metadata", "%s/task did not answer", base);
        return NULL;
    }
    cJSON *labels = cJSON_CreateObject();
    copy_label(labels, "task_arn", task, "TaskARN");
    copy_label(labels, "cluster", task, "Cluster");
    copy_label(labels, "availability_zone", task, "AvailabilityZone");
    // Our own container (the base URI without /task) holds our log configuration.
    cJSON *self = metadata_get(base, "");
    const cJSON *options = cJSON_GetObjectItemCaseSensitive(self, "LogOptions");
    if (!options) { // fall back to the first container of the task that has them
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(task, "Containers")) {
            options = cJSON_GetObjectItemCaseSensitive(c, "LogOptions");
            if (options) break;
        }
    }
    copy_label(labels, "log_group", options, "awslogs-group");
    copy_label(labels, "log_stream", options, "awslogs-stream");
    cJSON_Delete(self);
    cJSON_Delete(task);
    return labels;
}

// Asked once per process (the supervisor hands its labels to its workers, runner/worker.h):
// labels go on every log line and metric, and the endpoint need not hear from each worker.
static pthread_mutex_t ecs_lock = PTHREAD_MUTEX_INITIALIZER;
static cJSON *ecs_cached;
static bool ecs_asked;

cJSON *cloud_ecs_labels(void) {
    pthread_mutex_lock(&ecs_lock);
    if (!ecs_asked) {
        ecs_cached = fetch_labels();
        ecs_asked = true;
    }
    cJSON *copy = ecs_cached ? cJSON_Duplicate(ecs_cached, true) : NULL;
    pthread_mutex_unlock(&ecs_lock);
    return copy;
}
