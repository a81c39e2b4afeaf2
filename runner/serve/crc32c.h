#pragma once
// CRC-32C (Castagnoli), the checksum of TensorBoard's TFRecord framing.
// Check value: crc32c("123456789") == 0xE3069283.
#include <stddef.h>
#include <stdint.h>

// Continue a CRC over `len` bytes; start with crc = 0.
uint32_t crc32c_update(uint32_t crc, const void *data, size_t len);
// CRC of one buffer.
uint32_t crc32c(const void *data, size_t len);
// TFRecord's masked form: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t crc32c_masked(const void *data, size_t len);
