// Coordination entry points (see coord.h). First increment: identity only.
#include "runner/coord/coord.h"

#include <string.h>

static coord_node self_node;
static char key_prefix[COORD_PREFIX_MAX];

int coord_start(const runner_config *cfg) {
    (void)cfg;
    memset(&self_node, 0, sizeof self_node);
    self_node.attempt = 1;
    self_node.num_nodes = 1;
    self_node.is_main = true;
    return 0;
}

void coord_stop(void) {}

bool coord_enabled(void) { return false; }
const coord_node *coord_self(void) { return &self_node; }
const char *coord_prefix(void) { return key_prefix; }
int coord_exit_code_hint(void) { return 0; }

bool coord_redis_endpoint(char *host, int host_len, int *port, char *password,
                          int password_len) {
    (void)host, (void)host_len, (void)port, (void)password, (void)password_len;
    return false;
}

void coord_publish_metric(const char *run, const char *tag, int64_t step, double value) {
    (void)run, (void)tag, (void)step, (void)value;
}
