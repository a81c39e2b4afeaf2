#include "runner/serve/tfevents.h"

#include "runner/error.h"
#include "runner/serve/crc32c.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// The Event protobuf is encoded by hand: we write three message types with five
// fields between them (Event.wall_time/step/file_version/summary, Summary.value,
// Value.tag/simple_value), protobuf-c is not in our dependency set, and a generated
// encoder would pull TensorFlow's .proto tree into the build for these few bytes.
// Field numbers and wire types are TensorFlow's event.proto and summary.proto.
enum {
    PB_VARINT = 0,
    PB_FIXED64 = 1,
    PB_BYTES = 2,
    PB_FIXED32 = 5,
    EVENT_WALL_TIME = 1,    // double
    EVENT_STEP = 2,         // int64
    EVENT_FILE_VERSION = 3, // string
    EVENT_SUMMARY = 5,      // Summary
    SUMMARY_VALUE = 1,      // repeated Value
    VALUE_TAG = 1,          // string
    VALUE_SIMPLE_VALUE = 2, // float
    TAG_MAX = 512,
};

struct tfevents_writer {
    FILE *file;
    char path[PATH_MAX];
};

typedef struct {
    unsigned char *p;
    size_t len, cap;
} pb_buffer;

static void pb_byte(pb_buffer *b, unsigned char c) {
    if (b->len < b->cap) b->p[b->len] = c;
    b->len++; // past cap: measured, not written; callers size buffers to fit
}

static void pb_varint(pb_buffer *b, uint64_t v) {
    while (v >= 0x80) {
        pb_byte(b, (unsigned char)(v | 0x80));
        v >>= 7;
    }
    pb_byte(b, (unsigned char)v);
}

static void pb_key(pb_buffer *b, unsigned field, unsigned wire) {
    pb_varint(b, (uint64_t)field << 3 | wire);
}

static void pb_fixed(pb_buffer *b, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) pb_byte(b, (unsigned char)(v >> (8 * i)));
}

static void pb_bytes(pb_buffer *b, unsigned field, const void *data, size_t len) {
    pb_key(b, field, PB_BYTES);
    pb_varint(b, len);
    for (size_t i = 0; i < len; i++) pb_byte(b, ((const unsigned char *)data)[i]);
}

static void pb_double(pb_buffer *b, unsigned field, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    pb_key(b, field, PB_FIXED64);
    pb_fixed(b, bits, 8);
}

static void pb_float(pb_buffer *b, unsigned field, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    pb_key(b, field, PB_FIXED32);
    pb_fixed(b, bits, 4);
}

// TFRecord framing: uint64 length, masked crc of those 8 bytes, data, masked crc of data.
static int tfevents_record(tfevents_writer *w, const unsigned char *data, size_t len) {
    unsigned char header[12];
    uint64_t n = len;
    for (int i = 0; i < 8; i++) header[i] = (unsigned char)(n >> (8 * i));
    uint32_t hcrc = crc32c_masked(header, 8), dcrc = crc32c_masked(data, len);
    for (int i = 0; i < 4; i++) header[8 + i] = (unsigned char)(hcrc >> (8 * i));
    unsigned char footer[4];
    for (int i = 0; i < 4; i++) footer[i] = (unsigned char)(dcrc >> (8 * i));
    if (fwrite(header, 1, sizeof header, w->file) != sizeof header ||
        fwrite(data, 1, len, w->file) != len ||
        fwrite(footer, 1, sizeof footer, w->file) != sizeof footer)
        return error_set(EXIT_OUTPUT, "%s: write failed: %s", w->path, strerror(errno));
    return 0;
}

static int mkdir_parents(const char *dir) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return error_set(EXIT_OUTPUT, "%s: path too long", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return error_set(EXIT_OUTPUT, "%s: cannot create directory: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return error_set(EXIT_OUTPUT, "%s: cannot create directory: %s", path, strerror(errno));
    return 0;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

tfevents_writer *tfevents_open(const char *logdir) {
    static atomic_uint file_counter;
    if (mkdir_parents(logdir) != 0) return NULL;
    tfevents_writer *w = calloc(1, sizeof *w);
    if (!w) {
        error_set(EXIT_RESOURCES, "tfevents: out of memory");
        return NULL;
    }
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    unsigned n = atomic_fetch_add(&file_counter, 1);
    double now = wall_now();
    int len = snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%lld.%s.%d.%u", logdir,
                       (long long)now, host, (int)getpid(), n);
    if (len < 0 || len >= (int)sizeof w->path) {
        error_set(EXIT_OUTPUT, "%s: event file path too long", logdir);
        free(w);
        return NULL;
    }
    w->file = fopen(w->path, "wbx");
    if (!w->file) {
        error_set(EXIT_OUTPUT, "%s: cannot create event file: %s", w->path, strerror(errno));
        free(w);
        return NULL;
    }
    unsigned char buf[64];
    pb_buffer b = {buf, 0, sizeof buf};
    pb_double(&b, EVENT_WALL_TIME, now);
    pb_bytes(&b, EVENT_FILE_VERSION, "brain.Event:2", strlen("brain.Event:2"));
    if (tfevents_record(w, buf, b.len) != 0 || tfevents_flush(w) != 0) {
        tfevents_close(w);
        return NULL;
    }
    return w;
}

int tfevents_scalar(tfevents_writer *w, const char *tag, int64_t step, double value,
                    double wall_time) {
    size_t tag_len = strnlen(tag, TAG_MAX);
    // Value{tag, simple_value}: at most 2 + 2 + TAG_MAX + 5 bytes.
    unsigned char value_buf[TAG_MAX + 16];
    pb_buffer v = {value_buf, 0, sizeof value_buf};
    pb_bytes(&v, VALUE_TAG, tag, tag_len);
    pb_float(&v, VALUE_SIMPLE_VALUE, (float)value);
    unsigned char summary_buf[TAG_MAX + 32];
    pb_buffer s = {summary_buf, 0, sizeof summary_buf};
    pb_bytes(&s, SUMMARY_VALUE, value_buf, v.len);
    unsigned char event_buf[TAG_MAX + 64];
    pb_buffer e = {event_buf, 0, sizeof event_buf};
    pb_double(&e, EVENT_WALL_TIME, wall_time);
    pb_key(&e, EVENT_STEP, PB_VARINT);
    pb_varint(&e, (uint64_t)step); // int64: negative steps take ten bytes, as protobuf says
    pb_bytes(&e, EVENT_SUMMARY, summary_buf, s.len);
    if (e.len > e.cap) return error_set(EXIT_INTERNAL, "tfevents: event for '%s' too large", tag);
    return tfevents_record(w, event_buf, e.len);
}

int tfevents_flush(tfevents_writer *w) {
    if (fflush(w->file) != 0)
        return error_set(EXIT_OUTPUT, "%s: flush failed: %s", w->path, strerror(errno));
    return 0;
}

const char *tfevents_path(const tfevents_writer *w) {
    return w->path;
}

void tfevents_close(tfevents_writer *w) {
    if (!w) return;
    if (w->file) fclose(w->file);
    free(w);
}
