// The request engine of runner/cloud: libcurl signs (CURLOPT_AWS_SIGV4), we add the
// payload hash and the session token, classify the answer and retry what AWS says is
// retryable, with exponential backoff and full jitter (the AWS SDKs' "standard" mode).
#include "runner/cloud/aws.h"

#include "runner/error.h"
#include "runner/log.h"
#include "runner/timing.h"

#include <ctype.h>
#include <errno.h>
#include <expat.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int aws_buffer_append(aws_buffer *b, const void *data, size_t len) {
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len + 1) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) return -1;
        b->data = grown;
        b->cap = cap;
    }
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

void aws_buffer_free(aws_buffer *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void aws_response_free(aws_response *resp) { aws_buffer_free(&resp->body); }

void aws_copy(char *dst, size_t n, const char *src) {
    size_t len = strnlen(src, n - 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
}

const char *aws_region(void) {
    const char *r = getenv("AWS_REGION");
    if (!r || !*r) r = getenv("AWS_DEFAULT_REGION");
    if (!r || !*r) r = aws_profile_region();
    return (r && *r) ? r : "us-east-1";
}

void aws_endpoint(const char *env_suffix, const char *host_prefix, char *out, size_t n,
                  bool *overridden) {
    aws_endpoint_in(env_suffix, host_prefix, aws_region(), out, n, overridden);
}

void aws_endpoint_in(const char *env_suffix, const char *host_prefix, const char *region,
                     char *out, size_t n, bool *overridden) {
    char name[96];
    snprintf(name, sizeof name, "AWS_ENDPOINT_URL_%s", env_suffix);
    const char *url = getenv(name);
    if (!url || !*url) url = getenv("AWS_ENDPOINT_URL");
    if (url && *url) {
        snprintf(out, n, "%s", url);
        size_t len = strlen(out);
        while (len && out[len - 1] == '/') out[--len] = '\0';
        if (overridden) *overridden = true;
        return;
    }
    snprintf(out, n, "https://%s.%s.amazonaws.com", host_prefix, region);
    if (overridden) *overridden = false;
}

void aws_sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char md[32];
    unsigned int md_len = 0;
    EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int aws_sha256_file_hex(int fd, long long offset, long long len, char out[65]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return -1;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    enum { CHUNK = 1 << 20 };
    char *chunk = malloc(CHUNK);
    int rc = chunk ? 0 : -1;
    while (rc == 0 && len > 0) {
        size_t want = len < CHUNK ? (size_t)len : CHUNK;
        ssize_t got = pread(fd, chunk, want, (off_t)offset);
        if (got <= 0) {
            if (got < 0 && errno == EINTR) continue;
            rc = -1;
            break;
        }
        EVP_DigestUpdate(ctx, chunk, (size_t)got);
        offset += got;
        len -= got;
    }
    unsigned char md[32];
    unsigned int md_len = 0;
    EVP_DigestFinal_ex(ctx, md, &md_len);
    EVP_MD_CTX_free(ctx);
    free(chunk);
    for (unsigned i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
    return rc;
}

time_t aws_parse_time(const char *iso8601) {
    if (!iso8601) return 0;
    struct tm tm = {0};
    const char *end = strptime(iso8601, "%Y-%m-%dT%H:%M:%S", &tm);
    return end ? timegm(&tm) : 0;
}

int aws_read_token_file(const char *path, const char *what, char *out, size_t cap) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return error_set(EXIT_USAGE, "%s %s: %s", what, path, strerror(errno));
    size_t n = fread(out, 1, cap - 1, f);
    bool longer = n == cap - 1 && fgetc(f) != EOF;
    bool failed = ferror(f);
    fclose(f);
    out[n] = '\0';
    if (failed || longer) {
        out[0] = '\0';
        return error_set(EXIT_USAGE, "%s %s: %s", what, path,
                         failed ? "cannot be read" : "longer than a token can be");
    }
    while (n && isspace((unsigned char)out[n - 1])) out[--n] = '\0';
    if (!n) return error_set(EXIT_USAGE, "%s %s: empty", what, path);
    log_redact(out);
    return 0;
}

char *aws_uri_encode(const char *s, bool keep_slash) {
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1);
    if (!out) return NULL;
    char *p = out;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (isalnum(*c) || *c == '-' || *c == '_' || *c == '.' || *c == '~' ||
            (keep_slash && *c == '/')) {
            *p++ = (char)*c;
        } else {
            p += sprintf(p, "%%%02X", *c);
        }
    }
    *p = '\0';
    return out;
}

static long env_long(const char *name, long fallback) {
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end;
    long x = strtol(v, &end, 10);
    return (*end || x < 0) ? fallback : x;
}

long aws_backoff_ms(int attempt) {
    static _Thread_local unsigned seed;
    if (!seed) seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)&seed;
    long base = env_long("RUNNER_AWS_RETRY_BASE_MS", 200), cap = 20000;
    long ceiling = base;
    for (int i = 0; i < attempt && ceiling < cap; i++) ceiling *= 2;
    if (ceiling > cap) ceiling = cap;
    return ceiling ? (long)(rand_r(&seed) % (ceiling + 1)) : 0;
}

// ---- XML answers (S3, STS), and the AWS error code of a failed answer ----

// The text of the first <element> (and the name of the root element).
typedef struct {
    const char *want;
    char *out;
    size_t n;
    bool inside, found;
    char root[64];
} xml_pick;

static void pick_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
    (void)attrs;
    xml_pick *p = ud;
    if (!p->root[0]) snprintf(p->root, sizeof p->root, "%s", name);
    if (!p->found && strcmp(name, p->want) == 0) p->inside = true;
}

static void pick_end(void *ud, const XML_Char *name) {
    xml_pick *p = ud;
    if (p->inside && strcmp(name, p->want) == 0) p->inside = false, p->found = true;
}

static void pick_text(void *ud, const XML_Char *s, int len) {
    xml_pick *p = ud;
    if (!p->inside) return;
    size_t used = strlen(p->out);
    for (int i = 0; i < len && used + 1 < p->n; i++) p->out[used++] = s[i];
    p->out[used] = '\0';
}

int aws_xml_text(const aws_buffer *body, const char *element, char *out, size_t n, char *root,
                 size_t root_n) {
    out[0] = '\0';
    if (root && root_n) root[0] = '\0';
    if (!body->data || !body->len) return -1;
    XML_Parser parser = XML_ParserCreate(NULL);
    if (!parser) return -1;
    xml_pick p = {.want = element, .out = out, .n = n};
    XML_SetUserData(parser, &p);
    XML_SetElementHandler(parser, pick_start, pick_end);
    XML_SetCharacterDataHandler(parser, pick_text);
    bool ok = XML_Parse(parser, body->data, (int)body->len, 1) == XML_STATUS_OK;
    XML_ParserFree(parser);
    if (root) snprintf(root, root_n, "%s", p.root);
    return ok ? 0 : -1;
}

static void error_code_of(const aws_buffer *body, char *out, size_t n) {
    out[0] = '\0';
    if (!body->data || !body->len) return;
    const char *s = body->data;
    while (isspace((unsigned char)*s)) s++;
    if (*s == '<') { // S3's <Error><Code>; STS's <ErrorResponse><Error><Code>
        aws_xml_text(body, "Code", out, n, NULL, 0);
    } else if (*s == '{') {
        cJSON *json = cJSON_ParseWithLength(body->data, body->len);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(json, "__type");
        if (!cJSON_IsString(type)) type = cJSON_GetObjectItemCaseSensitive(json, "code");
        if (cJSON_IsString(type)) {
            const char *t = strrchr(type->valuestring, '#');
            snprintf(out, n, "%s", t ? t + 1 : type->valuestring);
        }
        cJSON_Delete(json);
    }
}

static bool code_is_throttling(const char *code) {
    static const char *const codes[] = {
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
        "TooManyRequestsException", "ProvisionedThroughputExceededException",
        "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
        "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
        "EC2ThrottledException", "RequestTimeout", "RequestTimeoutException", "InternalError",
        "ServiceUnavailable"};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(code, codes[i]) == 0) return true;
    return false;
}

static bool code_is_expired_credentials(const char *code) {
    return strcmp(code, "ExpiredToken") == 0 || strcmp(code, "ExpiredTokenException") == 0 ||
           strcmp(code, "RequestExpired") == 0 || strcmp(code, "TokenRefreshRequired") == 0;
}

// ---- one attempt ----

typedef struct {
    CURL *curl;
    FILE *sink;
    long long sink_start; // bytes already in a resumed sink when the try began
    bool sink_restarted;  // a resumed sink was emptied for a 200 answer
    bool sink_failed, read_failed;
    int sink_errno; // why the sink failed (ENOSPC, EDQUOT, ...), kept before curl runs on
    aws_response *resp;
    const aws_request *req;
    long long read_pos; // bytes of the body sent so far
} transfer;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
    transfer *t = ud;
    size_t len = size * nmemb;
    long status = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
    if (t->sink && status >= 200 && status < 300) {
        // A whole body (200) where a range was asked for: the server ignored Range,
        // so the bytes already there are not a prefix of this answer.
        if (t->sink_start > 0 && status == 200 && !t->sink_restarted) {
            if (fflush(t->sink) != 0 || ftruncate(fileno(t->sink), 0) != 0) {
                t->sink_failed = true;
                t->sink_errno = errno;
                return 0;
            }
            t->sink_restarted = true;
        }
        if (fwrite(data, 1, len, t->sink) != len) {
            t->sink_failed = true;
            t->sink_errno = errno;
            return 0;
        }
        if (t->req->on_sink_write) {
            t->req->on_sink_write(t->req->hook_ud, (long long)ftello(t->sink));
        }
        return len;
    }
    return aws_buffer_append(&t->resp->body, data, len) == 0 ? len : 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud) {
    transfer *t = ud;
    size_t len = size * nmemb;
    char line[512];
    size_t n = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, data, n);
    line[n] = '\0';
    while (n && (line[n - 1] == '\r' || line[n - 1] == '\n')) line[--n] = '\0';
    if (t->req->on_header) t->req->on_header(t->req->hook_ud, line);
    if (strncasecmp(line, "HTTP/", 5) == 0) { // a new response (after redirects, 100)
        t->resp->etag[0] = '\0';
        t->resp->bucket_region[0] = '\0';
        t->resp->content_length = -1;
    } else if (strncasecmp(line, "etag:", 5) == 0) {
        const char *v = line + 5;
        while (*v == ' ') v++;
        aws_copy(t->resp->etag, sizeof t->resp->etag, v);
    } else if (strncasecmp(line, "x-amz-bucket-region:", 20) == 0) {
        const char *v = line + 20;
        while (*v == ' ') v++;
        aws_copy(t->resp->bucket_region, sizeof t->resp->bucket_region, v);
    } else if (strncasecmp(line, "content-length:", 15) == 0) {
        t->resp->content_length = strtoll(line + 15, NULL, 10);
    }
    return len;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud) {
    transfer *t = ud;
    const aws_request *req = t->req;
    size_t room = size * nmemb;
    long long left = (long long)req->body_len - t->read_pos;
    if (left <= 0) return 0;
    size_t want = (long long)room < left ? room : (size_t)left;
    if (req->body_fd >= 0) {
        ssize_t got;
        do {
            got = pread(req->body_fd, buf, want, (off_t)(req->body_offset + t->read_pos));
        } while (got < 0 && errno == EINTR);
        if (got <= 0) {
            t->read_failed = true;
            return CURL_READFUNC_ABORT;
        }
        want = (size_t)got;
    } else {
        memcpy(buf, req->body + t->read_pos, want);
    }
    t->read_pos += (long long)want;
    return want;
}

static int seek_body(void *ud, curl_off_t offset, int origin) {
    transfer *t = ud;
    if (origin != SEEK_SET) return CURL_SEEKFUNC_CANTSEEK;
    t->read_pos = offset;
    return CURL_SEEKFUNC_OK;
}

static CURLcode attempt(const aws_request *req, aws_response *resp, const aws_credentials *creds,
                        transfer *t) {
    CURL *curl = curl_easy_init();
    if (!curl) return CURLE_OUT_OF_MEMORY;
    t->curl = curl;
    struct curl_slist *headers = NULL;
    for (const struct curl_slist *h = req->headers; h; h = h->next)
        headers = curl_slist_append(headers, h->data);
    // No "Expect:" removal entry here: curl 7.88 would sign that header without sending it.
    char line[4200];
    if (req->payload_sha256) {
        snprintf(line, sizeof line, "x-amz-content-sha256: %s", req->payload_sha256);
        headers = curl_slist_append(headers, line);
    }
    char sigv4[160];
    if (req->service && creds) {
        snprintf(sigv4, sizeof sigv4, "aws:amz:%s:%s", req->region ? req->region : aws_region(),
                 req->service);
        curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, sigv4);
        curl_easy_setopt(curl, CURLOPT_USERNAME, creds->access_key);
        curl_easy_setopt(curl, CURLOPT_PASSWORD, creds->secret_key);
        if (creds->token[0]) {
            snprintf(line, sizeof line, "x-amz-security-token: %s", creds->token);
            headers = curl_slist_append(headers, line);
        }
    }
    if (t->sink_start > 0) {
        snprintf(line, sizeof line, "Range: bytes=%lld-", t->sink_start);
        headers = curl_slist_append(headers, line);
    }
    curl_easy_setopt(curl, CURLOPT_URL, req->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "runner (libcurl)");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L); // S3 keys may hold "./" and "//"
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     req->connect_timeout_ms ? req->connect_timeout_ms : 10000L);
    if (req->timeout_ms) curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    // A connection that moves less than 1 byte/s for a minute is dead: retry it.
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, env_long("RUNNER_AWS_STALL_S", 60));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, t);

    const char *m = req->method ? req->method : "GET";
    if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "PUT") == 0) {
        curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(curl, CURLOPT_READDATA, t);
        curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, seek_body);
        curl_easy_setopt(curl, CURLOPT_SEEKDATA, t);
        curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_len);
    } else if (strcmp(m, "POST") == 0) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    } else if (strcmp(m, "GET") != 0) {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, m);
    }
    CURLcode cc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    t->curl = NULL;
    return cc;
}

static bool curl_code_retryable(CURLcode cc) {
    switch (cc) {
    case CURLE_OUT_OF_MEMORY:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_WRITE_ERROR:
    case CURLE_READ_ERROR:
    case CURLE_ABORTED_BY_CALLBACK:
    case CURLE_FAILED_INIT:
        return false;
    default:
        return true;
    }
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int aws_send(const aws_request *req, aws_response *resp, const char *what) {
    pthread_once(&curl_once, curl_init_once);
    int max_attempts = req->max_attempts ? req->max_attempts
                                         : (int)env_long("RUNNER_AWS_MAX_ATTEMPTS", 5);
    if (max_attempts < 1) max_attempts = 1;
    char reason[320] = "";
    for (int n = 0; n < max_attempts; n++) {
        aws_credentials creds;
        if (req->service && req->credentials) {
            creds = *req->credentials;
        } else if (req->service) {
            int rc = aws_credentials_get(&creds);
            if (rc) return rc;
        }
        aws_buffer_free(&resp->body);
        resp->status = 0;
        resp->etag[0] = '\0';
        resp->error_code[0] = '\0';
        resp->bucket_region[0] = '\0';
        resp->content_length = -1;
        transfer t = {.resp = resp, .req = req};
        if (req->sink_path) {
            // Append mode keeps every write at the end, after a restart's truncation too.
            t.sink = fopen(req->sink_path, req->sink_resume ? "ab" : "wb");
            if (!t.sink)
                return error_set(EXIT_OUTPUT, "%s: cannot write %s: %s", what, req->sink_path,
                                 strerror(errno));
            if (req->sink_resume) {
                if (fseeko(t.sink, 0, SEEK_END) != 0 || (t.sink_start = ftello(t.sink)) < 0) {
                    fclose(t.sink);
                    return error_set(EXIT_OUTPUT, "%s: cannot read the size of %s: %s", what,
                                     req->sink_path, strerror(errno));
                }
            }
        }
        CURLcode cc = attempt(req, resp, req->service ? &creds : NULL, &t);
        if (t.sink && fclose(t.sink) != 0 && !t.sink_failed) { // the buffered tail
            t.sink_failed = true;
            t.sink_errno = errno;
        }
        resp->curl_code = (int)cc;
        if (t.sink_failed)
            return error_set(EXIT_OUTPUT, "%s: cannot write %s: %s", what, req->sink_path,
                             strerror(t.sink_errno ? t.sink_errno : EIO));
        if (t.read_failed) // the local file shrank or vanished under us
            return error_set(EXIT_BAD_INPUT, "%s: cannot read the local file", what);
        if (cc == CURLE_OK && resp->status >= 200 && resp->status < 300) return 0;
        bool retry;
        if (cc != CURLE_OK) {
            retry = curl_code_retryable(cc);
            snprintf(reason, sizeof reason, "%s", curl_easy_strerror(cc));
            if (!retry)
                return error_set(EXIT_REMOTE_IO, "%s: %s", what, reason);
        } else {
            error_code_of(&resp->body, resp->error_code, sizeof resp->error_code);
            retry = resp->status >= 500 || resp->status == 429 ||
                    code_is_throttling(resp->error_code);
            // Expired chain credentials: drop them and ask again. Given ones (the chain
            // assuming a role, which holds its lock) or none: a final answer.
            if (code_is_expired_credentials(resp->error_code) && req->service &&
                !req->credentials) {
                aws_credentials_invalidate();
                retry = true;
            }
            snprintf(reason, sizeof reason, "HTTP %ld%s%s", resp->status,
                     resp->error_code[0] ? " " : "", resp->error_code);
            if (!retry) return 0; // a final answer (404, 403, 400...): the caller decides
        }
        if (n + 1 < max_attempts) {
            long delay = aws_backoff_ms(n);
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "request", what);
            cJSON_AddNumberToObject(f, "attempt", n + 1);
            cJSON_AddNumberToObject(f, "max_attempts", max_attempts);
            cJSON_AddStringToObject(f, "reason", reason);
            cJSON_AddNumberToObject(f, "delay_ms", (double)delay);
            log_fields(LOG_WARN, "aws_retry", f);
            timing_sleep_ms(delay);
        }
    }
    return error_set(EXIT_REMOTE_IO, "%s: failed after %d attempts: %s", what, max_attempts,
                     reason);
}

int aws_json_call(const char *service, const char *env_suffix, const char *host_prefix,
                  const char *json_version, const char *target, const cJSON *payload,
                  aws_response *resp, const char *what) {
    char url[600];
    aws_endpoint(env_suffix, host_prefix, url, sizeof url - 1, NULL);
    strcat(url, "/");
    char *body = cJSON_PrintUnformatted(payload);
    if (!body) return error_set(EXIT_INTERNAL, "%s: out of memory", what);
    char ct[80], tg[160];
    snprintf(ct, sizeof ct, "Content-Type: application/x-amz-json-%s", json_version);
    snprintf(tg, sizeof tg, "X-Amz-Target: %s", target);
    struct curl_slist *headers = curl_slist_append(NULL, ct);
    headers = curl_slist_append(headers, tg);
    aws_request req = {.method = "POST", .url = url, .service = service, .headers = headers,
                       .body = body, .body_len = strlen(body), .body_fd = -1,
                       .timeout_ms = 30000};
    int rc = aws_send(&req, resp, what);
    curl_slist_free_all(headers);
    cJSON_free(body);
    return rc;
}
