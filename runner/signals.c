#include "runner/signals.h"

#include "runner/exitcode.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { WATCHED_MAX = 256, REASON_MAX = 128 };

static atomic_int stop_count;             // signals received
static atomic_bool stop_flag;             // stop requested by a signal or by code
static atomic_bool checkpoint_flag;       // checkpoint requested
static atomic_int reason_claimed;         // 0 until the first reason is stored
static char stop_reason_text[REASON_MAX]; // written once, by whoever claims it
static atomic_int watched[WATCHED_MAX];   // worker pids, 0 = free slot
static atomic_bool installed;
static bool in_worker; // a worker's last line is "worker_exit", not "exit"

// Claim the reason slot once; async-signal-safe (no locks, no stdio).
static void store_reason(const char *reason) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&reason_claimed, &expected, 1)) return;
    size_t i = 0;
    for (; reason && reason[i] && i < REASON_MAX - 1; i++)
        stop_reason_text[i] = reason[i];
    stop_reason_text[i] = '\0';
    atomic_store(&reason_claimed, 2);
}

// Append decimal `v` (>= 0) to buf at *len, async-signal-safe.
static void append_uint(char *buf, size_t *len, uint64_t v, int width) {
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < 24);
    while (n < width && n < 24)
        digits[n++] = '0';
    while (n)
        buf[(*len)++] = digits[--n];
}

static void append_text(char *buf, size_t *len, const char *text) {
    while (*text)
        buf[(*len)++] = *text++;
}

// civil_from_days (Howard Hinnant): days since 1970-01-01 -> y, m, d.
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

// The second signal: end the workers (SIGKILL: nothing of theirs is worth waiting for
// now, and their lines must not follow ours), reap them, write the final exit line with
// async-signal-safe formatting only, and leave with 80 without running any hook.
static void exit_at_once(int sig) {
    for (int i = 0; i < WATCHED_MAX; i++) {
        pid_t pid = atomic_load(&watched[i]);
        if (pid > 0) kill(pid, SIGKILL);
    }
    // SIGKILL cannot be caught, so this is quick; a process stuck in the kernel (a hung
    // GPU driver call) is given 2 s, then left to PR_SET_PDEATHSIG.
    for (int waited_ms = 0; waited_ms < 2000; waited_ms += 10) {
        bool alive = false;
        for (int i = 0; i < WATCHED_MAX; i++) {
            pid_t pid = atomic_load(&watched[i]);
            if (pid <= 0) continue;
            if (waitpid(pid, NULL, WNOHANG) == 0)
                alive = true;
            else
                atomic_store(&watched[i], 0);
        }
        if (!alive) break;
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t secs = now.tv_sec, days = secs / 86400, rem = secs % 86400;
    int64_t year;
    unsigned month, day;
    civil_from_days(days, &year, &month, &day);
    char line[256];
    size_t len = 0;
    append_text(line, &len, "{\"ts\":\"");
    append_uint(line, &len, (uint64_t)year, 4);
    line[len++] = '-';
    append_uint(line, &len, month, 2);
    line[len++] = '-';
    append_uint(line, &len, day, 2);
    line[len++] = 'T';
    append_uint(line, &len, (uint64_t)(rem / 3600), 2);
    line[len++] = ':';
    append_uint(line, &len, (uint64_t)(rem % 3600 / 60), 2);
    line[len++] = ':';
    append_uint(line, &len, (uint64_t)(rem % 60), 2);
    line[len++] = '.';
    append_uint(line, &len, (uint64_t)(now.tv_nsec / 1000000), 3);
    append_text(line, &len,
                in_worker ? "Z\",\"level\":\"warn\",\"event\":\"worker_exit\""
                          : "Z\",\"level\":\"warn\",\"event\":\"exit\"");
    append_text(line, &len, ",\"code\":80,\"name\":\"INTERRUPTED\",\"reason\":\"second ");
    append_text(line, &len, sig == SIGINT ? "SIGINT" : "SIGTERM");
    append_text(line, &len, ": exiting at once without checkpoint\"}\n");
    ssize_t ignored = write(STDOUT_FILENO, line, len);
    (void)ignored;
    _exit(EXIT_INTERRUPTED);
}

static void on_stop_signal(int sig) {
    int count = atomic_fetch_add(&stop_count, 1) + 1;
    if (count >= 2) exit_at_once(sig);
    store_reason(sig == SIGINT ? "SIGINT" : "SIGTERM");
    atomic_store(&stop_flag, true);
}

static void on_checkpoint_signal(int sig) {
    (void)sig;
    atomic_store(&checkpoint_flag, true);
}

void signals_install(void) {
    if (atomic_exchange(&installed, true)) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_checkpoint_signal;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

bool signals_stop_requested(void) {
    return atomic_load(&stop_flag);
}

void signals_request_stop(const char *reason) {
    store_reason(reason ? reason : "stop requested");
    atomic_store(&stop_flag, true);
}

const char *signals_stop_reason(void) {
    return atomic_load(&reason_claimed) == 2 ? stop_reason_text : NULL;
}

bool signals_take_checkpoint_request(void) {
    return atomic_exchange(&checkpoint_flag, false);
}

void signals_request_checkpoint(void) {
    atomic_store(&checkpoint_flag, true);
}

void signals_watch_child(pid_t pid) {
    for (int i = 0; i < WATCHED_MAX; i++) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&watched[i], &expected, (int)pid)) return;
    }
}

void signals_unwatch_child(pid_t pid) {
    for (int i = 0; i < WATCHED_MAX; i++) {
        int expected = (int)pid;
        if (atomic_compare_exchange_strong(&watched[i], &expected, 0)) return;
    }
}

void signals_mark_worker(void) {
    in_worker = true;
}

int signals_received(void) {
    return atomic_load(&stop_count);
}
