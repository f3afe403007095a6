/* A sealed memfd from C: lays out a channel in a new memfd, serves the memfd to one
 * process over the Unix socket SOCKET, then sends it N checksummed messages and closes.
 * Prints "served N". */
#include "common.h"

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: memfd_server SOCKET N\n"); return 2; }
    uint64_t n = strtoull(argv[2], NULL, 10);
    uint64_t len = 0;
    shm_memory *mem = NULL;
    shm_channel *chan = NULL;
    shm_sender *tx = NULL;
    CHECK(shm_channel_segment_len(1 << 16, 1, &len));
    CHECK(shm_memory_memfd_create(len, &mem));
    CHECK(shm_channel_create_in(mem, 1 << 16, 1, &chan));
    CHECK(shm_channel_sender(chan, 0, &tx));
    CHECK(shm_memory_memfd_serve(mem, argv[1], 10ULL * 1000000000ULL));
    uint8_t msg[200];
    for (uint64_t i = 0; i < n; i++) {
        make_message(msg, sizeof msg, i);
        CHECK(shm_sender_send_timeout(tx, msg, sizeof msg, 10ULL * 1000000000ULL));
    }
    CHECK(shm_sender_free(tx));
    CHECK(shm_channel_free(chan));
    CHECK(shm_memory_free(mem));
    printf("served %llu\n", (unsigned long long)n);
    return 0;
}
