// Control channel: "stop" → everyone checkpoints and exits 80; "checkpoint" → everyone
// checkpoints and goes on. Plain words or {"command": "stop"}. Pub/sub is at-most-once:
// a node that is reconnecting when a message is published misses it.
#include "runner/coord/coord_internal.h"
#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/log.h"
#include "runner/signals.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

static void handle_control(const char *msg, size_t len) {
    char command[32] = "";
    if (len > 0 && msg[0] == '{') {
        cJSON *j = cJSON_ParseWithLength(msg, len);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "command");
        if (cJSON_IsString(c))
            snprintf(command, sizeof command, "%s", c->valuestring);
        cJSON_Delete(j);
    } else {
        snprintf(command, sizeof command, "%.*s", (int)(len < 31 ? len : 31), msg);
        command[strcspn(command, " \r\n")] = '\0';
    }
    if (strcmp(command, "stop") == 0) {
        coord_request_stop(EXIT_INTERRUPTED, "stop command on the control channel");
    } else if (strcmp(command, "checkpoint") == 0) {
        log_info("coord_checkpoint_requested", "checkpoint command on the control channel");
        signals_request_checkpoint();
    } else {
        log_warn("coord_control_unknown", "ignored control message '%.*s'",
                 (int)(len < 64 ? len : 64), msg);
    }
}

void *coord_control_main(void *arg) {
    (void)arg;
    redis_client *rc = redis_client_new(&coord.ep, 2000);
    if (!rc)
        return NULL;
    redis_client_set_stop_flag(rc, &coord.stop);
    char channel[COORD_PREFIX_MAX + 16];
    snprintf(channel, sizeof channel, "%scontrol", coord.prefix);
    while (!atomic_load(&coord.stop)) {
        int connected = redis_client_connect(rc);
        if (connected != 0) {
            error_clear();
            coord_nap(500);
            continue;
        }
        redisContext *c = redis_client_context(rc);
        redisReply *r = redisCommand(c, "SUBSCRIBE %s", channel);
        if (r)
            freeReplyObject(r);
        if (!r) {
            redis_client_drop(rc);
            continue;
        }
        // A subscribed connection only reads: poll its socket so stop is noticed.
        while (!atomic_load(&coord.stop)) {
            void *reply = NULL;
            int status = redisGetReplyFromReader(c, &reply);
            if (reply) {
                redisReply *m = reply;
                if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
                    m->element[0]->type == REDIS_REPLY_STRING &&
                    strcmp(m->element[0]->str, "message") == 0)
                    handle_control(m->element[2]->str, m->element[2]->len);
                freeReplyObject(m);
            }
            if (status != REDIS_OK)
                break;
            if (reply)
                continue;
            struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
            int ready = poll(&pfd, 1, 200);
            if (ready < 0 && errno != EINTR)
                break;
            if (ready > 0) {
                status = redisBufferRead(c);
                if (status != REDIS_OK)
                    break;
            }
        }
        redis_client_drop(rc);
    }
    redis_client_free(rc);
    return NULL;
}
