/* A C receiver: opens the channel NAME, receives COUNT messages of SIZE bytes on ring
 * 0 (every other one zero-copy: held in the ring, then released), checks each one's
 * number and checksum, and prints "received COUNT". */
#include "common.h"

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: receiver NAME COUNT SIZE\n"); return 2; }
    const char *name = argv[1];
    uint64_t count = strtoull(argv[2], NULL, 10);
    size_t size = strtoull(argv[3], NULL, 10);
    shm_channel *chan = NULL;
    shm_receiver *rx = NULL;
    CHECK(shm_channel_open(name, 10ULL * 1000 * 1000 * 1000, &chan));
    CHECK(shm_channel_receiver(chan, 0, &rx));
    uint8_t *buf = malloc(size);
    for (uint64_t i = 0; i < count; i++) {
        size_t len = 0;
        if (i % 2 == 0) {
            /* Copied into our buffer. */
            shm_received info;
            CHECK(shm_receiver_recv_timeout(rx, buf, size, &info, 10ULL * 1000 * 1000 * 1000));
            len = info.len;
        } else {
            /* Zero-copy: read in the ring, then released (copied here only to check it,
             * as a program that validates what a peer wrote does). */
            const void *data = NULL;
            CHECK(shm_receiver_recv_held_timeout(rx, &data, &len, 10ULL * 1000 * 1000 * 1000));
            EXPECT(shm_receiver_try_recv(rx, buf, size, NULL), SHM_STATUS_INVALID_ARGUMENT);
            memcpy(buf, data, len < size ? len : size);
            CHECK(shm_receiver_release(rx));
        }
        if (len != size || check_message(buf, len, i) != 0) {
            fprintf(stderr, "message %llu: wrong (len %zu)\n", (unsigned long long)i, len);
            return 1;
        }
    }
    EXPECT(shm_receiver_release(rx), SHM_STATUS_INVALID_ARGUMENT); /* nothing held */
    shm_received info;
    /* The Rust sender closes after its last message. */
    EXPECT(shm_receiver_recv_timeout(rx, buf, size, &info, 10ULL * 1000 * 1000 * 1000),
           SHM_STATUS_CLOSED);
    free(buf);
    CHECK(shm_receiver_free(rx));
    CHECK(shm_channel_free(chan));
    printf("received %llu\n", (unsigned long long)count);
    return 0;
}
