#pragma once
// Logging: one JSON object per line when stdout is not a TTY (what CloudWatch Logs
// Insights queries), readable text on a TTY; --log-format json|text overrides.
// Every line has "ts" (RFC 3339 UTC, ms), "level", "event", then its fields.
// Secrets registered with log_redact() are replaced by "***" in every line.
// Thread-safe; the last LOG_RECENT_LINES lines are kept for /api/v1/logs.
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;
typedef enum { LOG_FORMAT_AUTO, LOG_FORMAT_JSON, LOG_FORMAT_TEXT } log_format;

enum { LOG_RECENT_LINES = 512 };

void log_init(log_format format, log_level min_level);
// Static labels added to every JSON line (job id, node, rank...). Replaces the old set;
// takes ownership of `labels` (a cJSON object) or clears them when NULL.
void log_set_labels(cJSON *labels);
// A line with a free-text "msg" field.
void log_msg(log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// A line with structured fields; takes ownership of `fields` (a cJSON object, may be NULL).
void log_fields(log_level level, const char *event, cJSON *fields);
// Never print `secret` (passwords, tokens, keys): every occurrence becomes "***".
void log_redact(const char *secret);
// Every registered secret, as a cJSON array of strings (the caller owns it): what the
// supervisor hands a worker, which is a new program and would otherwise redact nothing
// it did not register itself.
cJSON *log_redactions_json(void);
// Copy up to `max` JSON lines of the recent-lines ring (oldest first) into `out` as
// malloc'd strings, and their sequence numbers (the lines' "seq", from 1) into `seqs`
// when it is not NULL; returns how many. since == 0: the newest `max` lines (a tail).
// since > 0: the oldest `max` lines with seq >= since (a cursor: page on from the last
// seq + 1; lines already pushed out of the ring are skipped).
size_t log_recent(char **out, unsigned long *seqs, size_t max, unsigned long since);
// The sequence number of the newest line (0 before the first).
unsigned long log_last_seq(void);
// As log_fields, but always one JSON line whatever the format (the final exit line).
void log_fields_json(log_level level, const char *event, cJSON *fields);
// The format in use after resolving LOG_FORMAT_AUTO (LOG_FORMAT_JSON or LOG_FORMAT_TEXT).
log_format log_current_format(void);
// Replace every registered secret in `text` by "***"; returns a malloc'd string.
char *log_redacted(const char *text);
// Write lines to `fd` instead of stdout (for --check and --exit-codes, whose report
// owns stdout); the TTY test of LOG_FORMAT_AUTO then looks at `fd`.
void log_set_fd(int fd);
// Call `hook` (NULL: none) before each line is written, under the log's lock: a status
// line redrawn in place on the terminal (runner/cloud/hub_progress.h) erases itself
// there, so that log lines sharing the terminal start on a clean line.
void log_set_before_line(void (*hook)(void));
// Forget labels, secrets and recent lines (tests).
void log_reset(void);

#define log_debug(event, ...) log_msg(LOG_DEBUG, event, __VA_ARGS__)
#define log_info(event, ...) log_msg(LOG_INFO, event, __VA_ARGS__)
#define log_warn(event, ...) log_msg(LOG_WARN, event, __VA_ARGS__)
#define log_error(event, ...) log_msg(LOG_ERROR, event, __VA_ARGS__)
