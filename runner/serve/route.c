// Request routing of the three servers; see route.h.
#include "runner/serve/route.h"

#include "runner/serve/assets.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <string.h>

const char *const route_api_names[] = {"status", "history", "nodes",  "trials", "preflight",
                                       "gpus",   "logs",    "events", NULL};
static const char *const CONTROL_NAMES[] = {"stop", "checkpoint", NULL};

static const char *find_name(const char *const *names, const char *name) {
    for (size_t i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0) return names[i];
    return NULL;
}

static route_result result(route_kind kind) {
    return (route_result){.kind = kind};
}

static route_result not_allowed(const char *allow) {
    return (route_result){.kind = ROUTE_METHOD_NOT_ALLOWED, .allow = allow};
}

route_result route_resolve(serve_server which, const char *method, const char *path) {
    // HEAD is a GET without the body (libmicrohttpd drops it).
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool post = strcmp(method, "POST") == 0;
    if (which == SERVE_METRICS) {
        route_kind kind = strcmp(path, "/metrics") == 0   ? ROUTE_METRICS
                          : strcmp(path, "/healthz") == 0 ? ROUTE_HEALTHZ
                          : strcmp(path, "/readyz") == 0  ? ROUTE_READYZ
                                                          : ROUTE_NOT_FOUND;
        if (kind == ROUTE_NOT_FOUND) return result(kind);
        return get ? result(kind) : not_allowed("GET, HEAD");
    }

    static const char api_prefix[] = "/api/v1/";
    if (strncmp(path, api_prefix, sizeof api_prefix - 1) == 0) {
        const char *rest = path + sizeof api_prefix - 1;
        if (strncmp(rest, "control/", 8) == 0 && which == SERVE_API) {
            const char *action = find_name(CONTROL_NAMES, rest + 8);
            if (!action) return result(ROUTE_NOT_FOUND);
            if (!post) return not_allowed("POST");
            return (route_result){.kind = ROUTE_CONTROL, .name = action};
        }
        const char *name = find_name(route_api_names, rest);
        if (!name) return result(ROUTE_NOT_FOUND);
        if (!get) return not_allowed("GET, HEAD");
        return (route_result){.kind = ROUTE_API, .name = name};
    }
    if (which == SERVE_DASHBOARD) {
        const char *wanted = strcmp(path, "/index.html") == 0 ? "/" : path;
        for (size_t i = 0; i < serve_asset_count; i++) {
            if (strcmp(wanted, serve_assets[i].path) != 0) continue;
            if (!get) return not_allowed("GET, HEAD");
            return (route_result){.kind = ROUTE_ASSET, .asset = i};
        }
    }
    return result(ROUTE_NOT_FOUND);
}

size_t route_unescape(char *text) {
    for (const char *p = strchr(text, '%'); p; p = strchr(p + 1, '%'))
        if (p[1] == '0' && p[2] == '0') return strlen(text);
    return MHD_http_unescape(text);
}
