// Rank 0's checkpoint copied to the ranks that hold none of it (see checkpoint_internal.h):
// over the training group's own broadcast, so no other channel (a shared disk, S3,
// ssh) is needed between nodes whose outputs are their own.
#include "runner/job/checkpoint_internal.h"

#include "runner/error.h"
#include "runner/job/files.h"
#include "runner/log.h"
#include "runner/timing.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

// The files travel in pieces of this size: none is ever held whole in memory (state.bin
// of a large model is gigabytes).
enum { PIECE = 16 << 20, HEADER_MAX = 1 << 16 };
enum { REPLICA_FILES = CHECKPOINT_NFILES + 1 }; // and manifest.json, the last

static const char *replica_file(int i) {
    return i < CHECKPOINT_NFILES ? CHECKPOINT_FILES[i] : "manifest.json";
}

static int from_root(const resume_ops *g, void *bytes, size_t n) {
    return g->broadcast(g->ctx, bytes, n, 0);
}

// This rank's part of the copy.
typedef struct {
    const char *dir;
    char ck[PATH_MAX], staging[PATH_MAX];
    bool receives; // it holds no valid copy: it takes one
    bool writes;   // it writes the copy (it took the folder's lock, or there is none)
    int lock;      // the folder, flock()ed; -1: none
    bool ok;       // so far: sent (rank 0), stored (a writer), placed (a receiver)
    char reason[600]; // the first failure
    uint64_t bytes;
} part;

// Keep the first failure's reason (error_message()) and clear the error.
static void fail(part *p) {
    if (p->ok || !p->reason[0])
        snprintf(p->reason, sizeof p->reason, "%s",
                 error_message()[0] ? error_message() : "failed");
    p->ok = false;
    error_clear();
}

// Rank 0: the header (JSON: every file's name and size; empty when a file cannot be
// opened, and then nothing follows), then each file's bytes in header order, the
// manifest last. A file that cannot be read to its end goes on as zeros, so that every
// rank still runs the same broadcasts; the receivers' checksums then fail. 0 or the
// broadcast's exit code.
static int send_files(const resume_ops *g, part *p, unsigned char *piece) {
    FILE *f[REPLICA_FILES] = {0};
    uint64_t size[REPLICA_FILES] = {0};
    cJSON *header = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(header, "files");
    for (int i = 0; i < REPLICA_FILES && p->ok; i++) {
        char path[PATH_MAX];
        struct stat sb;
        if (files_join(path, sizeof path, "%s/%s", p->ck, replica_file(i))) {
            fail(p);
        } else if (!(f[i] = fopen(path, "rb")) || fstat(fileno(f[i]), &sb) != 0) {
            error_set(EXIT_OUTPUT, "%s: cannot open: %s", path, strerror(errno));
            fail(p);
        } else {
            size[i] = (uint64_t)sb.st_size;
            cJSON *file = cJSON_CreateObject();
            cJSON_AddStringToObject(file, "name", replica_file(i));
            cJSON_AddNumberToObject(file, "size", (double)size[i]);
            cJSON_AddItemToArray(list, file);
        }
    }
    char *text = p->ok ? cJSON_PrintUnformatted(header) : NULL;
    cJSON_Delete(header);
    if (p->ok && !text) {
        error_set(EXIT_RESOURCES, "out of memory");
        fail(p);
    }
    uint64_t len = text ? strlen(text) : 0;
    int rc = from_root(g, &len, sizeof len);
    if (rc == 0 && len) rc = from_root(g, text, len);
    free(text);
    for (int i = 0; rc == 0 && len && i < REPLICA_FILES; i++) {
        for (uint64_t done = 0; rc == 0 && done < size[i];) {
            size_t n = size[i] - done < PIECE ? (size_t)(size[i] - done) : PIECE;
            if (p->ok && fread(piece, 1, n, f[i]) != n) {
                error_set(EXIT_OUTPUT, "%s/%s: cannot read: %s", p->ck, replica_file(i),
                          ferror(f[i]) ? strerror(errno) : "shorter than it was");
                fail(p);
            }
            if (!p->ok) memset(piece, 0, n);
            rc = from_root(g, piece, n);
            done += n;
        }
        p->bytes += size[i];
    }
    for (int i = 0; i < REPLICA_FILES; i++)
        if (f[i]) fclose(f[i]);
    return rc;
}

// The header's sizes: exactly the files replica_file() names, in its order.
static int parse_header(const char *text, uint64_t *size) {
    cJSON *header = cJSON_Parse(text);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(header, "files");
    bool ok = cJSON_IsArray(list) && cJSON_GetArraySize(list) == REPLICA_FILES;
    for (int i = 0; ok && i < REPLICA_FILES; i++) {
        const cJSON *file = cJSON_GetArrayItem(list, i);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(file, "name");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(file, "size");
        ok = cJSON_IsString(name) && strcmp(name->valuestring, replica_file(i)) == 0 &&
             cJSON_IsNumber(n) && n->valuedouble >= 0 && n->valuedouble < 9007199254740992.0 &&
             floor(n->valuedouble) == n->valuedouble;
        if (ok) size[i] = (uint64_t)n->valuedouble;
    }
    cJSON_Delete(header);
    // Rank 0 runs this same program: a header it cannot have sent leaves the ranks
    // unable to tell how many broadcasts follow.
    return ok ? 0 : error_set(EXIT_INTERNAL, "rank 0's list of checkpoint files is not one "
                              "this program sends: %.200s", text);
}

static bool write_all(int fd, const unsigned char *at, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, at, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        at += w;
        n -= (size_t)w;
    }
    return true;
}

// The other ranks: the header and every file; a writer stores them in p->staging, each
// file fsynced, the manifest last, then the folder's entries. 0 or an exit code that
// leaves the ranks out of step (the job ends; the others fail with 83).
static int receive_files(const resume_ops *g, part *p, unsigned char *piece) {
    uint64_t len = 0;
    int rc = from_root(g, &len, sizeof len);
    if (rc) return rc;
    if (len == 0) { // rank 0 could not open its files (its own line says why)
        if (p->receives) {
            error_set(EXIT_OUTPUT, "rank 0 sent no files");
            fail(p);
        }
        return 0;
    }
    if (len > HEADER_MAX)
        return error_set(EXIT_INTERNAL, "rank 0's list of checkpoint files is %llu bytes long",
                         (unsigned long long)len);
    char *text = malloc(len + 1);
    if (!text) return error_set(EXIT_RESOURCES, "out of memory");
    rc = from_root(g, text, len);
    text[len] = '\0';
    uint64_t size[REPLICA_FILES];
    if (rc == 0) rc = parse_header(text, size);
    free(text);
    bool stores = p->writes && p->ok;
    char path[PATH_MAX];
    for (int i = 0; rc == 0 && i < REPLICA_FILES; i++) {
        int fd = -1;
        if (stores && files_join(path, sizeof path, "%s/%s", p->staging, replica_file(i))) {
            fail(p);
            stores = false;
        } else if (stores &&
                   (fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
            error_set(EXIT_OUTPUT, "%s: cannot write: %s", path, strerror(errno));
            fail(p);
            stores = false;
        }
        for (uint64_t done = 0; rc == 0 && done < size[i];) {
            size_t n = size[i] - done < PIECE ? (size_t)(size[i] - done) : PIECE;
            rc = from_root(g, piece, n);
            if (rc == 0 && fd >= 0 && !write_all(fd, piece, n)) {
                error_set(EXIT_OUTPUT, "%s: write failed: %s", path, strerror(errno));
                fail(p);
                close(fd);
                fd = -1;
                stores = false;
            }
            done += n;
        }
        if (fd >= 0) {
            // Both always run: a failed fsync must not leave the descriptor open.
            int sync_err = fsync(fd) == 0 ? 0 : errno;
            int close_err = close(fd) == 0 ? 0 : errno;
            if (sync_err || close_err) {
                error_set(EXIT_OUTPUT, "%s: %s failed: %s", path, sync_err ? "fsync" : "close",
                          strerror(sync_err ? sync_err : close_err));
                fail(p);
                stores = false;
            }
        }
        p->bytes += size[i];
    }
    if (rc == 0 && stores && files_sync_parent(path) != 0) fail(p);
    return rc;
}

// The validated copy at p->staging becomes p->ck. A copy there failed validation under
// the folder's lock: another run's is set aside (kept, as checkpoint_save does), any
// other damaged one removed once the new one is in place; a valid one is never touched
// (the caller found none).
static int put_in_place(part *p, const train_state *st) {
    char aside[PATH_MAX];
    bool moved = false;
    int rc = files_join(aside, sizeof aside, "%s.damaged", p->staging);
    if (rc == 0 && files_exists(p->ck)) rc = checkpoint_set_aside(p->ck, st->fingerprint);
    if (rc == 0 && files_exists(p->ck)) {
        if (files_exists(aside) && files_remove_tree(aside, p->dir) != 0) error_clear();
        if (rename(p->ck, aside) != 0)
            rc = error_set(EXIT_OUTPUT, "%s: cannot move the damaged copy aside: %s", p->ck,
                           strerror(errno));
        moved = rc == 0;
    }
    if (rc == 0 && rename(p->staging, p->ck) != 0)
        rc = error_set(EXIT_OUTPUT, "%s: cannot rename %s to it: %s", p->ck, p->staging,
                       strerror(errno));
    if (rc == 0) rc = files_sync_parent(p->ck);
    if (moved && files_remove_tree(aside, p->dir) != 0) {
        log_warn("checkpoint_delete_failed", "%s: %s", aside, error_message());
        error_clear();
    }
    return rc;
}

// A receiver after the transfer, holding the folder's lock: the copy in place, validated
// (*loaded), or p->ok false. *written: this rank wrote it (not a rank sharing the folder).
static void settle(part *p, const bert_model *m, const train_state *st, train_state *loaded,
                   bool *written) {
    *written = false;
    // A rank that shares this folder may have put it in place already: never rewritten.
    if (files_exists(p->ck) && checkpoint_validate(p->ck, m, st, loaded) == 0) {
        p->ok = true;
        return;
    }
    error_clear();
    if (!p->writes) {
        error_set(EXIT_OUTPUT, "%s: no valid copy after the rank sharing this folder wrote it",
                  p->ck);
        fail(p);
        return;
    }
    if (!p->ok) return;
    // Checked as any checkpoint: what arrived is what rank 0 holds, bit for bit.
    if (checkpoint_validate(p->staging, m, st, loaded) != 0) {
        fail(p);
        return;
    }
    if (put_in_place(p, st) != 0) {
        train_state_free(loaded);
        fail(p);
        // Raced by a writer of this folder without a lock: its copy is as good.
        if (files_exists(p->ck) && checkpoint_validate(p->ck, m, st, loaded) == 0) p->ok = true;
        else error_clear();
        return;
    }
    *written = true;
}

static void log_replicated(const part *p, long step, double seconds, bool written) {
    cJSON *f = cJSON_CreateObject();
    char msg[PATH_MAX + 200];
    snprintf(msg, sizeof msg, "%s: rank 0's checkpoint-%ld, %llu bytes in %.2f s, %s", p->ck,
             step, (unsigned long long)p->bytes, seconds,
             written ? "written and validated" : "already in place (a rank sharing this folder "
                                                 "wrote it), validated");
    cJSON_AddStringToObject(f, "msg", msg);
    cJSON_AddNumberToObject(f, "step", (double)step);
    cJSON_AddNumberToObject(f, "bytes", (double)p->bytes);
    cJSON_AddNumberToObject(f, "seconds", round(seconds * 1000) / 1000);
    cJSON_AddBoolToObject(f, "written", written);
    log_fields(LOG_INFO, "checkpoint_replicated", f);
}

// Make p->staging afresh (a copy killed half way leaves one) and decide who writes.
static void prepare(part *p) {
    // Workers of one node that share this folder and all lack the step receive the copy
    // together: the one that takes the lock writes, the others wait for it after the
    // transfer (blocking now would stall the broadcasts) and find the copy in place.
    // flock on the folder itself leaves no lock file behind; without flock (some network
    // file systems) every such rank writes its own staging folder, and the first rename
    // wins.
    p->lock = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    p->writes = true;
    if (p->lock >= 0 && flock(p->lock, LOCK_EX | LOCK_NB) != 0) {
        p->writes = errno != EWOULDBLOCK;
        if (p->writes) { // no flock here
            close(p->lock);
            p->lock = -1;
        }
    }
    if (!p->writes) return;
    if (files_exists(p->staging) && files_remove_tree(p->staging, p->dir) != 0) fail(p);
    else if (files_mkdirs(p->staging) != 0) fail(p);
}

int checkpoint_replicate(const resume_ops *g, const char *dir, long step, const long *held,
                         const bert_model *m, const train_state *st, int keep,
                         checkpoint_replica *out) {
    memset(out, 0, sizeof *out);
    part p = {.dir = dir, .lock = -1, .ok = true};
    p.receives = held[g->rank] != RESUME_HOLDS_VALID;
    bool named = files_join(p.ck, sizeof p.ck, "%s/checkpoint-%ld", dir, step) == 0 &&
                 files_join(p.staging, sizeof p.staging, "%s/checkpoint-%ld.replica-%d", dir,
                            step, g->rank) == 0;
    if (!named) fail(&p);
    unsigned char *piece = malloc(PIECE);
    if (!piece) return error_set(EXIT_RESOURCES, "out of memory copying a checkpoint");
    if (p.receives && p.ok) prepare(&p);
    double started = timing_now_s();
    int rc = g->rank == 0 ? send_files(g, &p, piece) : receive_files(g, &p, piece);
    free(piece);
    bool written = false;
    if (rc == 0 && p.receives && named) {
        if (p.lock >= 0 && !p.writes) flock(p.lock, LOCK_EX); // the writer is done
        settle(&p, m, st, &out->state, &written);
        if (p.ok) log_replicated(&p, step, timing_now_s() - started, written);
    }
    if (p.writes && files_exists(p.staging) && files_remove_tree(p.staging, dir) != 0)
        error_clear();
    if (p.lock >= 0) close(p.lock); // and with it the lock
    if (rc) return rc;
    out->received = p.receives && p.ok;
    if (!p.ok)
        log_warn("checkpoint_replication_failed", "%s: rank 0's checkpoint-%ld not %s: %s",
                 p.ck, step, g->rank == 0 ? "sent" : "stored", p.reason);
    // Every rank resumes the step only if every rank now holds it valid.
    long *all = calloc((size_t)g->world, sizeof *all);
    if (!all) rc = error_set(EXIT_RESOURCES, "out of memory");
    if (rc == 0) rc = g->exchange(g->ctx, p.ok ? 1 : 0, all);
    out->everywhere = rc == 0;
    for (int k = 0; rc == 0 && k < g->world; k++) out->everywhere &= all[k] == 1;
    free(all);
    // Where this rank wrote the copy, the older ones it holds rotate by save_total_limit
    // as rank 0's do, so that every interruption does not leave one more on each node.
    if (out->everywhere && written && keep > 0)
        checkpoint_rotate(dir, step, out->state.best_step, keep, st->fingerprint);
    if (rc && out->received) {
        train_state_free(&out->state);
        out->received = false;
    }
    return rc;
}
