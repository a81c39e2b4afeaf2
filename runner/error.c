#include "runner/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char error_text[1024];
static _Thread_local int error_last_code;

int error_set(int code, const char *fmt, ...) {
    // Formatted aside first: callers extend the last reason with
    // error_set(code, "%s ...", error_message()), and vsnprintf may not read the buffer
    // it writes.
    char text[sizeof error_text];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memcpy(error_text, text, sizeof text);
    error_last_code = code;
    return code;
}

const char *error_message(void) {
    return error_text;
}

int error_code(void) {
    return error_last_code;
}

void error_clear(void) {
    error_text[0] = '\0';
    error_last_code = 0;
}
