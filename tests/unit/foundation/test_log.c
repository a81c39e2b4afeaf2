// Logging: JSON lines with ts/level/event, text form, labels, redaction, the recent ring.
#include "check.h"
#include "runner/log.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static char captured[65536];

// Run `body` with log lines going to a pipe; returns what was written.
static const char *capture(void (*body)(void)) {
    int fds[2];
    if (pipe(fds) != 0) return "";
    log_set_fd(fds[1]);
    body();
    log_set_fd(STDOUT_FILENO);
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], captured + len, sizeof captured - 1 - len)) > 0)
        len += (size_t)n;
    captured[len] = '\0';
    close(fds[0]);
    return captured;
}

static void json_lines(void) {
    log_init(LOG_FORMAT_JSON, LOG_INFO);
    log_info("hello", "%d workers", 4);
    log_debug("hidden", "below the level");
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddNumberToObject(fields, "loss", 0.5);
    cJSON_AddStringToObject(fields, "event", "not-this"); // cannot replace the event
    log_fields(LOG_WARN, "step", fields);
}

static void field_over_label(void) {
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddNumberToObject(fields, "rank", 5);
    log_fields(LOG_INFO, "override", fields);
}

static void text_lines(void) {
    log_init(LOG_FORMAT_TEXT, LOG_DEBUG);
    log_debug("shown", "now visible");
    cJSON *big = cJSON_CreateObject();
    cJSON *report = cJSON_AddObjectToObject(big, "report");
    for (int i = 0; i < 40; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        cJSON_AddNumberToObject(report, key, i);
    }
    log_fields(LOG_INFO, "long", big);
    log_fields_json(LOG_INFO, "exit", cJSON_CreateObject()); // JSON whatever the format
}

static void secret_lines(void) {
    log_init(LOG_FORMAT_JSON, LOG_INFO);
    log_redact("hunter2-password");
    log_redact("quo\"te\\secret");
    log_redact("ab"); // too short to be a secret: ignored
    log_info("connect", "redis://:hunter2-password@host:6379 then hunter2-password again");
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddStringToObject(fields, "token", "quo\"te\\secret");
    log_fields(LOG_INFO, "token", fields);
    log_info("plain", "about tab");
    log_init(LOG_FORMAT_TEXT, LOG_INFO);
    log_info("text", "hunter2-password in text form");
}

int main(void) {
    const char *out = capture(json_lines);
    char *first_end = strchr(out, '\n');
    CHECK(first_end != NULL);
    *first_end = '\0';
    cJSON *line = cJSON_Parse(out);
    CHECK(line != NULL);
    CHECK_STR(cJSON_GetObjectItem(line, "event")->valuestring, "hello");
    CHECK_STR(cJSON_GetObjectItem(line, "level")->valuestring, "info");
    CHECK_STR(cJSON_GetObjectItem(line, "msg")->valuestring, "4 workers");
    const char *ts = cJSON_GetObjectItem(line, "ts")->valuestring;
    CHECK_INT(strlen(ts), 24); // 2026-01-02T03:04:05.678Z
    CHECK(ts[10] == 'T' && ts[23] == 'Z');
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(line, "seq")));
    cJSON_Delete(line);
    const char *second = first_end + 1;
    CHECK(strstr(second, "hidden") == NULL);
    line = cJSON_Parse(second);
    CHECK(line != NULL);
    CHECK_STR(cJSON_GetObjectItem(line, "event")->valuestring, "step");
    CHECK_STR(cJSON_GetObjectItem(line, "level")->valuestring, "warn");
    CHECK_CLOSE(cJSON_GetObjectItem(line, "loss")->valuedouble, 0.5, 0, 0);
    cJSON_Delete(line);

    // labels on every line
    log_set_labels(cJSON_Parse("{\"job_id\":\"j-1\",\"rank\":3}"));
    out = capture(json_lines);
    CHECK(strstr(out, "\"job_id\":\"j-1\"") != NULL);
    CHECK(strstr(out, "\"rank\":3") != NULL);
    CHECK(strstr(out, "\"event\":\"not-this\"") == NULL);
    out = capture(field_over_label);
    CHECK(strstr(out, "\"rank\":5") != NULL && strstr(out, "\"rank\":3") == NULL);
    log_set_labels(NULL);

    out = capture(text_lines);
    CHECK(strstr(out, "DEBUG shown  now visible") != NULL);
    CHECK(strstr(out, "INFO  long report={\"k0\":0,") != NULL);
    CHECK(strstr(out, "...") != NULL && strstr(out, "\"k39\"") == NULL); // cut in text
    CHECK(out[0] != '{');
    CHECK(strstr(out, "{\"ts\"") != NULL && strstr(out, "\"event\":\"exit\"") != NULL);

    out = capture(secret_lines);
    CHECK(strstr(out, "hunter2") == NULL);
    CHECK(strstr(out, "te\\\\secret") == NULL); // the JSON-escaped form is caught too
    CHECK(strstr(out, "redis://:***@host:6379 then *** again") != NULL);
    CHECK(strstr(out, "about tab") != NULL); // "ab" was not registered
    CHECK(strstr(out, "*** in text form") != NULL);
    char *redacted = log_redacted("x hunter2-password y");
    CHECK_STR(redacted, "x *** y");
    free(redacted);

    // the ring: every line, oldest first, with seq, and nothing secret
    char *recent[LOG_RECENT_LINES];
    unsigned long seqs[LOG_RECENT_LINES];
    size_t n = log_recent(recent, seqs, LOG_RECENT_LINES, 0);
    CHECK(n >= 8);
    unsigned long last_seq = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *r = cJSON_Parse(recent[i]);
        CHECK(r != NULL);
        unsigned long seq = (unsigned long)cJSON_GetObjectItem(r, "seq")->valuedouble;
        CHECK(seq > last_seq);
        CHECK_INT(seqs[i], seq); // the sequence numbers handed back are the lines' own
        last_seq = seq;
        CHECK(strstr(recent[i], "hunter2") == NULL);
        cJSON_Delete(r);
        free(recent[i]);
    }
    // since: only newer lines; max: the most recent ones
    n = log_recent(recent, NULL, 2, 0);
    CHECK_INT(n, 2);
    CHECK(strstr(recent[1], "\"seq\":") != NULL);
    cJSON *r = cJSON_Parse(recent[1]);
    CHECK_INT((long)cJSON_GetObjectItem(r, "seq")->valuedouble, (long)last_seq);
    cJSON_Delete(r);
    free(recent[0]);
    free(recent[1]);
    CHECK_INT(log_recent(recent, NULL, 10, last_seq + 1), 0);
    CHECK_INT(log_last_seq(), last_seq);
    // since > 0: a cursor; paging two at a time from the first line meets every line
    // once, in order (a tail of two per page would skip all but the newest).
    unsigned long cursor = 1, expected = seqs[0], pages = 0;
    for (;;) {
        unsigned long page_seqs[2];
        size_t got = log_recent(recent, page_seqs, 2, cursor);
        for (size_t i = 0; i < got; i++) {
            CHECK_INT(page_seqs[i], expected);
            expected++;
            free(recent[i]);
        }
        if (got == 0) break;
        cursor = page_seqs[got - 1] + 1;
        pages++;
    }
    CHECK_INT(expected, last_seq + 1);
    CHECK(pages >= 4);

    // the ring keeps the last LOG_RECENT_LINES only
    int null_fd = open("/dev/null", O_WRONLY);
    log_set_fd(null_fd);
    for (int i = 0; i < LOG_RECENT_LINES + 20; i++)
        log_info("flood", "line %d", i);
    n = log_recent(recent, NULL, LOG_RECENT_LINES, 0);
    CHECK_INT(n, LOG_RECENT_LINES);
    CHECK(strstr(recent[n - 1], "line 531") != NULL);
    for (size_t i = 0; i < n; i++)
        free(recent[i]);
    // a cursor older than the ring starts at the oldest line it still holds
    n = log_recent(recent, seqs, 1, 1);
    CHECK_INT(n, 1);
    CHECK_INT(seqs[0], log_last_seq() - LOG_RECENT_LINES + 1);
    free(recent[0]);
    log_set_fd(STDOUT_FILENO);
    close(null_fd);
    log_reset();
    return check_summary();
}
