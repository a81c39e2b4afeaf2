// Download progress: JSON lines for the logs, a bar for a person at a terminal. See
// hub_progress.h.
#include "runner/cloud/hub_progress.h"

#include "runner/log.h"
#include "runner/telemetry.h"
#include "runner/timing.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <unistd.h>

enum { BAR_CELLS = 16 };
static const double LOG_EVERY_S = 5.0, DRAW_EVERY_S = 0.25;

// Whether a bar is on the terminal now: cleared by whichever thread logs a line.
static atomic_bool on_screen;

static void bar_erase(void) {
    if (atomic_exchange(&on_screen, false) && write(STDERR_FILENO, "\r\033[K", 4) < 0) {
        // nothing to do: the terminal went away, the next line goes where it can
    }
}

bool hub_progress_bar_wanted(void) {
    const char *v = getenv("HF_HUB_DISABLE_PROGRESS_BARS");
    bool disabled = v && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 ||
                          strcasecmp(v, "yes") == 0 || strcasecmp(v, "on") == 0);
    return !disabled && isatty(STDERR_FILENO);
}

void hub_progress_begin(hub_progress *p, const char *file, long long have, long long total) {
    memset(p, 0, sizeof *p);
    p->file = file;
    p->total = total;
    p->start_size = have > 0 ? have : 0;
    p->started = p->last_log = timing_now_s();
    p->last_draw = p->started - DRAW_EVERY_S; // the first update draws
    p->bar = hub_progress_bar_wanted();
    if (p->bar) log_set_before_line(bar_erase);
}

// "40.1/86.7 MiB": both in the unit of the total.
static void format_sizes(char *out, size_t n, long long size, long long total) {
    static const char *const UNITS[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double scale = 1;
    int u = 0;
    while (u < 4 && (double)total >= scale * 1024) scale *= 1024, u++;
    if (u == 0) snprintf(out, n, "%lld/%lld B", size, total);
    else snprintf(out, n, "%.1f/%.1f %s", (double)size / scale, (double)total / scale, UNITS[u]);
}

static void format_duration(char *out, size_t n, double seconds) {
    long long s = (long long)(seconds + 0.5);
    if (s >= 3600) snprintf(out, n, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(out, n, "%lld:%02lld", s / 60, s % 60);
}

static int terminal_columns(void) {
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
    return 80;
}

static void bar_draw(const hub_progress *p, long long size, double now, bool done) {
    double elapsed = now - p->started;
    double rate = elapsed > 0 ? (double)(size - p->start_size) / elapsed : 0;
    int percent = p->total > 0 ? (int)(100.0 * (double)size / (double)p->total) : 100;
    if (percent > 100) percent = 100;
    char sizes[64], when[32] = "", cells[BAR_CELLS + 3];
    format_sizes(sizes, sizeof sizes, size, p->total);
    if (done) {
        memcpy(when, "in ", 3);
        format_duration(when + 3, sizeof when - 3, elapsed);
    } else if (rate > 0) {
        memcpy(when, "ETA ", 4);
        format_duration(when + 4, sizeof when - 4, (double)(p->total - size) / rate);
    } else {
        snprintf(when, sizeof when, "ETA -");
    }
    int filled = percent * BAR_CELLS / 100;
    cells[0] = '[';
    for (int i = 0; i < BAR_CELLS; i++) cells[1 + i] = i < filled ? '#' : ' ';
    cells[BAR_CELLS + 1] = ']';
    cells[BAR_CELLS + 2] = '\0';
    char tail[160];
    snprintf(tail, sizeof tail, "%3d%% %s %.1f MiB/s %s", percent, sizes, rate / (1 << 20),
             when);
    // One line narrower than the terminal, or the carriage return no longer goes back to
    // its start: the bar goes first, then the file name is cut.
    int columns = terminal_columns() - 1;
    int name_len = (int)strlen(p->file);
    int room = columns - (int)strlen(tail) - 2; // for "name  "
    bool with_cells = room - (int)strlen(cells) - 1 >= (name_len < 12 ? name_len : 12);
    if (with_cells) room -= (int)strlen(cells) + 1;
    if (name_len > room) name_len = room > 0 ? room : 0;
    char line[512];
    int len = snprintf(line, sizeof line, "\r%.*s%s%s%s%s\033[K", name_len, p->file,
                       name_len ? "  " : "", with_cells ? cells : "", with_cells ? " " : "",
                       tail);
    if (len > 0 && write(STDERR_FILENO, line, (size_t)len) == len)
        atomic_store(&on_screen, true);
}

void hub_progress_update(void *ud, long long size) {
    hub_progress *p = ud;
    double now = timing_now_s();
    if (now - p->last_log >= LOG_EVERY_S || size >= p->total) {
        p->last_log = now;
        double elapsed = now - p->started;
        double rate = elapsed > 0 ? (double)(size - p->start_size) / elapsed : 0;
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "file", p->file);
        cJSON_AddNumberToObject(f, "bytes", (double)size);
        cJSON_AddNumberToObject(f, "total", (double)p->total);
        cJSON_AddNumberToObject(f, "mib_per_s", (double)(long long)(rate / (1 << 20) * 10) / 10);
        if (rate > 0)
            cJSON_AddNumberToObject(f, "eta_s", (double)(long long)((double)(p->total - size) / rate));
        log_fields(LOG_INFO, "hub_download", f); // erases the bar first when one is drawn
        telemetry_progress(size, p->total);        // the API's and dashboard's view of the phase
    }
    if (p->bar && size < p->total && now - p->last_draw >= DRAW_EVERY_S) {
        p->last_draw = now;
        bar_draw(p, size, now, false);
    }
}

void hub_progress_end(hub_progress *p, long long size) {
    if (!p->bar) return;
    bar_draw(p, size < 0 ? 0 : size, timing_now_s(), size >= p->total);
    log_set_before_line(NULL);
    if (atomic_exchange(&on_screen, false) && write(STDERR_FILENO, "\n", 1) < 0) {
        // the terminal went away: nothing left to end
    }
    p->bar = false;
}
