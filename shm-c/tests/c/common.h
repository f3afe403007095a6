/* What the C test programs share: the checksummed message of the Rust tests
 * (shm-c/tests/c.rs) and a check that prints the status and the library's message. */
#ifndef SHM_TEST_COMMON_H
#define SHM_TEST_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "shm.h"

/* Message `seq` of `len` bytes (at least 16): the number, a checksum of the rest, then
 * bytes derived from the number. */
static inline void make_message(uint8_t *buf, size_t len, uint64_t seq) {
    uint64_t sum = 0;
    for (size_t i = 16; i < len; i++) {
        buf[i] = (uint8_t)(seq * 31 + i);
        sum = sum * 1099511628211ULL + buf[i];
    }
    memcpy(buf, &seq, 8);
    memcpy(buf + 8, &sum, 8);
}

/* 0 if `buf` is message `seq` of `len` bytes, whole. */
static inline int check_message(const uint8_t *buf, size_t len, uint64_t seq) {
    uint64_t got, sum = 0, want_sum;
    if (len < 16) return -1;
    memcpy(&got, buf, 8);
    memcpy(&want_sum, buf + 8, 8);
    if (got != seq) return -2;
    for (size_t i = 16; i < len; i++) {
        if (buf[i] != (uint8_t)(seq * 31 + i)) return -3;
        sum = sum * 1099511628211ULL + buf[i];
    }
    return sum == want_sum ? 0 : -4;
}

#define CHECK(call)                                                               \
    do {                                                                          \
        shm_status st_ = (call);                                                  \
        if (st_ != SHM_STATUS_OK) {                                               \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call,     \
                    shm_status_name(st_), shm_last_error_message());              \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

#define EXPECT(call, want)                                                        \
    do {                                                                          \
        shm_status st_ = (call);                                                  \
        if (st_ != (want)) {                                                      \
            fprintf(stderr, "%s:%d: %s: got %s (%s), want %s\n", __FILE__,        \
                    __LINE__, #call, shm_status_name(st_),                        \
                    shm_last_error_message(), shm_status_name(want));             \
            exit(1);                                                              \
        }                                                                         \
    } while (0)
#endif
