/* A broadcast subscriber in C: attaches the broadcast NAME (waiting up to 10 s for it
 * to appear), receives until the publisher closes, and counts what it got and missed.
 *
 *   cc subscriber.c $(pkg-config --cflags --libs shm) -o subscriber
 */
#include <stdio.h>
#include "shm.h"

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/ticks";
    shm_broadcast *b = NULL;
    shm_subscriber *s = NULL;
    shm_status st = shm_broadcast_open(name, 10ULL * 1000000000ULL, &b);
    if (st == SHM_STATUS_OK) st = shm_broadcast_subscriber(b, &s);
    if (st != SHM_STATUS_OK) {
        fprintf(stderr, "%s: %s\n", shm_status_name(st), shm_last_error_message());
        return 1;
    }
    unsigned long long got = 0, missed = 0;
    char buf[64];
    for (;;) {
        shm_received r;
        st = shm_subscriber_recv_timeout(s, buf, sizeof buf, &r, 10ULL * 1000000000ULL);
        if (st == SHM_STATUS_OK) {
            got++;
        } else if (st == SHM_STATUS_LAGGED) {
            missed += r.missed; /* lossy only: the next call goes on */
        } else if (st == SHM_STATUS_CLOSED) {
            break;
        } else {
            fprintf(stderr, "%s: %s\n", shm_status_name(st), shm_last_error_message());
            return 1;
        }
    }
    shm_subscriber_free(s);
    shm_broadcast_free(b);
    printf("received %llu, missed %llu\n", got, missed);
    return 0;
}
