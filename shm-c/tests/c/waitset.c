/* A C program waiting on many things at once: a channel receiver (ring 0 of the channel
 * NAME-chan), a broadcast subscriber (NAME-bc) and an event listener (NAME-ev), all
 * made by the Rust peer, in one wait set, waited on with shm_waitset_wait_timeout or
 * through the set's fd and poll(2) (MODE: wait or fd). It takes what each ready end has until it has
 * N channel messages, N broadcast messages and the event ids 0..N-1, then prints
 * "waited N". */
#include <poll.h>
#include <time.h>
#include "common.h"

#define SECOND 1000000000ULL

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: waitset NAME N wait|fd\n"); return 2; }
    int mode_fd = strcmp(argv[3], "fd") == 0;
    char chan_name[200], bc_name[200], ev_name[200];
    snprintf(chan_name, sizeof chan_name, "%s-chan", argv[1]);
    snprintf(bc_name, sizeof bc_name, "%s-bc", argv[1]);
    snprintf(ev_name, sizeof ev_name, "%s-ev", argv[1]);
    uint64_t n = strtoull(argv[2], NULL, 10);
    shm_channel *chan = NULL;
    shm_broadcast *bc = NULL;
    shm_event *ev = NULL;
    shm_receiver *rx = NULL;
    shm_subscriber *sub = NULL;
    shm_listener *l = NULL;
    CHECK(shm_channel_open(chan_name, 10 * SECOND, &chan));
    CHECK(shm_broadcast_open(bc_name, 10 * SECOND, &bc));
    CHECK(shm_event_open(ev_name, 10 * SECOND, &ev));
    CHECK(shm_channel_receiver(chan, 0, &rx));
    CHECK(shm_broadcast_subscriber(bc, &sub));
    CHECK(shm_event_listener(ev, &l));
    shm_waitset *ws = NULL;
    uint64_t krx, ksub, kl, ktick;
    CHECK(shm_waitset_create(&ws));
    CHECK(shm_waitset_attach_receiver(ws, rx, &krx));
    CHECK(shm_waitset_attach_subscriber(ws, sub, &ksub));
    CHECK(shm_waitset_attach_listener(ws, l, &kl));
    CHECK(shm_waitset_attach_interval(ws, 50 * 1000000ULL, &ktick));
    EXPECT(shm_waitset_attach_interval(ws, 0, &ktick), SHM_STATUS_INVALID_ARGUMENT);
    int fd = -1;
    CHECK(shm_waitset_fd(ws, &fd));
    /* The Rust side starts sending once everything here is joined: tell it so. */
    printf("joined\n");
    fflush(stdout);
    uint64_t got_rx = 0, got_sub = 0, ids_seen = 0;
    /* One way of waiting per run (MODE): the set's own wait, or its fd with poll(2)
     * and a try, as an event loop uses it. */
    int use_fd = mode_fd;
    uint8_t seen[4096] = {0};
    uint8_t buf[256];
    time_t started = time(NULL);
    while (got_rx < n || got_sub < n || ids_seen < n) {
        /* The interval keeps the set waking: a lost readiness would spin here, not time
         * out, so the whole run has a bound of its own. */
        if (time(NULL) - started > 60) {
            fprintf(stderr, "no progress: channel %llu, broadcast %llu, ids %llu of %llu\n",
                    (unsigned long long)got_rx, (unsigned long long)got_sub,
                    (unsigned long long)ids_seen, (unsigned long long)n);
            return 1;
        }
        shm_ready ready[8];
        size_t count = 0;
        shm_status st;
        if (!use_fd) {
            st = shm_waitset_wait_timeout(ws, ready, 8, &count, 10 * SECOND);
        } else {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 10000) != 1) { fprintf(stderr, "the fd never became readable\n"); return 1; }
            st = shm_waitset_wait_timeout(ws, ready, 8, &count, 0);
            if (st == SHM_STATUS_EMPTY) continue; /* taken already by the last round */
        }
        if (st != SHM_STATUS_OK) {
            fprintf(stderr, "wait: %s: %s\n", shm_status_name(st), shm_last_error_message());
            return 1;
        }
        for (size_t i = 0; i < count; i++) {
            if (ready[i].status != SHM_STATUS_OK) {
                fprintf(stderr, "key %llu: %s\n", (unsigned long long)ready[i].key,
                        shm_status_name(ready[i].status));
                return 1;
            }
            shm_received info;
            if (ready[i].key == krx) {
                while (shm_receiver_try_recv(rx, buf, sizeof buf, &info) == SHM_STATUS_OK) {
                    if (check_message(buf, info.len, got_rx) != 0) { fprintf(stderr, "channel %llu\n", (unsigned long long)got_rx); return 1; }
                    got_rx++;
                }
            } else if (ready[i].key == ksub) {
                while (shm_subscriber_try_recv(sub, buf, sizeof buf, &info) == SHM_STATUS_OK) {
                    if (info.number != got_sub || check_message(buf, info.len, got_sub) != 0) {
                        fprintf(stderr, "broadcast %llu\n", (unsigned long long)got_sub);
                        return 1;
                    }
                    got_sub++;
                }
            } else if (ready[i].key == kl) {
                /* A small buffer on purpose: what does not fit comes at the next call. */
                uint64_t ids[16];
                size_t k = 0;
                while (shm_listener_try_wait(l, ids, 16, &k) == SHM_STATUS_OK) {
                    for (size_t j = 0; j < k; j++) {
                        if (ids[j] < 4096 && !seen[ids[j]]) { seen[ids[j]] = 1; ids_seen++; }
                    }
                }
            } else if (ready[i].key != ktick) {
                fprintf(stderr, "unknown key %llu\n", (unsigned long long)ready[i].key);
                return 1;
            }
        }
    }
    CHECK(shm_waitset_detach(ws, ktick));
    CHECK(shm_waitset_free(ws));
    CHECK(shm_listener_free(l));
    CHECK(shm_subscriber_free(sub));
    CHECK(shm_receiver_free(rx));
    CHECK(shm_event_free(ev));
    CHECK(shm_broadcast_free(bc));
    CHECK(shm_channel_free(chan));
    printf("waited %llu\n", (unsigned long long)n);
    return 0;
}
