/* Sends COUNT checksummed messages of SIZE bytes on the channel NAME (ring 0), then
 * reserves one more, writes half of it and is killed (SIGKILL) before the commit: its
 * Rust receiver gets the COUNT messages, then SHM_STATUS_PEER_DIED's Rust twin. */
#include <signal.h>
#include "common.h"

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: dies_mid_write NAME COUNT SIZE\n"); return 2; }
    uint64_t count = strtoull(argv[2], NULL, 10);
    size_t size = strtoull(argv[3], NULL, 10);
    shm_channel *chan = NULL;
    shm_sender *tx = NULL;
    CHECK(shm_channel_open(argv[1], 10ULL * 1000 * 1000 * 1000, &chan));
    CHECK(shm_channel_sender(chan, 0, &tx));
    uint8_t *buf = malloc(size);
    for (uint64_t i = 0; i < count; i++) {
        make_message(buf, size, i);
        CHECK(shm_sender_send_timeout(tx, buf, size, 10ULL * 1000 * 1000 * 1000));
    }
    void *slot = NULL;
    CHECK(shm_sender_reserve_timeout(tx, size, 10ULL * 1000 * 1000 * 1000, &slot));
    make_message(buf, size, count);
    memcpy(slot, buf, size / 2);
    fflush(stdout);
    raise(SIGKILL);
    return 0;
}
