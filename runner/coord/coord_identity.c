// Who this node is: the AWS Batch multi-node variables, or one local node without them.
#include "runner/coord/coord_internal.h"
#include "runner/error.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int coord_env_int(const char *name, int fallback, int min, int *out) {
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = fallback;
        return 0;
    }
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < min || n > 1000000)
        return error_set(EXIT_USAGE, "%s: expected an integer >= %d, got '%s'", name, min, v);
    *out = (int)n;
    return 0;
}

// The local address that routes to `remote` (no packet is sent: UDP connect only).
static void route_address(const char *remote, char *out, size_t out_len) {
    snprintf(out, out_len, "127.0.0.1");
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(6379)};
    if (inet_pton(AF_INET, remote, &dst.sin_addr) != 1)
        return;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) == 0 &&
        getsockname(fd, (struct sockaddr *)&me, &len) == 0)
        inet_ntop(AF_INET, &me.sin_addr, out, (socklen_t)out_len);
    close(fd);
}

// The main node's own address (Batch does not tell it): the first IPv4 address of an
// interface that is up and not loopback.
static void interface_address(char *out, size_t out_len) {
    snprintf(out, out_len, "127.0.0.1");
    struct ifaddrs *list = NULL;
    if (getifaddrs(&list) != 0)
        return;
    for (struct ifaddrs *a = list; a; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || (a->ifa_flags & IFF_LOOPBACK) ||
            !(a->ifa_flags & IFF_UP))
            continue;
        inet_ntop(AF_INET, &((struct sockaddr_in *)a->ifa_addr)->sin_addr, out, (socklen_t)out_len);
        break;
    }
    freeifaddrs(list);
}

int coord_identity_from_env(coord_node *n) {
    memset(n, 0, sizeof *n);
    int code;
    if ((code = coord_env_int("AWS_BATCH_JOB_ATTEMPT", 1, 1, &n->attempt)) ||
        (code = coord_env_int("AWS_BATCH_JOB_NUM_NODES", 1, 1, &n->num_nodes)) ||
        (code = coord_env_int("AWS_BATCH_JOB_NODE_INDEX", 0, 0, &n->node_index)) ||
        (code = coord_env_int("AWS_BATCH_JOB_MAIN_NODE_INDEX", 0, 0, &n->main_node_index)))
        return code;
    if (n->num_nodes > COORD_MAX_NODES)
        return error_set(EXIT_USAGE, "AWS_BATCH_JOB_NUM_NODES: at most %d nodes, got %d",
                         COORD_MAX_NODES, n->num_nodes);
    if (n->node_index >= n->num_nodes || n->main_node_index >= n->num_nodes)
        return error_set(EXIT_USAGE,
                         "AWS_BATCH_JOB_NODE_INDEX %d / MAIN_NODE_INDEX %d out of range for %d "
                         "nodes", n->node_index, n->main_node_index, n->num_nodes);
    n->is_main = n->node_index == n->main_node_index;

    // Multi-node children carry "<id>#<node index>"; all nodes share the part before '#'.
    const char *id = getenv("AWS_BATCH_JOB_ID");
    if (id && *id) {
        size_t len = strcspn(id, "#");
        if (len >= sizeof n->job_id)
            len = sizeof n->job_id - 1;
        memcpy(n->job_id, id, len);
        n->job_id[len] = '\0';
    } else if (n->num_nodes > 1) {
        return error_set(EXIT_USAGE, "AWS_BATCH_JOB_ID is required when AWS_BATCH_JOB_NUM_NODES > 1");
    } else {
        char host[64] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(n->job_id, sizeof n->job_id, "local-%.60s-%d", host, (int)getpid());
    }
    // Key names: keep them free of spaces, braces and control characters.
    for (char *c = n->job_id; *c; c++)
        if (*c <= ' ' || *c == '{' || *c == '}' || *c == ':' || *c == 0x7f)
            *c = '_';

    const char *main_addr = getenv("AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS");
    if (n->is_main || !main_addr || !*main_addr) {
        if (!n->is_main)
            return error_set(EXIT_USAGE, "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS is unset "
                                         "on node %d (not the main node)", n->node_index);
        snprintf(n->main_address, sizeof n->main_address, "127.0.0.1");
    } else {
        snprintf(n->main_address, sizeof n->main_address, "%s", main_addr);
    }
    const char *own = getenv("RUNNER_NODE_ADDRESS");
    if (own && *own)
        snprintf(n->node_address, sizeof n->node_address, "%s", own);
    else if (n->num_nodes == 1)
        snprintf(n->node_address, sizeof n->node_address, "127.0.0.1");
    else if (!n->is_main)
        route_address(n->main_address, n->node_address, sizeof n->node_address);
    else {
        // The source address of the default route (what Batch reports as this node's
        // private address), else the first interface's.
        route_address("192.0.2.1", n->node_address, sizeof n->node_address);
        if (strcmp(n->node_address, "127.0.0.1") == 0)
            interface_address(n->node_address, sizeof n->node_address);
    }
    return 0;
}
