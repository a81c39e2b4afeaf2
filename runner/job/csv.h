#pragma once
// RFC 4180 CSV: records of comma-separated fields; a field may be quoted with '"', and
// then holds commas, CRLF/LF line breaks and doubled quotes ("" = one "). Records end in
// CRLF or LF; the last one may lack it. The reader works over a buffer in memory and
// keeps the physical line where each record starts, so errors name file:line.
#include <stddef.h>
#include <stdio.h>

typedef struct {
    const char *data;
    size_t len, pos;
    long next_line;   // physical line (1-based) where the next record starts
    long line;        // line where the current record started
    char *buf;        // unescaped field text, fields NUL-separated
    size_t buf_cap;
    size_t *offsets;  // field i starts at buf + offsets[i]
    int nfields, fields_cap;
    char error[160];  // why the last record was malformed
} csv_reader;

enum { CSV_END = 0, CSV_RECORD = 1, CSV_MALFORMED = -1, CSV_NOMEM = -2 };

void csv_reader_init(csv_reader *r, const char *data, size_t len);
// Read the next record: CSV_RECORD, CSV_END, CSV_MALFORMED (r->error says why; the
// reader has skipped to the end of that physical line and may be called again), or
// CSV_NOMEM.
int csv_next(csv_reader *r);
static inline const char *csv_field(const csv_reader *r, int i) { return r->buf + r->offsets[i]; }
void csv_reader_free(csv_reader *r);

// Write one field, quoted when it holds a comma, quote, CR or LF or starts with a UTF-8
// byte-order mark (quotes doubled).
void csv_write_field(FILE *out, const char *field);
