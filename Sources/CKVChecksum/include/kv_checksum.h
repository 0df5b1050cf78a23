#ifndef KV_CHECKSUM_H
#define KV_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has a CRC-32C instruction kv_crc32c_hw can use (x86-64 with SSE4.2), else 0.
int kv_crc32c_hw_available(void);

/// CRC-32C (Castagnoli, reflected) of `length` bytes at `bytes`, continuing from `crc`, without the initial and
/// final inversion (the caller does both). Only call it when kv_crc32c_hw_available() returned 1.
uint32_t kv_crc32c_hw(uint32_t crc, const uint8_t *bytes, size_t length);

#endif
