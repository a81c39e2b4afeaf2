#pragma once
// A growable text buffer for building HTTP bodies. On allocation failure it stops
// growing and remembers it (`failed`); the caller answers 500 rather than crashing.
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *data; // NUL-terminated while not failed
    size_t len, cap;
    bool failed;
} strbuf;

void strbuf_init(strbuf *b, size_t cap);
void strbuf_add(strbuf *b, const char *s, size_t len);
void strbuf_puts(strbuf *b, const char *s);
void strbuf_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Hand the buffer over (malloc'd, caller frees); NULL when it failed. Resets `b`.
char *strbuf_take(strbuf *b, size_t *len);
void strbuf_free(strbuf *b);
