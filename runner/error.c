#include "runner/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char error_text[1024];
static _Thread_local int error_last_code;

int error_set(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_text, sizeof error_text, fmt, ap);
    va_end(ap);
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
