// Telemetry transport: in-process calls land in the store; forked workers' scalars,
// phase and progress cross the /dev/shm rings to the supervisor's store; a worker that
// outruns the reader loses the oldest records, which are counted, never blocks, and
// never corrupts the latest value.
#include "check.h"
#include "runner/log.h"
#include "runner/telemetry_store.h"
#include "runner/telemetry.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// Wait up to 5 s for the store to hold `want` scalars plus drops.
static void wait_for(uint64_t want) {
    for (int i = 0; i < 500; i++) {
        store_state st;
        telemetry_store_state(&st);
        if (st.scalars + st.dropped >= want) return;
        sleep_ms(10);
    }
}

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(void) {
    // In-process: no segment.
    telemetry_phase("preflight");
    telemetry_scalar("prime", "train/loss", 1, 2.0);
    telemetry_scalar("prime", "train/loss", 2, 1.5);
    telemetry_progress(2, 10);
    store_point p;
    CHECK(telemetry_store_latest("prime", "train/loss", &p));
    CHECK_INT(p.step, 2);
    CHECK_CLOSE(p.value, 1.5, 0, 0);
    store_state st;
    telemetry_store_state(&st);
    CHECK_STR(st.phase, "preflight");
    CHECK_INT(st.done, 2);
    CHECK_INT(st.total, 10);
    CHECK_INT(st.scalars, 2);
    CHECK(!telemetry_store_latest("prime", "eval/f1", NULL));

    // History: since a step, after a cursor, at most N points.
    cJSON *h = telemetry_store_history("prime", 1, 0, 100, NULL);
    cJSON *loss = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "prime"), "train/loss");
    CHECK_INT(cJSON_GetArraySize(loss), 1);
    CHECK_INT(cJSON_GetArrayItem(cJSON_GetArrayItem(loss, 0), 0)->valueint, 2);
    cJSON_Delete(h);
    uint64_t cursor = telemetry_store_cursor();
    telemetry_scalar("prime", "train/loss", 3, 1.25);
    h = telemetry_store_history(NULL, INT64_MIN, cursor, 100, NULL);
    loss = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "prime"), "train/loss");
    CHECK_INT(cJSON_GetArraySize(loss), 1);
    cJSON_Delete(h);
    for (int i = 0; i < STORE_HISTORY + 10; i++) telemetry_scalar("long", "x", i, i);
    h = telemetry_store_history("long", INT64_MIN, 0, 1000000, NULL);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(h, "long"), "x")),
              STORE_HISTORY); // bounded, oldest dropped
    cJSON_Delete(h);
    telemetry_store_reset();

    // Supervisor + two forked workers.
    CHECK_INT(telemetry_supervisor_init(2), 0);
    const int per_worker = 2000;
    pid_t pids[2];
    for (int r = 0; r < 2; r++) {
        pids[r] = fork();
        if (pids[r] == 0) {
            if (telemetry_worker_attach(r) != 0) _exit(3);
            char run[32];
            snprintf(run, sizeof run, "rank-%d", r);
            if (r == 0) telemetry_phase("prime");
            for (int i = 1; i <= per_worker; i++) {
                telemetry_scalar(run, "train/loss", i, 1.0 / i);
                if (i % 256 == 0) sleep_ms(1); // a realistic pace: nothing may drop
            }
            if (r == 0) telemetry_progress(per_worker, per_worker);
            _exit(0);
        }
    }
    for (int r = 0; r < 2; r++) {
        int status = 0;
        waitpid(pids[r], &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    wait_for(2 * per_worker);
    sleep_ms(60); // one more reader pass for phase and progress
    telemetry_store_state(&st);
    CHECK_INT(st.scalars, 2 * per_worker);
    CHECK_INT(st.dropped, 0);
    CHECK_STR(st.phase, "prime");
    CHECK_INT(st.done, per_worker);
    CHECK(telemetry_store_latest("rank-1", "train/loss", &p));
    CHECK_INT(p.step, per_worker);
    CHECK_CLOSE(p.value, 1.0 / per_worker, 0, 0);
    h = telemetry_store_history("rank-0", INT64_MIN, 0, 1000000, NULL);
    cJSON *pts = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "rank-0"), "train/loss");
    CHECK_INT(cJSON_GetArraySize(pts), per_worker);
    bool ordered = true;
    for (int i = 0; i < cJSON_GetArraySize(pts); i++)
        if (cJSON_GetArrayItem(cJSON_GetArrayItem(pts, i), 0)->valueint != i + 1) ordered = false;
    CHECK(ordered);
    cJSON_Delete(h);
    int worker_pids[4] = {0};
    CHECK_INT(telemetry_worker_pids(worker_pids, 4), 2);
    CHECK_INT(worker_pids[0], pids[0]);

    // A worker's log lines reach the supervisor's log tail with its rank; the lines the
    // worker inherited from the supervisor across fork are not shipped twice.
    log_init(LOG_FORMAT_JSON, LOG_INFO);
    log_info("supervisor_line", "before fork");
    pid_t logger = fork();
    if (logger == 0) {
        if (telemetry_worker_attach(1) != 0) _exit(3);
        log_info("worker_line", "hello from rank 1");
        telemetry_scalar("rank-1", "x", 1, 1); // ships (first call)
        log_info("worker_last_words", "logged after the last scalar");
        exit(0); // atexit ships the rest
    }
    waitpid(logger, NULL, 0);
    sleep_ms(80);
    telemetry_store_pull_local_logs();
    char *lines[64];
    uint64_t seqs[64];
    size_t n_lines = telemetry_store_logs(lines, seqs, 64, 0, NULL);
    int worker_lines = 0, supervisor_lines = 0, last_words = 0;
    for (size_t i = 0; i < n_lines; i++) {
        if (strstr(lines[i], "\"worker_line\"") && strstr(lines[i], "\"rank\":1")) worker_lines++;
        if (strstr(lines[i], "\"worker_last_words\"")) last_words++;
        if (strstr(lines[i], "\"supervisor_line\"")) supervisor_lines++;
        CHECK(strstr(lines[i], "\"seq\"") == NULL); // numbered by the store instead
        if (i > 0) CHECK(seqs[i] > seqs[i - 1]);
        free(lines[i]);
    }
    CHECK_INT(worker_lines, 1);
    CHECK_INT(last_words, 1);
    CHECK_INT(supervisor_lines, 1);

    // A worker that logs many lines before its first telemetry call ships every one of
    // them (not only the newest page), and the store pages them out with none skipped.
    telemetry_store_reset();
    enum { CHATTY = 150 };
    pid_t chatty = fork();
    if (chatty == 0) {
        if (telemetry_worker_attach(1) != 0) _exit(3);
        for (int i = 0; i < CHATTY; i++) log_info("chatty", "line %d", i);
        telemetry_scalar("rank-1", "x", 1, 1);
        exit(0);
    }
    int chatty_status = 0;
    waitpid(chatty, &chatty_status, 0);
    CHECK(WIFEXITED(chatty_status) && WEXITSTATUS(chatty_status) == 0);
    sleep_ms(80);
    uint64_t log_cursor = 1;
    int next_line = 0;
    for (int page = 0; page < 100; page++) {
        uint64_t next = 0;
        size_t got = telemetry_store_logs(lines, seqs, 16, log_cursor, &next);
        for (size_t i = 0; i < got; i++) {
            char want[32];
            snprintf(want, sizeof want, "\"line %d\"", next_line);
            if (strstr(lines[i], "\"chatty\"") && strstr(lines[i], want)) next_line++;
            free(lines[i]);
        }
        if (got == 0) break;
        CHECK(next == seqs[got - 1] + 1);
        log_cursor = next;
    }
    CHECK_INT(next_line, CHATTY);

    // A search with more trial series than the store holds leaves room for the prime
    // run, which logs after it.
    telemetry_store_reset();
    for (int trial = 0; trial < 200; trial++) {
        char run[32];
        snprintf(run, sizeof run, "trial-%d", trial);
        for (int t = 1; t < 8; t++) {
            char tag[32];
            snprintf(tag, sizeof tag, "train/tag%d", t);
            telemetry_store_scalar(run, tag, 1, t, 1.0);
        }
        telemetry_store_scalar(run, TAG_STEP_CLOCK, 1, 1.0, 1.0); // and a step time
        telemetry_store_scalar(run, TAG_STEP_CLOCK, 2, 0.9, 1.5);
    }
    CHECK_INT(telemetry_store_series(NULL, 0), STORE_TRIAL_SERIES);
    CHECK_INT(telemetry_store_histograms(NULL, 0), STORE_TRIAL_HISTOGRAMS);
    telemetry_store_scalar("prime", "train/loss", 1, 0.5, 2.0);
    CHECK(telemetry_store_latest("prime", "train/loss", &p));
    CHECK_CLOSE(p.value, 0.5, 0, 0);
    store_histogram hist[64];
    size_t n_hist = telemetry_store_histograms(hist, 64);
    CHECK(n_hist <= STORE_TRIAL_HISTOGRAMS + 1);
    bool prime_histogram = false;
    for (size_t i = 0; i < n_hist; i++) prime_histogram |= strcmp(hist[i].run, "prime") == 0;
    telemetry_store_scalar("prime", "train/loss", 2, 0.4, 3.0); // a step time to observe
    n_hist = telemetry_store_histograms(hist, 64);
    for (size_t i = 0; i < n_hist; i++) prime_histogram |= strcmp(hist[i].run, "prime") == 0;
    CHECK(prime_histogram);

    // A burst far beyond the ring: the producer never waits; what was lapped is counted.
    telemetry_store_reset();
    const int burst = 200000;
    pid_t pid = fork();
    if (pid == 0) {
        if (telemetry_worker_attach(1) != 0) _exit(3);
        double t0 = monotonic();
        for (int i = 1; i <= burst; i++) telemetry_scalar("burst", "v", i, i);
        double per_call_ns = (monotonic() - t0) / burst * 1e9;
        _exit(per_call_ns < 2000 ? 0 : 4); // non-blocking: well under 2 us a call
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    wait_for(burst);
    telemetry_store_state(&st);
    CHECK_INT(st.scalars + st.dropped, burst);
    CHECK(st.dropped > 0);
    CHECK(telemetry_store_latest("burst", "v", &p));
    CHECK_INT(p.step, burst);
    CHECK_CLOSE(p.value, burst, 0, 0);

    // A worker killed mid-run leaves nothing that breaks the reader.
    pid = fork();
    if (pid == 0) {
        if (telemetry_worker_attach(0) != 0) _exit(3);
        for (int i = 0;; i++) telemetry_scalar("killed", "v", i, i);
    }
    sleep_ms(30);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    sleep_ms(50);
    CHECK(telemetry_store_latest("killed", "v", NULL));

    // The segment lives in /dev/shm while the supervisor runs and is gone after shutdown.
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/runner-telemetry-%d", (int)getpid());
    CHECK(access(path, F_OK) == 0);
    telemetry_shutdown();
    CHECK(access(path, F_OK) != 0);

    // Errors: bad worker counts, attaching with no segment.
    CHECK_INT(telemetry_supervisor_init(0), 2);
    unsetenv("RUNNER_TELEMETRY_SHM");
    CHECK(telemetry_worker_attach(0) != 0);
    return check_summary();
}
