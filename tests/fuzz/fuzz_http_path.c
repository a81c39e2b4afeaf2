// Fuzz target for request routing: the first byte picks the server and the method, the
// rest is the request target as a client sends it. As libmicrohttpd does before calling
// the access handler, the target is cut at '?' and its path decoded by route_unescape
// (the servers' unescape callback), which must leave a C string of the length it returns
// and no longer than it was; route_resolve (what serve.c answers with) must then send
// nothing but what the path names exactly: a dashboard file only for its own path (or
// "/index.html" for "/"), never for a path with ".." or an escaped NUL, an API route
// only as /api/v1/<route>, control only to POST on the API server, the metrics routes
// only on the metrics server, 405 always with an Allow header. Anything else aborts.
#include "runner/serve/assets.h"
#include "runner/serve/route.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SEED_ONE "\x00/metrics?x=1"
#define SEED_TWO "\x01/api/v1/history?run=trial-1&max=5"
#define SEED_THREE "\x0e/api/v1/control/stop"
#define SEED_FOUR "\x02/assets/%2e%2e/assets/dashboard%2Ejs"
#define SEED_FIVE "\x05/index.html"
const char *const fuzz_seeds[] = {SEED_ONE, SEED_TWO, SEED_THREE, SEED_FOUR, SEED_FIVE, NULL};
const size_t fuzz_seed_sizes[] = {sizeof SEED_ONE - 1,  sizeof SEED_TWO - 1,  sizeof SEED_THREE - 1,
                                  sizeof SEED_FOUR - 1, sizeof SEED_FIVE - 1, 0};

static const char *const METHODS[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "get", ""};
enum { METHOD_COUNT = sizeof METHODS / sizeof METHODS[0] };

static bool is_get(const char *method) {
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

static bool api_path(const char *path, const char *prefix, const char *name) {
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && strcmp(path + n, name) == 0;
}

static void check(serve_server which, const char *method, const char *path) {
    route_result r = route_resolve(which, method, path);
    if ((r.kind == ROUTE_METHOD_NOT_ALLOWED) != (r.allow != NULL)) abort();
    switch (r.kind) {
    case ROUTE_NOT_FOUND:
        break;
    case ROUTE_METHOD_NOT_ALLOWED:
        if (strcmp(r.allow, "GET, HEAD") != 0 && strcmp(r.allow, "POST") != 0) abort();
        if ((strcmp(r.allow, "POST") == 0 ? strcmp(method, "POST") == 0 : is_get(method))) abort();
        break;
    case ROUTE_METRICS:
    case ROUTE_HEALTHZ:
    case ROUTE_READYZ: {
        const char *want = r.kind == ROUTE_METRICS   ? "/metrics"
                           : r.kind == ROUTE_HEALTHZ ? "/healthz"
                                                     : "/readyz";
        if (which != SERVE_METRICS || !is_get(method) || strcmp(path, want) != 0) abort();
        break;
    }
    case ROUTE_API: {
        bool known = false;
        for (size_t i = 0; route_api_names[i]; i++)
            known |= r.name == route_api_names[i];
        if (which == SERVE_METRICS || !known || !is_get(method) ||
            !api_path(path, "/api/v1/", r.name))
            abort();
        break;
    }
    case ROUTE_CONTROL:
        if (which != SERVE_API || strcmp(method, "POST") != 0 ||
            (strcmp(r.name, "stop") != 0 && strcmp(r.name, "checkpoint") != 0) ||
            !api_path(path, "/api/v1/control/", r.name))
            abort();
        break;
    case ROUTE_ASSET: {
        if (which != SERVE_DASHBOARD || !is_get(method) || r.asset >= serve_asset_count) abort();
        const char *file = serve_assets[r.asset].path;
        if (strcmp(path, file) != 0 &&
            !(strcmp(path, "/index.html") == 0 && strcmp(file, "/") == 0))
            abort();
        if (file[0] != '/' || strstr(file, "..") || strstr(file, "//") || strstr(path, ".."))
            abort();
        break;
    }
    default:
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    serve_server which = (serve_server)(data[0] % SERVE_COUNT);
    const char *method = METHODS[(data[0] / SERVE_COUNT) % METHOD_COUNT];
    // The target as libmicrohttpd holds it: a C string (it ends at a NUL), the query cut
    // off at the first '?', the path decoded in place.
    size_t len = strnlen((const char *)data + 1, size - 1);
    const char *query = memchr(data + 1, '?', len);
    if (query) len = (size_t)(query - (const char *)data - 1);
    char *path = malloc(len + 1);
    memcpy(path, data + 1, len);
    path[len] = '\0';
    bool escaped_nul = false;
    for (const char *p = strchr(path, '%'); p && !escaped_nul; p = strchr(p + 1, '%'))
        escaped_nul = p[1] == '0' && p[2] == '0';
    size_t decoded = route_unescape(path);
    if (decoded > len || path[decoded] != '\0' || strlen(path) != decoded) abort();
    if (escaped_nul && decoded != len) abort(); // left as it came
    // Exactly the decoded bytes, so a read past them is caught.
    char *exact = malloc(decoded + 1);
    memcpy(exact, path, decoded + 1);
    free(path);
    check(which, method, exact);
    free(exact);
    return 0;
}
