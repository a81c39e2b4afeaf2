// Telemetry transport. Three ways a call can go:
//  - in a worker (telemetry_worker_attach): into the worker's ring in the shared
//    /dev/shm segment. The ring is single-producer and overwrite-oldest: the producer
//    never blocks or waits on the reader; the supervisor's reader thread drains the
//    rings every few milliseconds into the store (runner/telemetry_store.h) and
//    counts what was overwritten before it could read it.
//  - in the supervisor, or in a process that never set up a segment (unit tests, tools):
//    straight into the store (one short mutex).
//  - TensorBoard: the calling process itself appends to the event file of the run's
//    directory (telemetry_run_dir), so files never depend on the supervisor.
#include "runner/telemetry.h"

#include "runner/error.h"
#include "runner/log.h"
#include "runner/telemetry_store.h"
#include "runner/serve/tfevents.h"
#include "runner/timing.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    RING_SLOTS = 4096, // per worker; the reader drains every READER_PERIOD_MS
    READER_PERIOD_MS = 20,
    MAX_WORKERS = 256,
    MAX_TB_RUNS = 64,
    TB_FLUSH_SECONDS = 2,
    LOG_SLOTS = 256,        // worker log lines in flight to the supervisor
    LOG_LINE_MAX = 4096,    // longer lines are cut (and then shown as text)
    LOG_SHIP_MS = 100,      // a worker ships its new log lines at most this often
};
#define SEGMENT_MAGIC 0x52554E54454C4531ull // "RUNTELE1"
#define SEGMENT_ENV "RUNNER_TELEMETRY_SHM"

typedef struct {
    _Atomic uint64_t seq; // 2*index+1 while being written, 2*index+2 once complete
    char run[STORE_RUN_MAX];
    char tag[STORE_TAG_MAX];
    int64_t step;
    double value;
    double wall_time;
} ring_slot;

typedef struct {
    _Atomic uint64_t seq; // as ring_slot.seq
    char text[LOG_LINE_MAX];
} log_slot;

typedef struct {
    _Atomic uint64_t head;      // records ever written by the worker
    _Atomic uint64_t state_seq; // seqlock over phase/progress below (odd: writing)
    _Atomic uint64_t state_gen; // bumps on every phase or progress call
    char phase[STORE_PHASE_MAX];
    int64_t done, total;
    double phase_wall, progress_wall;
    uint32_t phase_gen, progress_gen; // which of the two changed last
    _Atomic int32_t pid;
    ring_slot slots[RING_SLOTS];
    _Atomic uint64_t log_head; // log lines ever shipped
    log_slot logs[LOG_SLOTS];
} worker_ring;

typedef struct {
    uint64_t magic;
    uint64_t size;
    uint32_t workers;
    uint32_t pad;
    worker_ring rings[];
} segment;

typedef struct {
    char run[STORE_RUN_MAX];
    tfevents_writer *writer;
    int64_t last_step;
    double last_flush;
} tb_run;

static struct {
    segment *seg;    // mapped segment (supervisor, or worker after attach)
    size_t seg_size;
    char seg_name[64];
    bool supervisor; // this process created the segment
    int rank;        // >= 0 in an attached worker
    // supervisor reader
    pthread_t reader;
    bool reader_running;
    atomic_bool reader_stop;
    uint64_t read_index[MAX_WORKERS];
    uint64_t log_index[MAX_WORKERS];
    uint64_t state_seen[MAX_WORKERS];
    // worker log shipping
    unsigned long log_next; // next log.h seq of this worker to ship
    double log_shipped_at;
    // TensorBoard writers of this process
    pthread_mutex_t tb_lock;
    tb_run tb[MAX_TB_RUNS];
    int n_tb;
    bool atexit_registered;
} tel = {.rank = -1, .tb_lock = PTHREAD_MUTEX_INITIALIZER};

static void ship_logs(bool force);

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void copy_name(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "");
}

// ---- TensorBoard ---------------------------------------------------------------------

static void tb_flush_all(void) {
    pthread_mutex_lock(&tel.tb_lock);
    for (int i = 0; i < tel.n_tb; i++)
        if (tel.tb[i].writer) tfevents_flush(tel.tb[i].writer);
    pthread_mutex_unlock(&tel.tb_lock);
}

static void tb_close_all(void) {
    pthread_mutex_lock(&tel.tb_lock);
    for (int i = 0; i < tel.n_tb; i++) {
        tfevents_close(tel.tb[i].writer);
        tel.tb[i].writer = NULL;
    }
    tel.n_tb = 0;
    pthread_mutex_unlock(&tel.tb_lock);
}

void telemetry_flush(void) {
    ship_logs(true);
    tb_flush_all();
}

static void telemetry_atexit(void) {
    telemetry_flush();
}

void telemetry_run_dir(const char *run, const char *logdir) {
    if (!run || !logdir) return;
    tfevents_writer *w = tfevents_open(logdir);
    if (!w) {
        // Losing TensorBoard files must not stop training: report it and go on.
        cJSON *fields = cJSON_CreateObject();
        cJSON_AddStringToObject(fields, "run", run);
        cJSON_AddStringToObject(fields, "logdir", logdir);
        cJSON_AddStringToObject(fields, "reason", error_message());
        log_fields(LOG_WARN, "tfevents_unavailable", fields);
        error_clear();
        return;
    }
    pthread_mutex_lock(&tel.tb_lock);
    if (!tel.atexit_registered) {
        atexit(telemetry_atexit);
        tel.atexit_registered = true;
    }
    tb_run *slot = NULL;
    for (int i = 0; i < tel.n_tb; i++)
        if (strncmp(tel.tb[i].run, run, STORE_RUN_MAX - 1) == 0) slot = &tel.tb[i];
    if (!slot && tel.n_tb < MAX_TB_RUNS) slot = &tel.tb[tel.n_tb++];
    if (slot) {
        tfevents_close(slot->writer); // a new directory for the same run replaces the old
        copy_name(slot->run, sizeof slot->run, run);
        slot->writer = w;
        slot->last_step = INT64_MIN;
        slot->last_flush = wall_now();
        w = NULL;
    }
    pthread_mutex_unlock(&tel.tb_lock);
    tfevents_close(w);
}

static void tb_scalar(const char *run, const char *tag, int64_t step, double value, double wall) {
    pthread_mutex_lock(&tel.tb_lock);
    for (int i = 0; i < tel.n_tb; i++) {
        tb_run *r = &tel.tb[i];
        if (!r->writer || strncmp(r->run, run, STORE_RUN_MAX - 1) != 0) continue;
        // A new step means the previous one is complete: flush it, so the files are
        // current at every step boundary (and at least every TB_FLUSH_SECONDS).
        if ((r->last_step != INT64_MIN && step != r->last_step) ||
            wall - r->last_flush >= TB_FLUSH_SECONDS) {
            tfevents_flush(r->writer);
            r->last_flush = wall;
        }
        tfevents_scalar(r->writer, tag, step, value, wall);
        r->last_step = step;
        break;
    }
    pthread_mutex_unlock(&tel.tb_lock);
}

// ---- producer side -------------------------------------------------------------------

static worker_ring *my_ring(void) {
    if (!tel.seg || tel.rank < 0 || (uint32_t)tel.rank >= tel.seg->workers) return NULL;
    return &tel.seg->rings[tel.rank];
}

// A worker's log lines live in its own process; copy the new ones into its ring so the
// supervisor's /api/v1/logs and dashboard show them. Called from the telemetry calls
// (at most every LOG_SHIP_MS unless `force`) and at exit, so log.h needs no hook.
static void ship_logs(bool force) {
    worker_ring *ring = my_ring();
    if (!ring) return;
    double now = timing_now_s();
    if (!force && (now - tel.log_shipped_at) * 1000 < LOG_SHIP_MS) return;
    tel.log_shipped_at = now;
    char *lines[32];
    unsigned long seqs[32];
    // Page through everything new (cursor from 1: log.h numbers lines from 1).
    for (int round = 0; round < LOG_RECENT_LINES / 32; round++) {
        size_t n = log_recent(lines, seqs, 32, tel.log_next ? tel.log_next : 1);
        for (size_t i = 0; i < n; i++) {
            unsigned long seq = seqs[i];
            if (seq >= tel.log_next) {
                uint64_t index = atomic_load_explicit(&ring->log_head, memory_order_relaxed);
                log_slot *slot = &ring->logs[index % LOG_SLOTS];
                atomic_store_explicit(&slot->seq, 2 * index + 1, memory_order_relaxed);
                atomic_thread_fence(memory_order_release);
                copy_name(slot->text, sizeof slot->text, lines[i]);
                atomic_store_explicit(&slot->seq, 2 * index + 2, memory_order_release);
                atomic_store_explicit(&ring->log_head, index + 1, memory_order_release);
                tel.log_next = seq + 1;
            }
            free(lines[i]);
        }
        if (n < 32) break;
    }
}

void telemetry_scalar(const char *run, const char *tag, int64_t step, double value) {
    if (!run || !tag) return;
    double wall = wall_now();
    worker_ring *ring = my_ring();
    if (ring) {
        uint64_t index = atomic_load_explicit(&ring->head, memory_order_relaxed);
        ring_slot *slot = &ring->slots[index % RING_SLOTS];
        atomic_store_explicit(&slot->seq, 2 * index + 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        copy_name(slot->run, sizeof slot->run, run);
        copy_name(slot->tag, sizeof slot->tag, tag);
        slot->step = step;
        slot->value = value;
        slot->wall_time = wall;
        atomic_store_explicit(&slot->seq, 2 * index + 2, memory_order_release);
        atomic_store_explicit(&ring->head, index + 1, memory_order_release);
        ship_logs(false);
    } else {
        telemetry_store_scalar(run, tag, step, value, wall);
    }
    if (tel.n_tb) tb_scalar(run, tag, step, value, wall);
}

static void ring_state_write(worker_ring *ring, const char *phase, int64_t done, int64_t total) {
    uint64_t s = atomic_load_explicit(&ring->state_seq, memory_order_relaxed);
    atomic_store_explicit(&ring->state_seq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    double wall = wall_now();
    if (phase) {
        copy_name(ring->phase, sizeof ring->phase, phase);
        ring->phase_wall = wall;
        ring->phase_gen++;
        ring->done = ring->total = 0;
    } else {
        ring->done = done;
        ring->total = total;
        ring->progress_wall = wall;
        ring->progress_gen++;
    }
    atomic_store_explicit(&ring->state_seq, s + 2, memory_order_release);
    atomic_fetch_add_explicit(&ring->state_gen, 1, memory_order_release);
}

void telemetry_phase(const char *phase) {
    if (!phase) return;
    worker_ring *ring = my_ring();
    if (ring) {
        ring_state_write(ring, phase, 0, 0);
        ship_logs(true);
    } else
        telemetry_store_phase(phase, wall_now());
    if (strcmp(phase, "done") == 0 || strcmp(phase, "stopping") == 0) tb_flush_all();
}

void telemetry_progress(int64_t done, int64_t total) {
    // The loop reports progress once a step, after the step's scalars: the step is
    // complete, so its TensorBoard records go to the file now.
    if (tel.n_tb) tb_flush_all();
    worker_ring *ring = my_ring();
    if (ring) {
        ring_state_write(ring, NULL, done, total);
        ship_logs(false);
    } else
        telemetry_store_progress(done, total, wall_now());
}

// ---- supervisor side -----------------------------------------------------------------

static void drain_ring(int w) {
    worker_ring *ring = &tel.seg->rings[w];
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
    uint64_t next = tel.read_index[w];
    uint64_t dropped = 0;
    if (head - next > RING_SLOTS) { // the producer lapped us: the oldest are gone
        dropped += head - next - RING_SLOTS;
        next = head - RING_SLOTS;
    }
    for (; next < head; next++) {
        ring_slot *slot = &ring->slots[next % RING_SLOTS];
        uint64_t before = atomic_load_explicit(&slot->seq, memory_order_acquire);
        if (before != 2 * next + 2) { // overwritten meanwhile (or torn by a dead worker)
            dropped++;
            continue;
        }
        ring_slot copy;
        memcpy(copy.run, slot->run, sizeof copy.run);
        memcpy(copy.tag, slot->tag, sizeof copy.tag);
        copy.step = slot->step;
        copy.value = slot->value;
        copy.wall_time = slot->wall_time;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&slot->seq, memory_order_relaxed) != before) {
            dropped++;
            continue;
        }
        copy.run[sizeof copy.run - 1] = copy.tag[sizeof copy.tag - 1] = '\0';
        telemetry_store_scalar(copy.run, copy.tag, copy.step, copy.value, copy.wall_time);
    }
    tel.read_index[w] = next;
    telemetry_store_dropped(dropped);

    uint64_t log_head = atomic_load_explicit(&ring->log_head, memory_order_acquire);
    uint64_t log_next = tel.log_index[w];
    if (log_head - log_next > LOG_SLOTS) log_next = log_head - LOG_SLOTS;
    for (; log_next < log_head; log_next++) {
        log_slot *slot = &ring->logs[log_next % LOG_SLOTS];
        uint64_t before = atomic_load_explicit(&slot->seq, memory_order_acquire);
        if (before != 2 * log_next + 2) continue;
        static char text[LOG_LINE_MAX]; // the reader thread is the only caller
        memcpy(text, slot->text, sizeof text);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&slot->seq, memory_order_relaxed) != before) continue;
        text[sizeof text - 1] = '\0';
        telemetry_store_log(text, w);
    }
    tel.log_index[w] = log_next;

    uint64_t gen = atomic_load_explicit(&ring->state_gen, memory_order_acquire);
    if (gen == tel.state_seen[w]) return;
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t s1 = atomic_load_explicit(&ring->state_seq, memory_order_acquire);
        if (s1 & 1) continue;
        char phase[STORE_PHASE_MAX];
        memcpy(phase, ring->phase, sizeof phase);
        int64_t done = ring->done, total = ring->total;
        double phase_wall = ring->phase_wall, progress_wall = ring->progress_wall;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&ring->state_seq, memory_order_relaxed) != s1) continue;
        phase[sizeof phase - 1] = '\0';
        // Rank 0 speaks for the job; other ranks' phases mirror it.
        if (w == 0) {
            if (phase[0]) telemetry_store_phase(phase, phase_wall);
            if (progress_wall > 0) telemetry_store_progress(done, total, progress_wall);
        }
        tel.state_seen[w] = gen;
        break;
    }
}

static void *reader_main(void *arg) {
    (void)arg;
    while (!atomic_load(&tel.reader_stop)) {
        for (uint32_t w = 0; w < tel.seg->workers; w++) drain_ring((int)w);
        telemetry_store_pull_local_logs();
        struct timespec ts = {0, READER_PERIOD_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (uint32_t w = 0; w < tel.seg->workers; w++) drain_ring((int)w); // last words
    return NULL;
}

static int segment_map(int fd, size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return error_set(EXIT_RESOURCES, "/dev/shm%s: mmap of %zu bytes failed: %s", tel.seg_name,
                         size, strerror(errno));
    tel.seg = p;
    tel.seg_size = size;
    return 0;
}

int telemetry_supervisor_init(int workers) {
    if (workers < 1 || workers > MAX_WORKERS)
        return error_set(EXIT_USAGE, "telemetry: %d workers (1..%d)", workers, MAX_WORKERS);
    if (tel.seg) return 0;
    size_t size = sizeof(segment) + (size_t)workers * sizeof(worker_ring);
    snprintf(tel.seg_name, sizeof tel.seg_name, "/runner-telemetry-%d", (int)getpid());
    int fd = shm_open(tel.seg_name, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return error_set(EXIT_RESOURCES, "/dev/shm%s: cannot create: %s", tel.seg_name,
                         strerror(errno));
    if (ftruncate(fd, (off_t)size) != 0) {
        int e = errno;
        close(fd);
        shm_unlink(tel.seg_name);
        return error_set(EXIT_RESOURCES, "/dev/shm%s: cannot size to %zu bytes: %s", tel.seg_name,
                         size, strerror(e));
    }
    // Reserve the pages now: a /dev/shm too small fails here with a message, not later
    // with SIGBUS in a worker writing its ring.
    int fa = posix_fallocate(fd, 0, (off_t)size);
    if (fa != 0) {
        close(fd);
        shm_unlink(tel.seg_name);
        return error_set(EXIT_RESOURCES, "/dev/shm%s: cannot reserve %zu bytes: %s", tel.seg_name,
                         size, strerror(fa));
    }
    int rc = segment_map(fd, size);
    close(fd);
    if (rc != 0) {
        shm_unlink(tel.seg_name);
        return rc;
    }
    memset(tel.seg, 0, size); // ftruncate zero-fills already; explicit for a reused name
    tel.seg->magic = SEGMENT_MAGIC;
    tel.seg->size = size;
    tel.seg->workers = (uint32_t)workers;
    tel.supervisor = true;
    setenv(SEGMENT_ENV, tel.seg_name, 1); // the workers (runner/worker.h) attach by this name
    memset(tel.read_index, 0, sizeof tel.read_index);
    memset(tel.log_index, 0, sizeof tel.log_index);
    memset(tel.state_seen, 0, sizeof tel.state_seen);
    atomic_store(&tel.reader_stop, false);
    if (pthread_create(&tel.reader, NULL, reader_main, NULL) != 0) {
        telemetry_shutdown();
        return error_set(EXIT_RESOURCES, "telemetry: cannot start the reader thread");
    }
    tel.reader_running = true;
    return 0;
}

int telemetry_worker_attach(int rank) {
    if (!tel.seg) { // a worker (runner/worker.h): map the supervisor's segment by name
        const char *name = getenv(SEGMENT_ENV);
        if (!name || !*name)
            return error_set(EXIT_INTERNAL, "telemetry: no segment to attach to (%s unset)",
                             SEGMENT_ENV);
        copy_name(tel.seg_name, sizeof tel.seg_name, name);
        int fd = shm_open(tel.seg_name, O_RDWR, 0);
        if (fd < 0)
            return error_set(EXIT_RESOURCES, "/dev/shm%s: cannot open: %s", tel.seg_name,
                             strerror(errno));
        struct stat st;
        int rc = fstat(fd, &st) == 0 && st.st_size >= (off_t)sizeof(segment)
                     ? segment_map(fd, (size_t)st.st_size)
                     : error_set(EXIT_RESOURCES, "/dev/shm%s: not a telemetry segment", tel.seg_name);
        close(fd);
        if (rc != 0) return rc;
        if (tel.seg->magic != SEGMENT_MAGIC || tel.seg->size != (uint64_t)st.st_size) {
            munmap(tel.seg, tel.seg_size);
            tel.seg = NULL;
            return error_set(EXIT_INTERNAL, "/dev/shm%s: not a telemetry segment", tel.seg_name);
        }
    }
    if (rank < 0 || (uint32_t)rank >= tel.seg->workers)
        return error_set(EXIT_INTERNAL, "telemetry: rank %d outside 0..%u", rank,
                         tel.seg->workers - 1);
    // The reader thread and the supervisor role belong to the supervisor.
    tel.supervisor = false;
    tel.reader_running = false;
    tel.rank = rank;
    atomic_store(&tel.seg->rings[rank].pid, (int32_t)getpid());
    // Ship only what this worker logs from now on (a test's process may have logged
    // before it attached).
    tel.log_next = log_last_seq() + 1;
    tel.log_shipped_at = 0;
    if (!tel.atexit_registered) {
        atexit(telemetry_atexit);
        tel.atexit_registered = true;
    }
    return 0;
}

void telemetry_shutdown(void) {
    ship_logs(true);
    if (tel.reader_running) {
        atomic_store(&tel.reader_stop, true);
        pthread_join(tel.reader, NULL);
        tel.reader_running = false;
    }
    tb_flush_all();
    tb_close_all();
    if (tel.seg) {
        munmap(tel.seg, tel.seg_size);
        tel.seg = NULL;
        if (tel.supervisor) {
            shm_unlink(tel.seg_name);
            unsetenv(SEGMENT_ENV);
        }
    }
    tel.supervisor = false;
    tel.rank = -1;
}

int telemetry_worker_pids(int *pids, int max) {
    if (!tel.seg || !tel.supervisor) return 0;
    int n = (int)tel.seg->workers;
    for (int i = 0; i < n && i < max; i++) pids[i] = atomic_load(&tel.seg->rings[i].pid);
    return n;
}
