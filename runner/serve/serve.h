#pragma once
// The HTTP servers of the supervisor (DESIGN §6), on libmicrohttpd:
//   metrics_port (6006)   GET /metrics (Prometheus text 0.0.4), /healthz, /readyz
//   api_port (6007)       GET /api/v1/{status,history,nodes,trials,preflight,logs,events}
//                         POST /api/v1/control/{stop,checkpoint} (Bearer RUNNER_CONTROL_TOKEN)
//   dashboard_port (8265) GET / (the dashboard page, assets compiled in) and the same
//                         /api/v1/ routes, so the page talks to its own origin
// bound to cfg->bind_address. Nothing is started when cfg->serve is false.
#include "runner/config.h"

#include <cjson/cJSON.h>

// Start the three servers. Returns 0, or an exit code with error_set() (EXIT_USAGE for
// an unusable bind address or a port in use).
int serve_start(const runner_config *cfg);
// Stop the servers (idempotent; safe when never started).
void serve_stop(void);
typedef enum { SERVE_METRICS, SERVE_API, SERVE_DASHBOARD, SERVE_COUNT } serve_server;
// The port a server listens on (the configured one, or the kernel's choice for port 0);
// 0 when that server is not running.
int serve_bound_port(serve_server which);
// Labels of runner_job_info and the dashboard header; call before or after serve_start.
// Any argument may be NULL (left unchanged).
void serve_set_job(const char *job_id, int attempt, const char *node);
