// CRC-32C as TFRecord uses it: the standard check value, incremental updates and the
// mask TensorFlow applies.
#include "check.h"
#include "runner/serve/crc32c.h"

int main(void) {
    CHECK_INT(crc32c("123456789", 9), 0xE3069283u);
    CHECK_INT(crc32c("", 0), 0);
    // 32 zero bytes: the iSCSI test vector of RFC 3720 (B.4).
    unsigned char zeros[32] = {0};
    CHECK_INT(crc32c(zeros, sizeof zeros), 0x8A9136AAu);
    unsigned char ones[32];
    memset(ones, 0xFF, sizeof ones);
    CHECK_INT(crc32c(ones, sizeof ones), 0x62A8AB43u);
    // Feeding the bytes in pieces gives the same CRC.
    uint32_t c = crc32c_update(0, "1234", 4);
    c = crc32c_update(c, "56789", 5);
    CHECK_INT(c, 0xE3069283u);
    // masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8, in 32 bits.
    uint32_t crc = 0xE3069283u;
    uint32_t masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
    CHECK_INT(crc32c_masked("123456789", 9), masked);
    return check_summary();
}
