// S3 over libcurl. Objects are addressed virtual-hosted style on AWS and path-style
// under an endpoint override (moto, MinIO). Every request carries the SHA-256 of its
// payload (x-amz-content-sha256). XML answers are read with expat.
#include "runner/cloud/s3.h"

#include "runner/cloud/aws.h"
#include "runner/error.h"
#include "runner/log.h"

#include <errno.h>
#include <expat.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MIB = 1 << 20, MAX_PARTS = 10000 };

static const char EMPTY_SHA256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static long long env_bytes(const char *name, long long fallback) {
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end;
    long long x = strtoll(v, &end, 10);
    return (*end || x <= 0) ? fallback : x;
}

int s3_parse_uri(const char *uri, s3_location *loc) {
    memset(loc, 0, sizeof *loc);
    if (!uri || strncmp(uri, "s3://", 5) != 0)
        return error_set(EXIT_USAGE, "%s: not an s3:// URI", uri ? uri : "(null)");
    const char *b = uri + 5, *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    if (blen < 3 || blen >= sizeof loc->bucket)
        return error_set(EXIT_USAGE, "%s: bucket name must have 3 to 63 characters", uri);
    for (size_t i = 0; i < blen; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return error_set(EXIT_USAGE, "%s: invalid bucket name", uri);
    }
    memcpy(loc->bucket, b, blen);
    const char *key = slash ? slash + 1 : "";
    if (strlen(key) >= sizeof loc->key) return error_set(EXIT_USAGE, "%s: key too long", uri);
    snprintf(loc->key, sizeof loc->key, "%s", key);
    return 0;
}

// The URL of an object (or of the bucket when key is ""), with an optional query that
// is already encoded and sorted by name (SigV4's canonical query order).
static int object_url(const s3_location *loc, const char *key, const char *query,
                      const char *region, char *out, size_t n) {
    char base[512];
    bool overridden;
    aws_endpoint("S3", "s3", base, sizeof base, &overridden);
    char *ekey = aws_uri_encode(key, true);
    if (!ekey) return error_set(EXIT_INTERNAL, "out of memory");
    int len;
    if (overridden || strchr(loc->bucket, '.')) // dotted buckets break TLS host names
        len = snprintf(out, n, "%s/%s/%s%s%s", base, loc->bucket, ekey, query ? "?" : "",
                       query ? query : "");
    else
        len = snprintf(out, n, "https://%s.s3.%s.amazonaws.com/%s%s%s", loc->bucket, region,
                       ekey, query ? "?" : "", query ? query : "");
    free(ekey);
    if (len < 0 || (size_t)len >= n) return error_set(EXIT_USAGE, "s3://%s/%s: URL too long",
                                                      loc->bucket, key);
    return 0;
}

// Buckets found in another region than the job's (S3 says so in x-amz-bucket-region).
enum { REGIONS_MAX = 32 };
static pthread_mutex_t regions_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char bucket[64], region[32];
} regions[REGIONS_MAX];
static int region_count;

static void bucket_region(const char *bucket, char *out, size_t n) {
    aws_copy(out, n, aws_region());
    pthread_mutex_lock(&regions_lock);
    for (int i = 0; i < region_count; i++)
        if (strcmp(regions[i].bucket, bucket) == 0) aws_copy(out, n, regions[i].region);
    pthread_mutex_unlock(&regions_lock);
}

static void remember_region(const char *bucket, const char *region) {
    pthread_mutex_lock(&regions_lock);
    int i = 0;
    while (i < region_count && strcmp(regions[i].bucket, bucket) != 0) i++;
    if (i == region_count && region_count < REGIONS_MAX) region_count++;
    if (i < region_count) {
        aws_copy(regions[i].bucket, sizeof regions[i].bucket, bucket);
        aws_copy(regions[i].region, sizeof regions[i].region, region);
    }
    pthread_mutex_unlock(&regions_lock);
}

// Send one S3 request for `key` (and `query`) of loc's bucket: the URL and the signing
// region are the bucket's. A bucket in another region answers 301 (or 400) with
// x-amz-bucket-region: the request is sent again there, and the region remembered.
static int s3_send(const s3_location *loc, const char *key, const char *query,
                   aws_request *req, aws_response *resp, const char *what) {
    char region[32], url[9000];
    bucket_region(loc->bucket, region, sizeof region);
    for (int hop = 0;; hop++) {
        int rc = object_url(loc, key, query, region, url, sizeof url);
        if (rc) return rc;
        req->url = url;
        req->region = region;
        rc = aws_send(req, resp, what);
        req->url = NULL; // url is ours, gone after return
        bool moved = rc == 0 && (resp->status == 301 || resp->status == 307 ||
                                 resp->status == 400) &&
                     resp->bucket_region[0] && strcmp(resp->bucket_region, region) != 0;
        if (!moved || hop == 1) return rc;
        log_info("s3_region", "s3://%s is in %s, not %s: sending there", loc->bucket,
                 resp->bucket_region, region);
        remember_region(loc->bucket, resp->bucket_region);
        aws_copy(region, sizeof region, resp->bucket_region);
    }
}

// A final non-2xx answer -> our exit code: forbidden or missing is the caller's input
// (reads, 3) or output location (writes, 4); anything else is remote I/O.
static int s3_failure(const aws_response *r, bool write, const char *what) {
    const char *code = r->error_code[0] ? r->error_code : "";
    if (r->status == 403 || strcmp(code, "AccessDenied") == 0)
        return error_set(write ? EXIT_OUTPUT : EXIT_BAD_INPUT, "%s: access denied (HTTP %ld %s)",
                         what, r->status, code);
    if (r->status == 404)
        return error_set(write ? EXIT_OUTPUT : EXIT_BAD_INPUT, "%s: not found (%s)", what,
                         code[0] ? code : "HTTP 404");
    return error_set(EXIT_REMOTE_IO, "%s: HTTP %ld %s", what, r->status, code);
}

static int mkdirs_for(const char *path) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            return error_set(EXIT_OUTPUT, "%s: cannot create: %s", dir, strerror(errno));
        *p = '/';
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return error_set(EXIT_OUTPUT, "%s: cannot create: %s", dir, strerror(errno));
    return 0;
}

int s3_get_object(const s3_location *loc, const char *local_path) {
    char what[1400], tmp[PATH_MAX];
    snprintf(what, sizeof what, "GET s3://%s/%s", loc->bucket, loc->key);
    int rc = mkdirs_for(local_path);
    if (rc) return rc;
    if (snprintf(tmp, sizeof tmp, "%s.part-%d", local_path, (int)getpid()) >= (int)sizeof tmp)
        return error_set(EXIT_USAGE, "%s: path too long", local_path);
    aws_request req = {.method = "GET", .service = "s3", .body_fd = -1,
                       .payload_sha256 = EMPTY_SHA256, .sink_path = tmp};
    aws_response resp = {0};
    rc = s3_send(loc, loc->key, NULL, &req, &resp, what);
    if (rc == 0 && resp.status != 200) rc = s3_failure(&resp, false, what);
    if (rc == 0 && rename(tmp, local_path) != 0)
        rc = error_set(EXIT_OUTPUT, "%s: rename to %s: %s", what, local_path, strerror(errno));
    if (rc) unlink(tmp);
    aws_response_free(&resp);
    return rc;
}

int s3_head_object(const s3_location *loc, bool *exists, long long *size) {
    char what[1400];
    snprintf(what, sizeof what, "HEAD s3://%s/%s", loc->bucket, loc->key);
    aws_request req = {.method = "HEAD", .service = "s3", .body_fd = -1,
                       .payload_sha256 = EMPTY_SHA256};
    aws_response resp = {0};
    int rc = s3_send(loc, loc->key, NULL, &req, &resp, what);
    *exists = false;
    if (size) *size = -1;
    if (rc == 0 && resp.status == 200) {
        *exists = true;
        if (size) *size = resp.content_length;
    } else if (rc == 0 && resp.status != 404) {
        rc = s3_failure(&resp, false, what);
    }
    aws_response_free(&resp);
    return rc;
}

int s3_delete_object(const s3_location *loc) {
    char what[1400];
    snprintf(what, sizeof what, "DELETE s3://%s/%s", loc->bucket, loc->key);
    aws_request req = {.method = "DELETE", .service = "s3", .body_fd = -1,
                       .payload_sha256 = EMPTY_SHA256};
    aws_response resp = {0};
    int rc = s3_send(loc, loc->key, NULL, &req, &resp, what);
    if (rc == 0 && resp.status != 204 && resp.status != 200 && resp.status != 404)
        rc = s3_failure(&resp, true, what);
    aws_response_free(&resp);
    return rc;
}

// ---- uploads ----

static struct curl_slist *metadata_headers(const cJSON *metadata) {
    struct curl_slist *headers = NULL;
    const cJSON *item;
    cJSON_ArrayForEach(item, metadata) {
        char value[1024];
        if (cJSON_IsString(item))
            snprintf(value, sizeof value, "%s", item->valuestring);
        else if (cJSON_IsNumber(item))
            snprintf(value, sizeof value, "%.17g", item->valuedouble);
        else if (cJSON_IsBool(item))
            snprintf(value, sizeof value, "%s", cJSON_IsTrue(item) ? "true" : "false");
        else
            continue;
        for (char *c = value; *c; c++) // header values are one printable line
            if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e) *c = '_';
        char name[128];
        size_t k = 0;
        for (const char *c = item->string; *c && k + 1 < sizeof name; c++)
            name[k++] = (*c >= 'A' && *c <= 'Z') ? (char)(*c - 'A' + 'a')
                        : ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                           *c == '_')
                            ? *c
                            : '-';
        name[k] = '\0';
        char line[1300];
        snprintf(line, sizeof line, "x-amz-meta-%s: %s", name, value);
        headers = curl_slist_append(headers, line);
    }
    return headers;
}

static const char *content_type_of(const char *path) {
    const char *dot = strrchr(path, '.');
    if (!dot) return "application/octet-stream";
    if (strcmp(dot, ".json") == 0) return "application/json";
    if (strcmp(dot, ".txt") == 0) return "text/plain; charset=utf-8";
    if (strcmp(dot, ".csv") == 0) return "text/csv; charset=utf-8";
    return "application/octet-stream";
}

static int put_single(int fd, long long size, const s3_location *loc,
                      struct curl_slist *headers, const char *what) {
    char sha[65];
    if (aws_sha256_file_hex(fd, 0, size, sha) != 0)
        return error_set(EXIT_BAD_INPUT, "%s: cannot read the local file", what);
    aws_request req = {.method = "PUT", .service = "s3", .headers = headers, .body_fd = fd,
                       .body_len = (size_t)size, .payload_sha256 = sha};
    aws_response resp = {0};
    int rc = s3_send(loc, loc->key, NULL, &req, &resp, what);
    if (rc == 0 && resp.status != 200) rc = s3_failure(&resp, true, what);
    aws_response_free(&resp);
    return rc;
}

static void abort_upload(const s3_location *loc, const char *upload_id) {
    // Keep the reason of the failure that brought us here, whatever the abort says.
    int code = error_code();
    char message[1024];
    snprintf(message, sizeof message, "%s", error_message());
    char *eid = aws_uri_encode(upload_id, false), query[1200], what[1400];
    snprintf(query, sizeof query, "uploadId=%s", eid ? eid : "");
    free(eid);
    snprintf(what, sizeof what, "AbortMultipartUpload s3://%s/%s", loc->bucket, loc->key);
    aws_request req = {.method = "DELETE", .service = "s3", .body_fd = -1,
                       .payload_sha256 = EMPTY_SHA256};
    aws_response resp = {0};
    if (s3_send(loc, loc->key, query, &req, &resp, what) != 0 ||
        (resp.status != 204 && resp.status != 200))
        log_warn("s3_abort", "%s failed; a lifecycle rule must clean the parts up", what);
    aws_response_free(&resp);
    if (code) error_set(code, "%s", message);
    else error_clear();
}

// The parts of one multipart upload, shared by the threads that send them.
typedef struct {
    pthread_mutex_t lock;
    int fd;
    long long size, part;
    int nparts, next; // next part index to take
    const s3_location *loc;
    const char *eid, *what;
    struct {
        char etag[256];
    } *etags;
    int rc; // first failure, its reason in message
    char message[1024];
} part_upload;

static int send_part(part_upload *up, int i) {
    long long offset = (long long)i * up->part;
    long long len = up->size - offset < up->part ? up->size - offset : up->part;
    char sha[65], part_what[1500], query[1200];
    snprintf(part_what, sizeof part_what, "%s part %d/%d", up->what, i + 1, up->nparts);
    if (aws_sha256_file_hex(up->fd, offset, len, sha) != 0)
        return error_set(EXIT_BAD_INPUT, "%s: cannot read the local file", part_what);
    snprintf(query, sizeof query, "partNumber=%d&uploadId=%s", i + 1, up->eid);
    aws_request put = {.method = "PUT", .service = "s3", .body_fd = up->fd,
                       .body_offset = offset, .body_len = (size_t)len, .payload_sha256 = sha};
    aws_response resp = {0};
    int rc = s3_send(up->loc, up->loc->key, query, &put, &resp, part_what);
    if (rc == 0 && resp.status != 200) rc = s3_failure(&resp, true, part_what);
    if (rc == 0 && !resp.etag[0]) rc = error_set(EXIT_REMOTE_IO, "%s: answer without ETag", part_what);
    if (rc == 0) aws_copy(up->etags[i].etag, sizeof up->etags[i].etag, resp.etag);
    aws_response_free(&resp);
    return rc;
}

static void *part_worker(void *arg) {
    part_upload *up = arg;
    for (;;) {
        pthread_mutex_lock(&up->lock);
        int i = up->rc ? up->nparts : up->next++; // after a failure nobody starts a part
        pthread_mutex_unlock(&up->lock);
        if (i >= up->nparts) return NULL;
        int rc = send_part(up, i);
        if (rc) {
            pthread_mutex_lock(&up->lock);
            if (!up->rc) {
                up->rc = rc;
                aws_copy(up->message, sizeof up->message, error_message());
            }
            pthread_mutex_unlock(&up->lock);
            error_clear();
            return NULL;
        }
    }
}

static int create_upload(const s3_location *loc, struct curl_slist *headers, const char *what,
                         char *upload_id, size_t n) {
    aws_request create = {.method = "POST", .service = "s3", .headers = headers, .body_fd = -1,
                          .payload_sha256 = EMPTY_SHA256};
    aws_response resp = {0};
    int rc = s3_send(loc, loc->key, "uploads=", &create, &resp, what);
    if (rc == 0 && resp.status != 200) rc = s3_failure(&resp, true, what);
    if (rc == 0 && (aws_xml_text(&resp.body, "UploadId", upload_id, n, NULL, 0) || !upload_id[0]))
        rc = error_set(EXIT_REMOTE_IO, "%s: CreateMultipartUpload answer has no UploadId", what);
    aws_response_free(&resp);
    return rc;
}

int s3_probe_write(const s3_location *loc) {
    // Starting a multipart upload needs exactly s3:PutObject on the key, and aborting it
    // leaves nothing behind: a write check without a stray object.
    char what[1400], upload_id[1024];
    snprintf(what, sizeof what, "write check s3://%s/%s", loc->bucket, loc->key);
    int rc = create_upload(loc, NULL, what, upload_id, sizeof upload_id);
    if (rc == 0) abort_upload(loc, upload_id);
    return rc;
}

static int put_multipart(int fd, long long size, const s3_location *loc,
                         struct curl_slist *headers, const char *what) {
    long long part = env_bytes("RUNNER_S3_PART_SIZE", 16LL * MIB);
    if (part < 5LL * MIB && !getenv("RUNNER_S3_PART_SIZE")) part = 5LL * MIB;
    if ((size + part - 1) / part > MAX_PARTS) part = ((size / MAX_PARTS) / MIB + 1) * MIB;
    int nparts = (int)((size + part - 1) / part);

    char query[1200], upload_id[1024];
    int rc = create_upload(loc, headers, what, upload_id, sizeof upload_id);
    if (rc) return rc;

    char *eid = aws_uri_encode(upload_id, false);
    part_upload up = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = fd, .size = size, .part = part,
                      .nparts = nparts, .loc = loc, .eid = eid ? eid : "", .what = what,
                      .etags = calloc((size_t)nparts, sizeof *up.etags)};
    if (!up.etags) rc = error_set(EXIT_INTERNAL, "%s: out of memory", what);
    // Parts go up in parallel (RUNNER_S3_UPLOAD_CONCURRENCY, default 4): a checkpoint
    // written after a spot notice has two minutes, not one connection's bandwidth.
    int threads = (int)env_bytes("RUNNER_S3_UPLOAD_CONCURRENCY", 4);
    if (threads > nparts) threads = nparts;
    if (threads > 16) threads = 16;
    pthread_t tids[16];
    int started = 0;
    for (int t = 0; rc == 0 && t < threads; t++)
        if (pthread_create(&tids[t], NULL, part_worker, &up) == 0) started++;
    if (rc == 0 && started == 0) part_worker(&up); // no threads to be had: do it here
    for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
    if (rc == 0 && up.rc) rc = error_set(up.rc, "%s", up.message);
    aws_buffer complete = {0};
    aws_buffer_append(&complete, "<CompleteMultipartUpload>", 25);
    for (int i = 0; rc == 0 && i < nparts; i++) {
        char entry[512];
        int n = snprintf(entry, sizeof entry,
                         "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i + 1,
                         up.etags[i].etag);
        aws_buffer_append(&complete, entry, (size_t)n);
    }
    free(up.etags);
    aws_buffer_append(&complete, "</CompleteMultipartUpload>", 26);

    if (rc == 0) {
        snprintf(query, sizeof query, "uploadId=%s", eid);
        char sha[65];
        aws_sha256_hex(complete.data, complete.len, sha);
        // CompleteMultipartUpload can answer 200 with an <Error> body: retry those too.
        int tries = (int)env_bytes("RUNNER_AWS_MAX_ATTEMPTS", 5);
        for (int t = 0; rc == 0 && t < tries; t++) {
            aws_request fin = {.method = "POST", .service = "s3", .body_fd = -1,
                               .body = complete.data, .body_len = complete.len,
                               .payload_sha256 = sha};
            struct curl_slist *ct = curl_slist_append(NULL, "Content-Type: application/xml");
            fin.headers = ct;
            aws_response fresp = {0};
            rc = s3_send(loc, loc->key, query, &fin, &fresp, what);
            curl_slist_free_all(ct);
            char root[64] = "", code[128];
            if (rc == 0 && fresp.status != 200) rc = s3_failure(&fresp, true, what);
            else if (rc == 0) aws_xml_text(&fresp.body, "Code", code, sizeof code, root, sizeof root);
            bool error_in_200 = rc == 0 && strcmp(root, "Error") == 0;
            aws_response_free(&fresp);
            if (!error_in_200) break;
            rc = 0;
            if (t + 1 == tries) rc = error_set(EXIT_REMOTE_IO, "%s: CompleteMultipartUpload "
                                                               "failed: %s", what, code);
            else
                log_warn("aws_retry", "%s: CompleteMultipartUpload answered %s; retrying", what,
                         code);
        }
    }
    aws_buffer_free(&complete);
    if (rc) abort_upload(loc, upload_id);
    else
        log_info("s3_multipart", "%s: %d parts of %lld bytes", what, nparts, part);
    free(eid);
    return rc;
}

int s3_put_file(const char *local_path, const s3_location *loc, const cJSON *metadata) {
    char what[1400];
    snprintf(what, sizeof what, "PUT s3://%s/%s", loc->bucket, loc->key);
    int fd = open(local_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error_set(EXIT_BAD_INPUT, "%s: cannot open %s: %s", what, local_path,
                                 strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return error_set(EXIT_BAD_INPUT, "%s: %s is not a regular file", what, local_path);
    }
    struct curl_slist *headers = metadata_headers(metadata);
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type_of(local_path));
    headers = curl_slist_append(headers, ct);
    long long threshold = env_bytes("RUNNER_S3_MULTIPART_THRESHOLD", 64LL * MIB);
    int rc;
    if ((long long)st.st_size > threshold) {
        rc = put_multipart(fd, (long long)st.st_size, loc, headers, what);
    } else {
        rc = put_single(fd, (long long)st.st_size, loc, headers, what);
    }
    curl_slist_free_all(headers);
    close(fd);
    return rc;
}

// ---- listing ----

typedef struct {
    char **keys;
    long long *sizes;
    size_t count, cap;
    char text[2048];
    size_t text_len;
    bool in_contents;
    char key[2048];
    long long size;
    bool truncated;
    char next_token[2048];
} list_page;

static void list_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
    (void)attrs;
    list_page *p = ud;
    p->text_len = 0;
    p->text[0] = '\0';
    if (strcmp(name, "Contents") == 0) {
        p->in_contents = true;
        p->key[0] = '\0';
        p->size = 0;
    }
}

static void list_text(void *ud, const XML_Char *s, int len) {
    list_page *p = ud;
    for (int i = 0; i < len && p->text_len + 1 < sizeof p->text; i++) p->text[p->text_len++] = s[i];
    p->text[p->text_len] = '\0';
}

static void list_end(void *ud, const XML_Char *name) {
    list_page *p = ud;
    if (p->in_contents && strcmp(name, "Key") == 0) {
        // encoding-type=url: form encoding, so '+' is a space and "%2B" a plus.
        for (char *c = p->text; *c; c++)
            if (*c == '+') *c = ' ';
        int len = 0;
        char *key = curl_easy_unescape(NULL, p->text, 0, &len);
        aws_copy(p->key, sizeof p->key, key ? key : p->text);
        curl_free(key);
    } else if (p->in_contents && strcmp(name, "Size") == 0) {
        p->size = strtoll(p->text, NULL, 10);
    } else if (strcmp(name, "Contents") == 0) {
        p->in_contents = false;
        if (p->count == p->cap) {
            size_t cap = p->cap ? 2 * p->cap : 64;
            char **keys = realloc(p->keys, cap * sizeof *keys);
            if (keys) p->keys = keys;
            long long *sizes = realloc(p->sizes, cap * sizeof *sizes);
            if (sizes) p->sizes = sizes;
            if (!keys || !sizes) return;
            p->cap = cap;
        }
        p->keys[p->count] = strdup(p->key);
        p->sizes[p->count] = p->size;
        if (p->keys[p->count]) p->count++;
    } else if (!p->in_contents && strcmp(name, "IsTruncated") == 0) {
        p->truncated = strcmp(p->text, "true") == 0;
    } else if (!p->in_contents && strcmp(name, "NextContinuationToken") == 0) {
        snprintf(p->next_token, sizeof p->next_token, "%s", p->text);
    }
    p->text_len = 0;
    p->text[0] = '\0';
}

static void list_page_free(list_page *p) {
    for (size_t i = 0; i < p->count; i++) free(p->keys[i]);
    free(p->keys);
    free(p->sizes);
}

int s3_list(const s3_location *prefix, int (*each)(const char *key, long long size, void *ud),
            void *ud) {
    char what[1400], token[2048] = "";
    snprintf(what, sizeof what, "ListObjectsV2 s3://%s/%s", prefix->bucket, prefix->key);
    long long page_size = env_bytes("RUNNER_S3_LIST_PAGE", 1000);
    char *eprefix = aws_uri_encode(prefix->key, false);
    int rc = 0, pages = 0;
    do {
        // Parameters in SigV4 canonical order: continuation-token, encoding-type,
        // list-type, max-keys, prefix. Keys come back URL-encoded (any byte a key may
        // hold survives XML that way) and are decoded in list_end().
        char query[6400] = "";
        if (token[0]) {
            char *etoken = aws_uri_encode(token, false);
            snprintf(query, sizeof query, "continuation-token=%s&", etoken ? etoken : "");
            free(etoken);
        }
        size_t used = strlen(query);
        snprintf(query + used, sizeof query - used,
                 "encoding-type=url&list-type=2&max-keys=%lld&prefix=%s", page_size,
                 eprefix ? eprefix : "");
        aws_request req = {.method = "GET", .service = "s3", .body_fd = -1,
                           .payload_sha256 = EMPTY_SHA256};
        aws_response resp = {0};
        rc = s3_send(prefix, "", query, &req, &resp, what);
        if (rc == 0 && resp.status != 200) rc = s3_failure(&resp, false, what);
        list_page page = {0};
        if (rc == 0) {
            XML_Parser parser = XML_ParserCreate(NULL);
            XML_SetUserData(parser, &page);
            XML_SetElementHandler(parser, list_start, list_end);
            XML_SetCharacterDataHandler(parser, list_text);
            if (XML_Parse(parser, resp.body.data, (int)resp.body.len, 1) != XML_STATUS_OK)
                rc = error_set(EXIT_REMOTE_IO, "%s: unreadable answer: %s", what,
                               XML_ErrorString(XML_GetErrorCode(parser)));
            XML_ParserFree(parser);
        }
        aws_response_free(&resp);
        for (size_t i = 0; rc == 0 && i < page.count; i++) rc = each(page.keys[i], page.sizes[i], ud);
        if (rc == 0 && page.truncated && !page.next_token[0])
            rc = error_set(EXIT_REMOTE_IO, "%s: truncated page without a continuation token", what);
        snprintf(token, sizeof token, "%s", page.truncated ? page.next_token : "");
        list_page_free(&page);
        pages++;
    } while (rc == 0 && token[0]);
    free(eprefix);
    if (rc == 0) log_debug("s3_list", "%s: %d pages", what, pages);
    return rc;
}
