#include "runner/serve/crc32c.h"

#include <pthread.h>

// Reflected polynomial of CRC-32C. A byte-wise table is plenty: event records are a
// few dozen bytes and are written once per scalar.
#define CRC32C_POLY 0x82F63B78u

static uint32_t crc32c_table[256];
static pthread_once_t crc32c_table_once = PTHREAD_ONCE_INIT;

static void crc32c_table_build(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc32c_table[i] = c;
    }
}

uint32_t crc32c_update(uint32_t crc, const void *data, size_t len) {
    pthread_once(&crc32c_table_once, crc32c_table_build);
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++) crc = crc32c_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

uint32_t crc32c(const void *data, size_t len) {
    return crc32c_update(0, data, len);
}

uint32_t crc32c_masked(const void *data, size_t len) {
    uint32_t crc = crc32c(data, len);
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}
