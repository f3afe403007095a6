/* A C publisher: creates the reliable broadcast NAME, waits for SUBSCRIBERS to join,
 * publishes COUNT checksummed messages of SIZE bytes (every other one zero-copy:
 * reserved, written in its slot, committed), closes, and waits for the
 * subscribers to leave before it frees the segment (and so removes its name). */
#include <time.h>
#include "common.h"

static void nap(void) { struct timespec t = {0, 1000000}; nanosleep(&t, NULL); }

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: publisher NAME COUNT SIZE SUBSCRIBERS\n"); return 2; }
    const char *name = argv[1];
    uint64_t count = strtoull(argv[2], NULL, 10);
    size_t size = strtoull(argv[3], NULL, 10);
    uint32_t subs = (uint32_t)strtoul(argv[4], NULL, 10);
    shm_broadcast *b = NULL;
    shm_publisher *p = NULL;
    CHECK(shm_broadcast_create(name, size, 16, 8, 0, &b));
    CHECK(shm_broadcast_publisher(b, &p));
    uint32_t n = 0;
    for (int i = 0; i < 20000 && n < subs; i++) {
        CHECK(shm_broadcast_subscriber_count(b, &n));
        if (n < subs) nap();
    }
    if (n < subs) { fprintf(stderr, "only %u subscribers joined\n", n); return 1; }
    uint8_t *buf = malloc(size);
    for (uint64_t i = 0; i < count; i++) {
        make_message(buf, size, i);
        if (i % 2 == 0) {
            CHECK(shm_publisher_publish_timeout(p, buf, size, 10ULL * 1000 * 1000 * 1000));
        } else {
            /* Zero-copy: written into the slot itself, then committed. */
            void *slot = NULL;
            CHECK(shm_publisher_reserve_timeout(p, size, 10ULL * 1000 * 1000 * 1000, &slot));
            EXPECT(shm_publisher_try_publish(p, buf, size), SHM_STATUS_INVALID_ARGUMENT);
            memcpy(slot, buf, size);
            CHECK(shm_publisher_commit(p));
        }
    }
    EXPECT(shm_publisher_commit(p), SHM_STATUS_INVALID_ARGUMENT); /* nothing reserved */
    free(buf);
    CHECK(shm_publisher_free(p));
    for (int i = 0; i < 20000 && n > 0; i++) {
        CHECK(shm_broadcast_subscriber_count(b, &n));
        if (n > 0) nap();
    }
    CHECK(shm_broadcast_free(b));
    printf("published %llu\n", (unsigned long long)count);
    return 0;
}
