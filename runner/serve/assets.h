#pragma once
// The dashboard's files, compiled into the binary by runner/serve/serve.cmake
// (dashboard.html, dashboard.js, dashboard.css and Debian's Chart.js build).
#include <stddef.h>

typedef struct {
    const char *path;         // "/", "/assets/dashboard.js", ...
    const char *content_type; // "text/html; charset=utf-8", ...
    const unsigned char *data;
    size_t len;
} serve_asset;

extern const serve_asset serve_assets[];
extern const size_t serve_asset_count;
