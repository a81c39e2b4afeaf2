#pragma once
// Sizes as people write them for docker and Batch: "15gb", "512m", "64MiB", "1.5g",
// "1048576" (bytes). Units are binary (k = 1024), as docker's --shm-size reads them.
#include <stddef.h>
#include <stdint.h>

// Parse `text` into bytes. Returns 0, or -1 for an empty, negative, malformed or
// overflowing value.
int units_parse_size(const char *text, uint64_t *bytes);
// "15.0 GiB", "512.0 MiB", "900 B" into `out`; returns `out`.
char *units_format_size(uint64_t bytes, char *out, size_t size);
