// A node of a multi-node job reduced to its coordination (tests/integration/test_coord_*):
// coord_start() as the supervisor calls it, then "training" steps that all-reduce a
// small gradient through Gloo across the nodes, publish a loss to telemetry, and obey
// stop and checkpoint requests at step boundaries as the job does. Options of the
// runner (--redis, --redis-port, --rendezvous-timeout, ...) are accepted as the binary
// accepts them; tool options: --steps N, --step-ms MS, --collective, --checkpoint-dir D.
// Prints {"event":"node_ready",...} after the rendezvous and {"event":"node_done",...}
// with the metrics the main node received from the others; exits with runner_exit().
#include "kernels/collectives/collectives.h"
#include "runner/config.h"
#include "runner/coord/coord.h"
#include "runner/coord/coord_store.h"
#include "runner/coord/redis_server.h"
#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/log.h"
#include "runner/telemetry_store.h"
#include "runner/signals.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { GRAD = 1000 };

static void write_checkpoint(const char *dir, int node, int step) {
    if (!dir[0])
        return;
    char path[1200];
    snprintf(path, sizeof path, "%s/node%d.ckpt", dir, node);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%d\n", step);
        fclose(f);
    }
    log_info("checkpoint_written", "%s step %d", path, step);
}

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    signals_install();
    log_init(LOG_FORMAT_JSON, LOG_INFO);
    runner_config cfg;
    config_defaults(&cfg);
    int steps = 20, step_ms = 50;
    bool use_collective = false;
    char checkpoint_dir[1024] = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--collective") == 0) {
            use_collective = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc)
            runner_exit(error_set(EXIT_USAGE, "coord_node: bad argument '%s'", a), NULL);
        const char *v = argv[++i];
        if (strcmp(a, "--steps") == 0)
            steps = atoi(v);
        else if (strcmp(a, "--step-ms") == 0)
            step_ms = atoi(v);
        else if (strcmp(a, "--checkpoint-dir") == 0)
            snprintf(checkpoint_dir, sizeof checkpoint_dir, "%s", v);
        else {
            const config_option *opt = config_option_find(a + 2);
            if (!opt || config_set_text(&cfg, opt, v, a) != 0)
                runner_exit(error_set(EXIT_USAGE, "coord_node: bad option %s", a), NULL);
        }
    }
    int code = coord_start(&cfg);
    if (code)
        runner_exit(code, NULL);
    const coord_node *self = coord_self();
    int world = self->num_nodes;
    printf("{\"event\":\"node_ready\",\"node_index\":%d,\"rank\":%d,\"nodes\":%d,"
           "\"prefix\":\"%s\",\"address\":\"%s\",\"redis_pid\":%d}\n",
           self->node_index, self->rank, world, coord_prefix(), self->node_address,
           redis_server_pid());
    fflush(stdout);

    collective_store_ops store = {0};
    collective *group = NULL;
    if (use_collective) {
        char prefix[256];
        coord_store_prefix("grad", prefix, sizeof prefix);
        if ((code = coord_store_open(&store)) ||
            (code = collective_init_cpu(&store, prefix, self->node_address, self->rank, world,
                                        10000, &group)))
            runner_exit(code, NULL);
    }
    static float grad[GRAD]; // (GRAD,) static: runner_exit() may end the loop anywhere
    for (int step = 1; step <= steps; step++) {
        if (signals_take_checkpoint_request())
            write_checkpoint(checkpoint_dir, self->node_index, step - 1);
        if (signals_stop_requested()) {
            write_checkpoint(checkpoint_dir, self->node_index, step - 1);
            int hint = coord_exit_code_hint();
            runner_exit(hint ? hint : EXIT_INTERRUPTED, signals_stop_reason());
        }
        if (group) {
            for (int i = 0; i < GRAD; i++)
                grad[i] = (float)(self->rank + 1) + (float)step + (float)i * 0.25f;
            if ((code = collective_allreduce_sum_f32(group, grad, GRAD)))
                runner_exit(code, NULL);
            float want0 = (float)(world * (world + 1) / 2 + world * step);
            if (grad[0] != want0 || grad[GRAD - 1] != want0 + (float)world * (GRAD - 1) * 0.25f)
                runner_exit(error_set(EXIT_INTERNAL, "all-reduce at step %d gave %g, want %g",
                                      step, grad[0], want0), NULL);
        }
        telemetry_store_scalar("prime", "train/loss", step, 1.0 / step, wall());
        struct timespec ts = {step_ms / 1000, (long)(step_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    collective_destroy(group);
    if (store.ctx)
        coord_store_close(&store);

    // The main node waits (briefly) for the other nodes' last points to arrive.
    cJSON *fanin = cJSON_CreateObject();
    if (self->is_main && world > 1) {
        for (int tries = 0; tries < 100; tries++) {
            int complete = 0;
            for (int n = 0; n < world; n++) {
                char run[STORE_RUN_MAX];
                snprintf(run, sizeof run, "node%d/prime", n);
                store_point p;
                if (n != self->node_index && telemetry_store_latest(run, "train/loss", &p) &&
                    p.step == steps)
                    complete++;
            }
            if (complete == world - 1)
                break;
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
        for (int n = 0; n < world; n++) {
            char run[STORE_RUN_MAX];
            snprintf(run, sizeof run, "node%d/prime", n);
            store_point p;
            if (telemetry_store_latest(run, "train/loss", &p))
                cJSON_AddNumberToObject(fanin, run, (double)p.step);
        }
    }
    char *text = cJSON_PrintUnformatted(fanin);
    cJSON_Delete(fanin);
    printf("{\"event\":\"node_done\",\"node_index\":%d,\"steps\":%d,\"fanin\":%s}\n",
           self->node_index, steps, text ? text : "{}");
    free(text);
    fflush(stdout);
    runner_exit(EXIT_OK, "done");
}
