#pragma once
// Which handler answers a request: pure functions of the server, the method and the
// path, so the routing serve.c does is unit-tested and fuzzed on its own
// (tests/fuzz/fuzz_http_path.c). `path` is what libmicrohttpd hands the access handler:
// the request target up to '?', decoded by route_unescape (its unescape callback).
// Nothing maps a path onto the file system: the dashboard's files are a fixed table
// compiled into the binary (runner/serve/assets.h), and a path answers with one of them
// only when it equals that entry's path exactly ("/index.html" names "/"), so no
// spelling ("..", "%2e", "//") reaches anything else.
#include "runner/serve/serve.h"

#include <stddef.h>

typedef enum {
    ROUTE_NOT_FOUND,          // 404
    ROUTE_METHOD_NOT_ALLOWED, // 405, with route_result.allow as the Allow header
    ROUTE_METRICS,            // GET /metrics (metrics server only)
    ROUTE_HEALTHZ,            // GET /healthz (metrics server only)
    ROUTE_READYZ,             // GET /readyz (metrics server only)
    ROUTE_API,                // GET /api/v1/<route_result.name> (API and dashboard servers)
    ROUTE_CONTROL,            // POST /api/v1/control/<route_result.name> (API server only)
    ROUTE_ASSET,              // GET a dashboard file: serve_assets[route_result.asset]
} route_kind;

typedef struct {
    route_kind kind;
    const char *name;  // ROUTE_API: "status", "history", ...; ROUTE_CONTROL: "stop" or
                       // "checkpoint" (static strings); else NULL
    const char *allow; // ROUTE_METHOD_NOT_ALLOWED: "GET, HEAD" or "POST"; else NULL
    size_t asset;      // ROUTE_ASSET: index into serve_assets
} route_result;

// The GET routes under /api/v1/ (NULL-terminated), for the fuzzer's and tests' checks.
extern const char *const route_api_names[];

// Route `method` `path` on server `which`. Any NUL-terminated strings are accepted.
route_result route_resolve(serve_server which, const char *method, const char *path);

// Decode a request path or query argument in place (libmicrohttpd's unescape callback):
// MHD_http_unescape's %HH decoding, except that text holding "%00" stays as it came. A
// decoded NUL would end the C string early and "/assets/dashboard.js%00.png" would be
// served as "/assets/dashboard.js" (tests/unit/serve/test_serve.c); undecoded, it
// names nothing. Returns the length left in `text` (never longer than before).
size_t route_unescape(char *text);
