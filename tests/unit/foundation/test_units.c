// Sizes as docker and Batch users write them.
#include "check.h"
#include "runner/units.h"

static uint64_t parsed(const char *text) {
    uint64_t bytes = 12345;
    return units_parse_size(text, &bytes) == 0 ? bytes : 0xdeadull;
}

int main(void) {
    CHECK_INT(parsed("15gb"), 15ull << 30);
    CHECK_INT(parsed("15GB"), 15ull << 30);
    CHECK_INT(parsed("15g"), 15ull << 30);
    CHECK_INT(parsed("15GiB"), 15ull << 30);
    CHECK_INT(parsed("512m"), 512ull << 20);
    CHECK_INT(parsed("512 MiB"), 512ull << 20);
    CHECK_INT(parsed("64k"), 64ull << 10);
    CHECK_INT(parsed("1.5g"), 3ull << 29);
    CHECK_INT(parsed("2t"), 2ull << 40);
    CHECK_INT(parsed("1048576"), 1048576);
    CHECK_INT(parsed("0"), 0);
    CHECK_INT(parsed("100b"), 100);
    // malformed
    CHECK_INT(parsed(""), 0xdead);
    CHECK_INT(parsed("gb"), 0xdead);
    CHECK_INT(parsed("-1g"), 0xdead);
    CHECK_INT(parsed("15 parsecs"), 0xdead);
    CHECK_INT(parsed("1.5"), 0xdead);          // half a byte
    CHECK_INT(parsed("99999999999t"), 0xdead); // overflows 64 bits
    CHECK_INT(parsed("nan"), 0xdead);
    CHECK_INT(parsed("inf"), 0xdead);
    CHECK_INT(parsed("15gbx"), 0xdead);
    uint64_t b;
    CHECK_INT(units_parse_size(NULL, &b), -1);

    char out[32];
    CHECK_STR(units_format_size(15ull << 30, out, sizeof out), "15.0 GiB");
    CHECK_STR(units_format_size(512ull << 20, out, sizeof out), "512.0 MiB");
    CHECK_STR(units_format_size(900, out, sizeof out), "900 B");
    return check_summary();
}
