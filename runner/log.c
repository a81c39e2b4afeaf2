#include "runner/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { SECRETS_MAX = 64, SECRET_MIN_LEN = 4 };

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static log_format format_in_use = LOG_FORMAT_AUTO;
static log_level level_min = LOG_INFO;
static cJSON *labels;                  // static fields of every line, owned
static char *secrets[SECRETS_MAX * 2]; // raw and JSON-escaped forms
static size_t secret_count;
static char *recent[LOG_RECENT_LINES]; // ring of JSON lines, owned
static unsigned long recent_seq[LOG_RECENT_LINES];
static unsigned long next_seq = 1;
static int log_fd = STDOUT_FILENO;
static void (*before_line)(void); // clears a terminal status line first (a progress bar)

static const char *LEVEL_NAMES[] = {"debug", "info", "warn", "error"};

static log_format resolve_format(log_format format) {
    if (format != LOG_FORMAT_AUTO) return format;
    return isatty(log_fd) ? LOG_FORMAT_TEXT : LOG_FORMAT_JSON;
}

void log_init(log_format format, log_level min_level) {
    pthread_mutex_lock(&log_lock);
    format_in_use = resolve_format(format);
    level_min = min_level;
    pthread_mutex_unlock(&log_lock);
}

log_format log_current_format(void) {
    pthread_mutex_lock(&log_lock);
    if (format_in_use == LOG_FORMAT_AUTO) format_in_use = resolve_format(LOG_FORMAT_AUTO);
    log_format format = format_in_use;
    pthread_mutex_unlock(&log_lock);
    return format;
}

void log_set_fd(int fd) {
    pthread_mutex_lock(&log_lock);
    log_fd = fd;
    pthread_mutex_unlock(&log_lock);
}

void log_set_before_line(void (*hook)(void)) {
    pthread_mutex_lock(&log_lock);
    before_line = hook;
    pthread_mutex_unlock(&log_lock);
}

void log_set_labels(cJSON *new_labels) {
    pthread_mutex_lock(&log_lock);
    cJSON_Delete(labels);
    labels = new_labels;
    pthread_mutex_unlock(&log_lock);
}

static void add_secret_locked(const char *form) {
    for (size_t i = 0; i < secret_count; i++)
        if (strcmp(secrets[i], form) == 0) return;
    if (secret_count >= SECRETS_MAX * 2) return;
    char *copy = strdup(form);
    if (copy) secrets[secret_count++] = copy;
}

void log_redact(const char *secret) {
    // Very short values ("1", "on") would blank out ordinary words; such a value is no
    // secret worth the name, and is left alone.
    if (!secret || strlen(secret) < SECRET_MIN_LEN) return;
    cJSON *as_json = cJSON_CreateString(secret);
    char *escaped = as_json ? cJSON_PrintUnformatted(as_json) : NULL;
    cJSON_Delete(as_json);
    pthread_mutex_lock(&log_lock);
    add_secret_locked(secret);
    if (escaped && strlen(escaped) >= 2) {
        escaped[strlen(escaped) - 1] = '\0'; // drop the quotes
        if (strcmp(escaped + 1, secret) != 0) add_secret_locked(escaped + 1);
    }
    pthread_mutex_unlock(&log_lock);
    free(escaped);
}

cJSON *log_redactions_json(void) {
    cJSON *out = cJSON_CreateArray();
    pthread_mutex_lock(&log_lock);
    for (size_t i = 0; out && i < secret_count; i++)
        cJSON_AddItemToArray(out, cJSON_CreateString(secrets[i]));
    pthread_mutex_unlock(&log_lock);
    return out;
}

// Replace every occurrence of `needle` in `text` (owned) by "***"; returns the new text.
static char *replace_all(char *text, const char *needle) {
    size_t needle_len = strlen(needle), count = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + needle_len, needle))
        count++;
    if (count == 0) return text;
    size_t len = strlen(text);
    char *out = malloc(len - count * needle_len + count * 3 + 1);
    if (!out) {
        // Never print a secret: when memory is short, blank the whole line instead.
        memset(text, '*', len);
        return text;
    }
    char *w = out;
    const char *r = text;
    for (const char *p = strstr(r, needle); p; p = strstr(r, needle)) {
        memcpy(w, r, (size_t)(p - r));
        w += p - r;
        memcpy(w, "***", 3);
        w += 3;
        r = p + needle_len;
    }
    strcpy(w, r);
    free(text);
    return out;
}

static char *redact_locked(const char *text) {
    char *out = strdup(text ? text : "");
    if (!out) return NULL;
    for (size_t i = 0; i < secret_count; i++)
        out = replace_all(out, secrets[i]);
    return out;
}

char *log_redacted(const char *text) {
    pthread_mutex_lock(&log_lock);
    char *out = redact_locked(text);
    pthread_mutex_unlock(&log_lock);
    return out;
}

static void write_all(const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(log_fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; // stdout gone: nothing better to do with a log line
        }
        buf += n;
        len -= (size_t)n;
    }
}

// One write() per line, newline included, so lines of workers sharing stdout do not
// interleave (a pipe keeps writes up to PIPE_BUF whole).
static void write_line(const char *text) {
    // Text a caller printed to stdout (buffered by stdio) goes out before the log line,
    // whichever fd the log writes to: the two streams then read in the order they were
    // produced, in a terminal and through `2>&1 | tee`.
    fflush(stdout);
    if (before_line) before_line();
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    if (!buf) {
        write_all(text, len);
        write_all("\n", 1);
        return;
    }
    memcpy(buf, text, len);
    buf[len] = '\n';
    write_all(buf, len + 1);
    free(buf);
}

static void format_timestamp(char *out, size_t size) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    int millis = (int)(now.tv_nsec / 1000000) % 1000;
    if (snprintf(out, size, "%s.%03dZ", base, millis) >= (int)size) out[size - 1] = '\0';
}

// The readable form of a line: "09:30:01.123 INFO  event  msg  key=value ...".
static char *text_line(const cJSON *line) {
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    out[0] = '\0';
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(line, "ts");
    const cJSON *level = cJSON_GetObjectItemCaseSensitive(line, "level");
    const cJSON *event = cJSON_GetObjectItemCaseSensitive(line, "event");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(line, "msg");
    char head[160], upper[8] = {0};
    const char *lv = cJSON_IsString(level) ? level->valuestring : "";
    for (int i = 0; lv[i] && i < 7; i++)
        upper[i] = (char)(lv[i] >= 'a' && lv[i] <= 'z' ? lv[i] - 32 : lv[i]);
    const char *tsv =
        cJSON_IsString(ts) && strlen(ts->valuestring) > 11 ? ts->valuestring + 11 : "";
    len = (size_t)snprintf(head, sizeof head, "%.12s %-5s %s", tsv, upper,
                           cJSON_IsString(event) ? event->valuestring : "");
    if (len >= sizeof head) len = sizeof head - 1;
    memcpy(out, head, len + 1);
    for (const cJSON *item = line->child; item; item = item->next) {
        if (item == ts || item == level || item == event || strcmp(item->string, "seq") == 0)
            continue;
        char *value = NULL;
        if (cJSON_IsString(item))
            value = strdup(item->valuestring);
        else
            value = cJSON_PrintUnformatted(item);
        if (!value) continue;
        // Text is for a person at a terminal: long structured values (a whole
        // configuration, a preflight report) are cut; the JSON lines keep them whole.
        enum { TEXT_VALUE_MAX = 96 };
        if (!cJSON_IsString(item) && strlen(value) > TEXT_VALUE_MAX)
            memcpy(value + TEXT_VALUE_MAX - 3, "...", 4);
        size_t need = len + strlen(item->string) + strlen(value) + 4;
        if (need >= cap) {
            while (need >= cap)
                cap *= 2;
            char *grown = realloc(out, cap);
            if (!grown) {
                free(value);
                break;
            }
            out = grown;
        }
        if (item == msg)
            len += (size_t)sprintf(out + len, "  %s", value);
        else
            len += (size_t)sprintf(out + len, " %s=%s", item->string, value);
        free(value);
    }
    return out;
}

static void emit(log_level level, const char *event, cJSON *fields, bool force_json) {
    if (level < LOG_DEBUG || level > LOG_ERROR) level = LOG_ERROR;
    pthread_mutex_lock(&log_lock);
    if (format_in_use == LOG_FORMAT_AUTO) format_in_use = resolve_format(LOG_FORMAT_AUTO);
    if (!force_json && level < level_min) {
        pthread_mutex_unlock(&log_lock);
        cJSON_Delete(fields);
        return;
    }
    cJSON *line = cJSON_CreateObject();
    char ts[40];
    format_timestamp(ts, sizeof ts);
    cJSON_AddStringToObject(line, "ts", ts);
    cJSON_AddStringToObject(line, "level", LEVEL_NAMES[level]);
    cJSON_AddStringToObject(line, "event", event ? event : "log");
    for (const cJSON *label = labels ? labels->child : NULL; label; label = label->next)
        if (!cJSON_GetObjectItemCaseSensitive(line, label->string))
            cJSON_AddItemToObject(line, label->string, cJSON_Duplicate(label, true));
    if (fields) {
        while (fields->child) {
            cJSON *item = cJSON_DetachItemViaPointer(fields, fields->child);
            if (item->string && !cJSON_GetObjectItemCaseSensitive(line, item->string))
                cJSON_AddItemToObject(line, item->string, item);
            else if (item->string) {
                // A field wins over a label of the same name. cJSON frees the
                // replacement's own key before copying `string`: pass a copy.
                char *key = strdup(item->string);
                if (key)
                    cJSON_ReplaceItemInObjectCaseSensitive(line, key, item);
                else
                    cJSON_Delete(item);
                free(key);
            } else
                cJSON_Delete(item);
        }
        cJSON_Delete(fields);
    }
    // ts/level/event stay as set above even if a field tried to replace them.
    cJSON_ReplaceItemInObjectCaseSensitive(line, "ts", cJSON_CreateString(ts));
    cJSON_ReplaceItemInObjectCaseSensitive(line, "level", cJSON_CreateString(LEVEL_NAMES[level]));
    cJSON_ReplaceItemInObjectCaseSensitive(line, "event",
                                           cJSON_CreateString(event ? event : "log"));
    unsigned long seq = next_seq++;
    cJSON_AddNumberToObject(line, "seq", (double)seq);

    char *json = cJSON_PrintUnformatted(line);
    char *safe_json = json ? redact_locked(json) : NULL;
    free(json);
    if (safe_json) {
        size_t slot = seq % LOG_RECENT_LINES;
        free(recent[slot]);
        recent[slot] = strdup(safe_json);
        recent_seq[slot] = seq;
    }
    if (force_json || format_in_use == LOG_FORMAT_JSON) {
        if (safe_json) write_line(safe_json);
    } else {
        char *text = text_line(line);
        char *safe_text = text ? redact_locked(text) : NULL;
        free(text);
        if (safe_text) write_line(safe_text);
        free(safe_text);
    }
    free(safe_json);
    cJSON_Delete(line);
    pthread_mutex_unlock(&log_lock);
}

void log_fields(log_level level, const char *event, cJSON *fields) {
    emit(level, event, fields, false);
}

void log_fields_json(log_level level, const char *event, cJSON *fields) {
    emit(level, event, fields, true);
}

void log_msg(log_level level, const char *event, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddStringToObject(fields, "msg", n >= 0 && msg ? msg : fmt);
    if (n >= 0) free(msg);
    emit(level, event, fields, false);
}

size_t log_recent(char **out, unsigned long *seqs, size_t max, unsigned long since) {
    size_t count = 0;
    pthread_mutex_lock(&log_lock);
    unsigned long last = next_seq - 1;
    unsigned long first = last >= LOG_RECENT_LINES ? last - LOG_RECENT_LINES + 1 : 1;
    if (since > first)
        first = since; // a cursor: the oldest lines from there, so paging loses none
    else if (since == 0 && last >= first && last - first + 1 > max)
        first = last - max + 1; // a tail: the newest lines
    for (unsigned long seq = first; seq <= last && count < max; seq++) {
        size_t slot = seq % LOG_RECENT_LINES;
        if (recent_seq[slot] != seq || !recent[slot]) continue;
        char *copy = strdup(recent[slot]);
        if (!copy) continue;
        if (seqs) seqs[count] = seq;
        out[count++] = copy;
    }
    pthread_mutex_unlock(&log_lock);
    return count;
}

unsigned long log_last_seq(void) {
    pthread_mutex_lock(&log_lock);
    unsigned long last = next_seq - 1;
    pthread_mutex_unlock(&log_lock);
    return last;
}

void log_reset(void) {
    pthread_mutex_lock(&log_lock);
    cJSON_Delete(labels);
    labels = NULL;
    for (size_t i = 0; i < secret_count; i++)
        free(secrets[i]);
    secret_count = 0;
    for (size_t i = 0; i < LOG_RECENT_LINES; i++) {
        free(recent[i]);
        recent[i] = NULL;
        recent_seq[i] = 0;
    }
    next_seq = 1;
    pthread_mutex_unlock(&log_lock);
}
