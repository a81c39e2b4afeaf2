// Atomic file writes, directory creation, checksums and guarded tree removal.
#include "runner/job/files.h"

#include "runner/error.h"
#include "runner/fault.h"
#include "runner/log.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

int files_join(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) return error_set(EXIT_USAGE, "path too long: %.80s...", out);
    return 0;
}

int files_mkdirs(const char *path) {
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof buf) return error_set(EXIT_OUTPUT, "path too long: %s", path);
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return error_set(EXIT_OUTPUT, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return error_set(EXIT_OUTPUT, "%s: cannot create directory: %s", buf, strerror(errno));
    if (!files_is_dir(buf)) return error_set(EXIT_OUTPUT, "%s: not a directory", buf);
    return 0;
}

int files_sync_parent(const char *path) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else strcpy(dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return error_set(EXIT_OUTPUT, "%s: cannot open directory: %s", dir, strerror(errno));
    fsync(fd); // best effort: some file systems refuse fsync on directories
    close(fd);
    return 0;
}

static int write_atomic(const char *path, const void *const *parts, const size_t *lens,
                        int nparts, mode_t mode);

int files_write_atomic(const char *path, const void *data, size_t len) {
    return write_atomic(path, &data, &len, 1, 0644);
}

int files_write_private(const char *path, const void *data, size_t len) {
    return write_atomic(path, &data, &len, 1, 0600);
}

int files_write_atomic_parts(const char *path, const void *const *parts, const size_t *lens,
                             int nparts) {
    return write_atomic(path, parts, lens, nparts, 0644);
}

static int write_atomic(const char *path, const void *const *parts, const size_t *lens,
                        int nparts, mode_t mode) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return error_set(EXIT_OUTPUT, "path too long: %s", path);
    // Errors name the file the job could not write, not its temporary (removed).
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) return error_set(EXIT_OUTPUT, "%s: cannot write: %s", path, strerror(errno));
    // A leftover temporary of a killed run keeps its old mode through O_TRUNC: set it.
    if (fchmod(fd, mode) != 0) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return error_set(EXIT_OUTPUT, "%s: cannot write: %s", path, strerror(err));
    }
    // The test-only fault point "file_write" sits half way through the bytes (fault.h).
    size_t total = 0, done = 0;
    for (int part = 0; part < nparts; part++) total += lens[part];
    bool halfway = false;
    for (int part = 0; part < nparts; part++) {
        const char *p = parts[part];
        size_t left = lens[part];
        while (left > 0) {
            size_t chunk = left;
            if (!halfway && done < total / 2 && done + chunk > total / 2) chunk = total / 2 - done;
            ssize_t n = write(fd, p, chunk);
            if (n < 0) {
                if (errno == EINTR) continue;
                int err = errno;
                close(fd);
                unlink(tmp);
                return error_set(EXIT_OUTPUT, "%s: write failed: %s", path, strerror(err));
            }
            p += n;
            left -= (size_t)n;
            done += (size_t)n;
            if (!halfway && done >= total / 2) {
                halfway = true;
                fault_point("file_write", path);
            }
        }
    }
    if (!halfway) fault_point("file_write", path); // an empty file
    // Both always run: a failed fsync must not leave the descriptor open.
    int sync_err = fsync(fd) == 0 ? 0 : errno;
    int close_err = close(fd) == 0 ? 0 : errno;
    if (sync_err || close_err) {
        unlink(tmp);
        return error_set(EXIT_OUTPUT, "%s: %s failed: %s", path, sync_err ? "fsync" : "close",
                         strerror(sync_err ? sync_err : close_err));
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return error_set(EXIT_OUTPUT, "%s: rename failed: %s", path, strerror(err));
    }
    return files_sync_parent(path);
}

int files_write_text(const char *path, const char *text) {
    return files_write_atomic(path, text, strlen(text));
}

int files_write_json(const char *path, cJSON *json) {
    char *text = cJSON_Print(json);
    cJSON_Delete(json);
    if (!text) return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    int rc = files_write_text(path, text);
    free(text);
    return rc;
}

int files_read_all(const char *path, char **out, size_t *len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(EXIT_BAD_INPUT, "%s: cannot read: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                fclose(f);
                return error_set(EXIT_RESOURCES, "%s: out of memory", path);
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return error_set(EXIT_BAD_INPUT, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return 0;
}

bool files_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool files_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int files_crc32(const char *path, uint32_t *crc, uint64_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(EXIT_BAD_INPUT, "%s: cannot read: %s", path, strerror(errno));
    uLong c = crc32(0L, Z_NULL, 0);
    uint64_t total = 0;
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        c = crc32(c, buf, (uInt)got);
        total += got;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) return error_set(EXIT_BAD_INPUT, "%s: read error", path);
    *crc = (uint32_t)c;
    if (size) *size = total;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int files_remove_tree(const char *path, const char *prefix) {
    char real_path[PATH_MAX], real_prefix[PATH_MAX];
    if (!realpath(path, real_path)) return 0; // already gone
    if (!realpath(prefix, real_prefix))
        return error_set(EXIT_INTERNAL, "%s: output prefix does not exist", prefix);
    size_t n = strlen(real_prefix);
    if (strncmp(real_path, real_prefix, n) != 0 || real_path[n] != '/')
        return error_set(EXIT_INTERNAL, "refusing to delete %s: outside the run's output %s",
                         real_path, real_prefix);
    if (nftw(real_path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return error_set(EXIT_OUTPUT, "%s: cannot remove: %s", real_path, strerror(errno));
    return 0;
}

// Whether `name` ends in ".tmp." and the suffix of one of the atomic writers: a pid
// (files_write_atomic_parts) or mkostemp's six letters and digits.
static bool is_temporary_name(const char *name) {
    const char *mark = strstr(name, ".tmp.");
    for (const char *next = mark; next; next = strstr(mark + 1, ".tmp."))
        mark = next;
    if (!mark || mark == name) return false;
    const char *suffix = mark + 5;
    size_t n = strlen(suffix);
    bool digits = n > 0 && n <= 10, alnum = n == 6;
    for (size_t i = 0; i < n; i++) {
        digits &= isdigit((unsigned char)suffix[i]) != 0;
        alnum &= isalnum((unsigned char)suffix[i]) != 0;
    }
    return digits || alnum;
}

// nftw() takes no user pointer: the sweep's state, one sweep per thread.
static _Thread_local struct {
    int removed;
    int rc;
} sweep;

static int sweep_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    if (type != FTW_F || !S_ISREG(st->st_mode) || !is_temporary_name(path + ftw->base)) return 0;
    if (unlink(path) != 0) {
        sweep.rc = error_set(EXIT_OUTPUT, "%s: cannot remove a stale temporary: %s", path,
                             strerror(errno));
        return 1;
    }
    sweep.removed++;
    log_info("temporary_removed", "%s: left half written by an attempt that was killed", path);
    return 0;
}

int files_remove_temporaries(const char *root) {
    if (!files_is_dir(root)) return 0;
    sweep.removed = 0;
    sweep.rc = 0;
    if (nftw(root, sweep_entry, 16, FTW_PHYS) != 0 && sweep.rc == 0)
        sweep.rc = error_set(EXIT_OUTPUT, "%s: cannot walk the directory: %s", root,
                             strerror(errno));
    return sweep.rc ? -1 : sweep.removed;
}
