// TensorBoard event files: TFRecord framing with valid masked CRCs, the file_version
// record first, one Event per scalar with the right step, tag and float value, and the
// flush at each step boundary (a reader sees step N once step N+1 begins).
#include "check.h"
#include "runner/serve/crc32c.h"
#include "runner/serve/tfevents.h"
#include "runner/telemetry.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    unsigned char data[1024];
    size_t len;
} record;

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// Read every record, checking both CRCs; returns the count (-1 on a bad frame).
static int read_records(const char *path, record *out, int max) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    int n = 0;
    unsigned char header[12];
    while (n < max && fread(header, 1, 12, f) == 12) {
        uint64_t len = le64(header);
        if (le32(header + 8) != crc32c_masked(header, 8) || len > sizeof out[n].data) break;
        if (fread(out[n].data, 1, len, f) != len) break;
        unsigned char footer[4];
        if (fread(footer, 1, 4, f) != 4 || le32(footer) != crc32c_masked(out[n].data, len)) break;
        out[n].len = len;
        n++;
    }
    bool clean = feof(f) || fgetc(f) == EOF;
    fclose(f);
    return clean ? n : -1;
}

// Minimal protobuf reading for the checks: find field `field` (wire type `wire`).
static const unsigned char *pb_find(const unsigned char *p, size_t len, unsigned field,
                                    unsigned wire, size_t *out_len) {
    size_t i = 0;
    while (i < len) {
        uint64_t key = 0;
        for (int s = 0; i < len; s += 7) {
            key |= (uint64_t)(p[i] & 0x7F) << s;
            if (!(p[i++] & 0x80)) break;
        }
        unsigned f = (unsigned)(key >> 3), w = (unsigned)(key & 7);
        size_t n = 0;
        const unsigned char *start = p + i;
        if (w == 0) {
            while (i < len && (p[i++] & 0x80)) n++;
            n = (size_t)(p + i - start);
        } else if (w == 1) {
            n = 8, i += 8;
        } else if (w == 5) {
            n = 4, i += 4;
        } else if (w == 2) {
            uint64_t l = 0;
            for (int s = 0; i < len; s += 7) {
                l |= (uint64_t)(p[i] & 0x7F) << s;
                if (!(p[i++] & 0x80)) break;
            }
            start = p + i;
            n = (size_t)l;
            i += n;
        } else {
            return NULL;
        }
        if (f == field && w == wire) {
            *out_len = n;
            return start;
        }
    }
    return NULL;
}

static int64_t pb_varint_value(const unsigned char *p) {
    uint64_t v = 0;
    for (int s = 0;; s += 7) {
        v |= (uint64_t)(*p & 0x7F) << s;
        if (!(*p++ & 0x80)) break;
    }
    return (int64_t)v;
}

static void check_scalar(const record *r, int64_t step, const char *tag, float value) {
    size_t n;
    const unsigned char *p = pb_find(r->data, r->len, 2, 0, &n);
    CHECK(p != NULL);
    if (p) CHECK_INT(pb_varint_value(p), step);
    CHECK(pb_find(r->data, r->len, 1, 1, &n) != NULL); // wall_time
    size_t summary_len;
    const unsigned char *summary = pb_find(r->data, r->len, 5, 2, &summary_len);
    CHECK(summary != NULL);
    if (!summary) return;
    size_t value_len;
    const unsigned char *v = pb_find(summary, summary_len, 1, 2, &value_len);
    CHECK(v != NULL);
    if (!v) return;
    size_t tag_len;
    const unsigned char *t = pb_find(v, value_len, 1, 2, &tag_len);
    CHECK(t && tag_len == strlen(tag) && memcmp(t, tag, tag_len) == 0);
    size_t f_len;
    const unsigned char *f = pb_find(v, value_len, 2, 5, &f_len);
    CHECK(f != NULL);
    if (f) {
        uint32_t bits = le32(f);
        float got;
        memcpy(&got, &bits, sizeof got);
        CHECK_CLOSE(got, value, 0, 0);
    }
}

static int find_event_file(const char *dir, char *path, size_t cap) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "events.out.tfevents.", 20) == 0) {
            snprintf(path, cap, "%s/%s", dir, e->d_name);
            found++;
        }
    closedir(d);
    return found;
}

int main(void) {
    char tmp[] = "/tmp/test_tfevents_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/a/b", tmp);

    // The writer alone.
    tfevents_writer *w = tfevents_open(dir);
    CHECK(w != NULL);
    if (!w) return check_summary();
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    CHECK(strstr(tfevents_path(w), "/events.out.tfevents.") != NULL);
    CHECK(strstr(tfevents_path(w), host) != NULL);
    CHECK_INT(tfevents_scalar(w, "train/loss", 1, 2.5, 1700000000.0), 0);
    CHECK_INT(tfevents_scalar(w, "train/loss", -3, 0.125, 1700000001.0), 0);
    char long_tag[300];
    memset(long_tag, 'x', sizeof long_tag - 1);
    long_tag[sizeof long_tag - 1] = '\0';
    CHECK_INT(tfevents_scalar(w, long_tag, 1LL << 40, 1e-7, 1700000002.0), 0);
    char path[1024];
    snprintf(path, sizeof path, "%s", tfevents_path(w));
    tfevents_close(w);

    record recs[8];
    int n = read_records(path, recs, 8);
    CHECK_INT(n, 4);
    if (n == 4) {
        size_t len;
        const unsigned char *v = pb_find(recs[0].data, recs[0].len, 3, 2, &len);
        CHECK(v && len == 13 && memcmp(v, "brain.Event:2", 13) == 0);
        check_scalar(&recs[1], 1, "train/loss", 2.5f);
        check_scalar(&recs[2], -3, "train/loss", 0.125f);
        check_scalar(&recs[3], 1LL << 40, long_tag, 1e-7f);
    }

    // Through telemetry: a run directory, flushed at the step boundary.
    char run_dir[512];
    snprintf(run_dir, sizeof run_dir, "%s/prime", tmp);
    telemetry_run_dir("prime", run_dir);
    telemetry_scalar("prime", "train/loss", 1, 1.0);
    telemetry_scalar("prime", "eval/f1", 1, 0.5);
    telemetry_scalar("other", "train/loss", 1, 9.0); // no directory: not in this file
    telemetry_scalar("prime", "train/loss", 2, 0.75); // step 2 begins: step 1 is flushed
    CHECK_INT(find_event_file(run_dir, path, sizeof path), 1);
    n = read_records(path, recs, 8);
    CHECK_INT(n, 3); // version + the two scalars of step 1
    if (n == 3) {
        check_scalar(&recs[1], 1, "train/loss", 1.0f);
        check_scalar(&recs[2], 1, "eval/f1", 0.5f);
    }
    telemetry_shutdown(); // flushes and closes
    n = read_records(path, recs, 8);
    CHECK_INT(n, 4);
    if (n == 4) check_scalar(&recs[3], 2, "train/loss", 0.75f);

    // An unwritable directory: no file, no crash, training goes on.
    telemetry_run_dir("bad", "/proc/no/such/dir");
    telemetry_scalar("bad", "train/loss", 1, 1.0);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK_INT(system(cmd), 0);
    return check_summary();
}
