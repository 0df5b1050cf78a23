// CRC-32C with the CPU's own instruction (SSE4.2 `crc32`), eight bytes per step. Compiled for the SSE4.2
// target only inside the functions that use it, so the binary still runs on CPUs without it: callers check
// kv_crc32c_hw_available() first and use the table-driven code in Swift otherwise.
#include "kv_checksum.h"

#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>

int kv_crc32c_hw_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

__attribute__((target("sse4.2")))
uint32_t kv_crc32c_hw(uint32_t crc, const uint8_t *bytes, size_t length) {
    uint64_t wide = crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, bytes, sizeof word);
        wide = _mm_crc32_u64(wide, word);
        bytes += 8;
        length -= 8;
    }
    uint32_t narrow = (uint32_t)wide;
    while (length > 0) {
        narrow = _mm_crc32_u8(narrow, *bytes);
        bytes += 1;
        length -= 1;
    }
    return narrow;
}
#else
int kv_crc32c_hw_available(void) { return 0; }

uint32_t kv_crc32c_hw(uint32_t crc, const uint8_t *bytes, size_t length) {
    (void)bytes;
    (void)length;
    return crc;
}
#endif
