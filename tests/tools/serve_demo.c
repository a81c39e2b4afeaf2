// serve_demo: the supervisor's HTTP servers fed by a synthetic training loop, for the
// Python tests of the metrics endpoint, the API, the dashboard (headless Chromium),
// Prometheus scraping and TensorBoard files, and for the overhead benchmark.
//
//   serve_demo [--bind ADDR] [--metrics-port N] [--api-port N] [--dashboard-port N]
//              [--workers W] [--trials K] [--epochs E] [--steps N] [--step-ms MS]
//              [--work N] [--logdir DIR] [--duration S] [--no-serve] [--preflight]
//              [--worker-cpu N] [--trace FILE]
//
// Phases: preflight -> search (K trials, E epochs each, as runs "trial-<i>") -> prime
// (N steps, run "prime") -> done, then it keeps serving until SIGTERM/SIGINT or
// --duration seconds in all. With --workers W the scalars come from W forked worker
// processes through the /dev/shm rings (rank 0 runs the loop; the others log a heartbeat
// scalar), as in the real job; without it, in-process. --work N does N x N x N
// multiply-adds per step (a CPU stand-in for a training step); at the end one JSON line
// gives the step times: {"event":"demo_steps","steps":..,"mean_ms":..,"p50_ms":..,
// "p90_ms":..,"cpu_p50_ms":..} (cpu: the step's thread CPU time, immune to other load);
// --trace FILE also writes one line per prime step: "unix_start wall_s cpu_s".
#include "runner/config.h"
#include "runner/log.h"
#include "runner/preflight.h"
#include "runner/serve/serve.h"
#include "runner/telemetry.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// CPU time of the calling thread: what a step costs, whatever else the machine runs.
static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(double ms) {
    if (ms <= 0) return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(fmod(ms, 1000) * 1e6)};
    nanosleep(&ts, NULL);
}

typedef struct {
    int trials, epochs, steps, work;
    double step_ms;
    const char *logdir;
    const char *trace;
} demo_plan;

static float *work_a, *work_b, *work_c; // (work, work) each

static void do_work(int n) {
    if (n <= 0) return;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            float a = work_a[i * n + k];
            for (int j = 0; j < n; j++) work_c[i * n + j] += a * work_b[k * n + j];
        }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run_dir(const demo_plan *p, const char *run) {
    if (!p->logdir) return;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", p->logdir, run);
    telemetry_run_dir(run, dir);
}

static void demo_loop(const demo_plan *p) {
    telemetry_phase("search");
    int trial_steps = 10;
    for (int t = 0; t < p->trials && !stop_flag; t++) {
        char run[32];
        snprintf(run, sizeof run, "trial-%d", t);
        run_dir(p, run);
        double lr = 1e-5 * (1 + t);
        telemetry_scalar(run, "hparams/learning_rate", 0, lr);
        for (int e = 1; e <= p->epochs && !stop_flag; e++) {
            for (int s = 1; s <= trial_steps; s++) {
                int64_t step = (int64_t)(e - 1) * trial_steps + s;
                telemetry_scalar(run, "train/loss", step, 2.0 * exp(-0.05 * step * (1 + 0.2 * t)) + 0.05 * t);
            }
            int64_t step = (int64_t)e * trial_steps;
            telemetry_scalar(run, "eval/loss", step, 1.5 * exp(-0.3 * e) + 0.04 * t);
            telemetry_scalar(run, "eval/f1", step, 0.9 - 0.6 * exp(-0.5 * e) - 0.01 * t);
            telemetry_scalar(run, "train/epoch", step, e);
            telemetry_progress((int64_t)t * p->epochs + e, (int64_t)p->trials * p->epochs);
            sleep_ms(p->step_ms);
        }
        log_info("trial_done", "trial %d finished", t);
    }
    telemetry_phase("prime");
    run_dir(p, "prime");
    double *times = calloc((size_t)(p->steps > 0 ? p->steps : 1), sizeof *times);
    double *cpu_times = calloc((size_t)(p->steps > 0 ? p->steps : 1), sizeof *cpu_times);
    FILE *trace = p->trace ? fopen(p->trace, "w") : NULL;
    int done = 0;
    for (int s = 1; s <= p->steps && !stop_flag; s++) {
        struct timespec start;
        clock_gettime(CLOCK_REALTIME, &start);
        double t0 = now_s(), c0 = thread_cpu_s();
        do_work(p->work);
        sleep_ms(p->step_ms);
        double dt = now_s() - t0;
        if (times) times[done] = dt;
        if (cpu_times) cpu_times[done] = thread_cpu_s() - c0;
        if (trace)
            fprintf(trace, "%.6f %.9f %.9f\n", (double)start.tv_sec + start.tv_nsec * 1e-9, dt,
                    cpu_times ? cpu_times[done] : 0.0);
        done++;
        telemetry_scalar("prime", "train/loss", s, 2.0 * exp(-s / 50.0) + 0.1);
        telemetry_scalar("prime", "train/learning_rate", s, 5e-5 * (1.0 - (double)s / (p->steps + 1)));
        telemetry_scalar("prime", "train/grad_norm", s, 1.0 + 0.5 * sin(s / 7.0));
        telemetry_scalar("prime", "train/tokens_per_second", s, 8 * 128 / (dt > 0 ? dt : 1e-3));
        telemetry_scalar("prime", "train/samples_per_second", s, 8 / (dt > 0 ? dt : 1e-3));
        telemetry_scalar("prime", "train/step_time_seconds", s, dt);
        telemetry_scalar("prime", "train/epoch", s, (double)s / 100.0);
        if (s % 20 == 0) {
            telemetry_scalar("prime", "eval/loss", s, 1.2 * exp(-s / 80.0) + 0.15);
            telemetry_scalar("prime", "eval/f1", s, 0.92 - 0.7 * exp(-s / 60.0));
            log_info("eval", "step %d evaluated", s);
        }
        telemetry_progress(s, p->steps);
    }
    if (trace) fclose(trace);
    telemetry_phase("done");
    if (times && cpu_times && done > 0) {
        double sum = 0;
        for (int i = 0; i < done; i++) sum += times[i];
        qsort(times, (size_t)done, sizeof *times, cmp_double);
        qsort(cpu_times, (size_t)done, sizeof *cpu_times, cmp_double);
        printf("{\"event\":\"demo_steps\",\"steps\":%d,\"mean_ms\":%.4f,\"p50_ms\":%.4f,"
               "\"p90_ms\":%.4f,\"cpu_p50_ms\":%.4f}\n",
               done, 1000 * sum / done, 1000 * times[done / 2], 1000 * times[done * 9 / 10],
               1000 * cpu_times[done / 2]);
        fflush(stdout);
    }
    free(times);
    free(cpu_times);
}

int main(int argc, char **argv) {
    runner_config cfg;
    config_defaults(&cfg);
    demo_plan plan = {.trials = 3, .epochs = 3, .steps = 100, .work = 0, .step_ms = 20};
    int workers = 0;
    double duration = 0;
    bool preflight = false;
    int worker_cpu = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(a, "--bind") == 0) snprintf(cfg.bind_address, sizeof cfg.bind_address, "%s", v), i++;
        else if (strcmp(a, "--metrics-port") == 0) cfg.metrics_port = atoi(v), i++;
        else if (strcmp(a, "--api-port") == 0) cfg.api_port = atoi(v), i++;
        else if (strcmp(a, "--dashboard-port") == 0) cfg.dashboard_port = atoi(v), i++;
        else if (strcmp(a, "--workers") == 0) workers = atoi(v), i++;
        else if (strcmp(a, "--trials") == 0) plan.trials = atoi(v), i++;
        else if (strcmp(a, "--epochs") == 0) plan.epochs = atoi(v), i++;
        else if (strcmp(a, "--steps") == 0) plan.steps = atoi(v), i++;
        else if (strcmp(a, "--step-ms") == 0) plan.step_ms = atof(v), i++;
        else if (strcmp(a, "--work") == 0) plan.work = atoi(v), i++;
        else if (strcmp(a, "--logdir") == 0) plan.logdir = v, i++;
        else if (strcmp(a, "--duration") == 0) duration = atof(v), i++;
        else if (strcmp(a, "--no-serve") == 0) cfg.serve = false;
        else if (strcmp(a, "--preflight") == 0) preflight = true;
        else if (strcmp(a, "--worker-cpu") == 0) worker_cpu = atoi(v), i++;
        else if (strcmp(a, "--trace") == 0) plan.trace = v, i++;
        else {
            fprintf(stderr, "serve_demo: unknown argument %s\n", a);
            return 2;
        }
    }
    snprintf(cfg.architecture, sizeof cfg.architecture, "bert-tiny");
    log_init(LOG_FORMAT_JSON, LOG_INFO);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (plan.work > 0) {
        size_t n = (size_t)plan.work * (size_t)plan.work;
        work_a = calloc(n, sizeof *work_a);
        work_b = calloc(n, sizeof *work_b);
        work_c = calloc(n, sizeof *work_c);
        for (size_t i = 0; i < n; i++) work_a[i] = work_b[i] = (float)(i % 7) * 0.01f;
    }
    double start = now_s();
    serve_set_job("demo-job", 1, NULL);
    telemetry_phase("preflight");
    if (workers > 0 && telemetry_supervisor_init(workers) != 0) return 1;
    if (serve_start(&cfg) != 0) {
        fprintf(stderr, "serve_demo: serve_start failed\n");
        return 1;
    }
    if (preflight) {
        cJSON *report = NULL;
        preflight_run(&cfg, &report);
        cJSON_Delete(report);
    }
    // Parse-friendly line with the ports actually bound.
    printf("{\"event\":\"demo_ready\",\"metrics_port\":%d,\"api_port\":%d,\"dashboard_port\":%d}\n",
           serve_bound_port(SERVE_METRICS), serve_bound_port(SERVE_API),
           serve_bound_port(SERVE_DASHBOARD));
    fflush(stdout);

    pid_t pids[64];
    int n_pids = 0;
    if (workers > 0) {
        for (int r = 0; r < workers && r < 64; r++) {
            fflush(NULL);
            pid_t pid = fork();
            if (pid == 0) {
                signal(SIGTERM, on_signal);
                if (worker_cpu >= 0) { // the benchmark keeps training and serving apart
                    cpu_set_t set;
                    CPU_ZERO(&set);
                    CPU_SET(worker_cpu, &set);
                    sched_setaffinity(0, sizeof set, &set);
                }
                if (telemetry_worker_attach(r) != 0) _exit(1);
                if (r == 0) {
                    demo_loop(&plan);
                } else {
                    for (int64_t s = 1; !stop_flag && s < 100000; s++) {
                        char run[32];
                        snprintf(run, sizeof run, "rank-%d", r);
                        telemetry_scalar(run, "worker/heartbeat", s, (double)s);
                        sleep_ms(100);
                        if (getppid() == 1) break;
                    }
                }
                telemetry_shutdown();
                exit(0);
            }
            if (pid > 0) pids[n_pids++] = pid;
        }
        // A stop for the demo is a stop for its workers, as in the runner.
        while (waitpid(pids[0], NULL, 0) < 0 && errno == EINTR)
            if (stop_flag) kill(pids[0], SIGTERM);
    } else {
        demo_loop(&plan);
    }
    while (!stop_flag && (duration <= 0 || now_s() - start < duration)) sleep_ms(50);
    for (int i = 1; i < n_pids; i++) kill(pids[i], SIGTERM);
    for (int i = 1; i < n_pids; i++) waitpid(pids[i], NULL, 0);
    serve_stop();
    telemetry_shutdown();
    free(work_a);
    free(work_b);
    free(work_c);
    return 0;
}
