/* A broadcast publisher in C: creates the reliable broadcast NAME, waits (up to 10 s)
 * for a subscriber, publishes COUNT messages ("tick <n>"), closes, and waits for its
 * subscribers to leave before it frees the segment (which removes the name).
 *
 *   cc publisher.c $(pkg-config --cflags --libs shm) -o publisher
 *   ./publisher /ticks 1000 &  ./subscriber /ticks
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "shm.h"

static int fail(const char *what, shm_status st) {
    fprintf(stderr, "%s: %s: %s\n", what, shm_status_name(st), shm_last_error_message());
    return 1;
}

static void nap_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/ticks";
    unsigned long long count = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000;
    shm_broadcast *b = NULL;
    shm_publisher *p = NULL;
    shm_status st = shm_broadcast_create(name, 64, 64, 16, 0, &b);
    if (st != SHM_STATUS_OK) return fail("shm_broadcast_create", st);
    if ((st = shm_broadcast_publisher(b, &p)) != SHM_STATUS_OK) return fail("publisher", st);
    uint32_t subs = 0;
    for (int i = 0; i < 10000 && subs == 0; i++) {
        shm_broadcast_subscriber_count(b, &subs);
        if (subs == 0) nap_ms(1);
    }
    for (unsigned long long i = 0; i < count; i++) {
        char msg[64];
        int len = snprintf(msg, sizeof msg, "tick %llu", i);
        /* Reliable: waits for the slowest subscriber, at most 5 s. */
        st = shm_publisher_publish_timeout(p, msg, (size_t)len, 5ULL * 1000000000ULL);
        if (st != SHM_STATUS_OK) return fail("publish", st);
    }
    shm_publisher_free(p); /* subscribers get SHM_STATUS_CLOSED after the last message */
    for (int i = 0; i < 10000 && subs > 0; i++) {
        shm_broadcast_subscriber_count(b, &subs);
        if (subs > 0) nap_ms(1);
    }
    shm_broadcast_free(b);
    printf("published %llu\n", count);
    return 0;
}
