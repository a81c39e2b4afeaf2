#include "runner/units.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int units_parse_size(const char *text, uint64_t *bytes) {
    if (!text) return -1;
    while (isspace((unsigned char)*text))
        text++;
    if (!isdigit((unsigned char)*text) && *text != '.') return -1;
    errno = 0;
    char *end = NULL;
    double value = strtod(text, &end);
    if (errno || end == text || !isfinite(value) || value < 0) return -1;
    while (isspace((unsigned char)*end))
        end++;
    static const struct {
        const char *suffix;
        double scale;
    } UNITS[] = {
        {"", 1},         {"b", 1},       {"k", 0x1p10},   {"kb", 0x1p10},  {"kib", 0x1p10},
        {"m", 0x1p20},   {"mb", 0x1p20}, {"mib", 0x1p20}, {"g", 0x1p30},   {"gb", 0x1p30},
        {"gib", 0x1p30}, {"t", 0x1p40},  {"tb", 0x1p40},  {"tib", 0x1p40},
    };
    size_t suffix_len = strlen(end);
    while (suffix_len && isspace((unsigned char)end[suffix_len - 1]))
        suffix_len--;
    for (size_t i = 0; i < sizeof UNITS / sizeof UNITS[0]; i++) {
        if (strlen(UNITS[i].suffix) != suffix_len) continue;
        if (strncasecmp(end, UNITS[i].suffix, suffix_len) != 0) continue;
        double total = value * UNITS[i].scale;
        if (UNITS[i].scale == 1 && value != floor(value)) return -1; // "1.5" bytes
        total = floor(total + 0.5);
        if (total >= 0x1p64) return -1;
        *bytes = (uint64_t)total;
        return 0;
    }
    return -1;
}

char *units_format_size(uint64_t bytes, char *out, size_t size) {
    static const char *NAMES[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double value = (double)bytes;
    int unit = 0;
    while (value >= 1024 && unit < 6) {
        value /= 1024;
        unit++;
    }
    if (unit == 0)
        snprintf(out, size, "%llu B", (unsigned long long)bytes);
    else
        snprintf(out, size, "%.1f %s", value, NAMES[unit]);
    return out;
}
