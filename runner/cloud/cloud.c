// cloud.h's file-level operations: fetch an input (one object or a whole prefix) and
// upload a tree of artefacts in the same layout.
#include "runner/cloud/cloud.h"

#include "runner/cloud/aws.h"
#include "runner/cloud/s3.h"
#include "runner/error.h"
#include "runner/log.h"

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

bool cloud_is_remote(const char *uri) { return uri && strncmp(uri, "s3://", 5) == 0; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int cloud_fetch(const char *uri, const char *local_path) {
    if (!cloud_is_remote(uri)) return 0;
    s3_location loc;
    int rc = s3_parse_uri(uri, &loc);
    if (rc) return rc;
    if (!loc.key[0] || loc.key[strlen(loc.key) - 1] == '/')
        return error_set(EXIT_USAGE, "%s: names a prefix, not an object", uri);
    double t0 = now_s();
    rc = s3_get_object(&loc, local_path);
    if (rc == 0) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "uri", uri);
        cJSON_AddStringToObject(f, "path", local_path);
        cJSON_AddNumberToObject(f, "seconds", now_s() - t0);
        log_fields(LOG_INFO, "s3_fetch", f);
    }
    return rc;
}

// A key relative to the listed prefix must stay inside local_dir.
static bool relative_path_safe(const char *rel) {
    if (!*rel || rel[0] == '/') return false;
    for (const char *p = rel; p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if ((len == 2 && p[0] == '.' && p[1] == '.') || (len == 1 && p[0] == '.')) return false;
        p = slash ? slash + 1 : NULL;
    }
    return true;
}

typedef struct {
    s3_location src;
    const char *local_dir;
    size_t prefix_len;
    int files;
    long long bytes;
} prefix_fetch;

static int fetch_one(const char *key, long long size, void *ud) {
    prefix_fetch *pf = ud;
    const char *rel = key + pf->prefix_len;
    if (!*rel || rel[strlen(rel) - 1] == '/') return 0; // "folder" markers
    if (!relative_path_safe(rel)) {
        log_warn("s3_fetch", "skipping s3://%s/%s: its name leaves the target directory",
                 pf->src.bucket, key);
        return 0;
    }
    char local[PATH_MAX];
    if (snprintf(local, sizeof local, "%s/%s", pf->local_dir, rel) >= (int)sizeof local)
        return error_set(EXIT_USAGE, "%s/%s: path too long", pf->local_dir, rel);
    s3_location obj = pf->src;
    aws_copy(obj.key, sizeof obj.key, key);
    int rc = s3_get_object(&obj, local);
    if (rc == 0) pf->files++, pf->bytes += size;
    return rc;
}

int cloud_fetch_prefix(const char *uri, const char *local_dir) {
    if (!cloud_is_remote(uri)) return 0;
    prefix_fetch pf = {.local_dir = local_dir};
    int rc = s3_parse_uri(uri, &pf.src);
    if (rc) return rc;
    // "s3://b/data" means the folder data/: never data2/...
    size_t len = strlen(pf.src.key);
    if (len && pf.src.key[len - 1] != '/') {
        if (len + 1 >= sizeof pf.src.key) return error_set(EXIT_USAGE, "%s: key too long", uri);
        pf.src.key[len++] = '/';
        pf.src.key[len] = '\0';
    }
    pf.prefix_len = len;
    double t0 = now_s();
    rc = s3_list(&pf.src, fetch_one, &pf);
    if (rc == 0 && pf.files == 0)
        rc = error_set(EXIT_BAD_INPUT, "%s: no objects under this prefix", uri);
    if (rc == 0) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "uri", uri);
        cJSON_AddStringToObject(f, "path", local_dir);
        cJSON_AddNumberToObject(f, "files", pf.files);
        cJSON_AddNumberToObject(f, "bytes", (double)pf.bytes);
        cJSON_AddNumberToObject(f, "seconds", now_s() - t0);
        log_fields(LOG_INFO, "s3_fetch", f);
    }
    return rc;
}

int cloud_upload_file(const char *local_path, const char *uri, const cJSON *metadata) {
    s3_location loc;
    int rc = s3_parse_uri(uri, &loc);
    if (rc) return rc;
    if (!loc.key[0] || loc.key[strlen(loc.key) - 1] == '/')
        return error_set(EXIT_USAGE, "%s: names a prefix, not an object", uri);
    return s3_put_file(local_path, &loc, metadata);
}

// nftw() takes no user pointer: the walk's state lives here, one walk per thread.
static _Thread_local struct {
    s3_location dst;
    size_t dst_len, root_len;
    const cJSON *metadata;
    int files, rc;
    long long bytes;
} walk;

static int upload_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)ftw;
    if (type != FTW_F || !S_ISREG(st->st_mode)) return 0;
    const char *rel = path + walk.root_len;
    while (*rel == '/') rel++;
    s3_location obj = walk.dst;
    if (walk.dst_len + strlen(rel) >= sizeof obj.key) {
        walk.rc = error_set(EXIT_USAGE, "%s: S3 key too long", path);
        return 1;
    }
    memcpy(obj.key + walk.dst_len, rel, strlen(rel) + 1);
    walk.rc = s3_put_file(path, &obj, walk.metadata);
    if (walk.rc) return 1;
    walk.files++;
    walk.bytes += (long long)st->st_size;
    return 0;
}

int cloud_upload_tree(const char *local_dir, const char *uri, const cJSON *metadata) {
    struct stat st;
    if (stat(local_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return error_set(EXIT_BAD_INPUT, "%s: not a directory to upload", local_dir);
    memset(&walk, 0, sizeof walk);
    int rc = s3_parse_uri(uri, &walk.dst);
    if (rc) return rc;
    size_t len = strlen(walk.dst.key);
    if (len && walk.dst.key[len - 1] != '/') {
        if (len + 1 >= sizeof walk.dst.key) return error_set(EXIT_USAGE, "%s: key too long", uri);
        walk.dst.key[len++] = '/';
        walk.dst.key[len] = '\0';
    }
    walk.dst_len = len;
    walk.root_len = strlen(local_dir);
    walk.metadata = metadata;
    double t0 = now_s();
    int walked = nftw(local_dir, upload_entry, 16, FTW_PHYS);
    rc = walk.rc;
    if (rc == 0 && walked != 0)
        rc = error_set(EXIT_BAD_INPUT, "%s: cannot walk the directory", local_dir);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "path", local_dir);
    cJSON_AddStringToObject(f, "uri", uri);
    cJSON_AddNumberToObject(f, "files", walk.files);
    cJSON_AddNumberToObject(f, "bytes", (double)walk.bytes);
    cJSON_AddNumberToObject(f, "seconds", now_s() - t0);
    if (rc) cJSON_AddStringToObject(f, "error", error_message());
    log_fields(rc ? LOG_ERROR : LOG_INFO, "s3_upload", f);
    return rc;
}
