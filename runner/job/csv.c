// A small RFC 4180 reader and field writer; see csv.h.
#include "runner/job/csv.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void csv_reader_init(csv_reader *r, const char *data, size_t len) {
    memset(r, 0, sizeof *r);
    r->data = data;
    r->len = len;
    r->next_line = 1;
    // A UTF-8 byte-order mark is not part of the first field.
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) r->pos = 3;
}

void csv_reader_free(csv_reader *r) {
    free(r->buf);
    free(r->offsets);
    memset(r, 0, sizeof *r);
}

static bool put_char(csv_reader *r, size_t *n, char c) {
    if (*n + 1 >= r->buf_cap) {
        size_t cap = r->buf_cap ? r->buf_cap * 2 : 256;
        char *grown = realloc(r->buf, cap);
        if (!grown) return false;
        r->buf = grown;
        r->buf_cap = cap;
    }
    r->buf[(*n)++] = c;
    return true;
}

static bool start_field(csv_reader *r, size_t n) {
    if (r->nfields == r->fields_cap) {
        int cap = r->fields_cap ? r->fields_cap * 2 : 8;
        size_t *grown = realloc(r->offsets, (size_t)cap * sizeof *grown);
        if (!grown) return false;
        r->offsets = grown;
        r->fields_cap = cap;
    }
    r->offsets[r->nfields++] = n;
    return true;
}

// Skip to just after the end of the current physical line (error recovery).
static void skip_line(csv_reader *r) {
    while (r->pos < r->len && r->data[r->pos] != '\n') r->pos++;
    if (r->pos < r->len) {
        r->pos++;
        r->next_line++;
    }
}

int csv_next(csv_reader *r) {
    r->nfields = 0;
    r->error[0] = '\0';
    if (r->pos >= r->len) return CSV_END;
    r->line = r->next_line;
    size_t n = 0;
    if (!start_field(r, 0)) return CSV_NOMEM;
    for (;;) {
        // At the start of a field.
        if (r->pos < r->len && r->data[r->pos] == '"') {
            long quote_line = r->next_line;
            r->pos++;
            for (;;) {
                if (r->pos >= r->len) {
                    snprintf(r->error, sizeof r->error,
                             "quoted field opened on line %ld is never closed", quote_line);
                    return CSV_MALFORMED;
                }
                char c = r->data[r->pos++];
                if (c == '"') {
                    if (r->pos < r->len && r->data[r->pos] == '"') {
                        r->pos++;
                        if (!put_char(r, &n, '"')) return CSV_NOMEM;
                        continue;
                    }
                    break; // closing quote
                }
                if (c == '\n') r->next_line++;
                if (!put_char(r, &n, c)) return CSV_NOMEM;
            }
            // After a closing quote only a separator or the end of the record may follow.
            if (r->pos < r->len && r->data[r->pos] != ',' && r->data[r->pos] != '\n' &&
                !(r->data[r->pos] == '\r' && r->pos + 1 < r->len && r->data[r->pos + 1] == '\n') &&
                !(r->data[r->pos] == '\r' && r->pos + 1 == r->len)) {
                snprintf(r->error, sizeof r->error, "text after the closing quote of field %d",
                         r->nfields);
                skip_line(r);
                return CSV_MALFORMED;
            }
        } else {
            while (r->pos < r->len) {
                char c = r->data[r->pos];
                if (c == ',' || c == '\n') break;
                if (c == '\r' && (r->pos + 1 == r->len || r->data[r->pos + 1] == '\n')) break;
                if (c == '"') {
                    snprintf(r->error, sizeof r->error, "quote inside unquoted field %d",
                             r->nfields);
                    skip_line(r);
                    return CSV_MALFORMED;
                }
                if (!put_char(r, &n, c)) return CSV_NOMEM;
                r->pos++;
            }
        }
        if (!put_char(r, &n, '\0')) return CSV_NOMEM;
        // Separator or end of record.
        if (r->pos >= r->len) return CSV_RECORD;
        char c = r->data[r->pos];
        if (c == ',') {
            r->pos++;
            if (!start_field(r, n)) return CSV_NOMEM;
            continue;
        }
        if (c == '\r') r->pos++;
        if (r->pos < r->len && r->data[r->pos] == '\n') r->pos++;
        r->next_line++;
        return CSV_RECORD;
    }
}

void csv_write_field(FILE *out, const char *field) {
    // A field that starts with a byte-order mark is quoted too: at the start of a file
    // the reader would drop the mark (tests/fuzz/corpus/fuzz_csv/regress-bom-in-first-field).
    if (strpbrk(field, ",\"\r\n") == NULL && strncmp(field, "\xEF\xBB\xBF", 3) != 0) {
        fputs(field, out);
        return;
    }
    fputc('"', out);
    for (const char *p = field; *p; p++) {
        if (*p == '"') fputc('"', out);
        fputc(*p, out);
    }
    fputc('"', out);
}
