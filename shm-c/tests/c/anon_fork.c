/* Anonymous memory across fork, from C: a channel laid out in anonymous shared memory,
 * a forked child that takes the receiving end from the inherited handle and checks N
 * checksummed messages, the parent sending them. Prints "forked N". */
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: anon_fork N\n"); return 2; }
    uint64_t n = strtoull(argv[1], NULL, 10);
    uint64_t len = 0;
    shm_memory *mem = NULL;
    shm_channel *chan = NULL;
    CHECK(shm_channel_segment_len(1 << 16, 1, &len));
    EXPECT(shm_channel_segment_len(1000, 1, &len), SHM_STATUS_INVALID_ARGUMENT);
    CHECK(shm_memory_anon_create(len, &mem));
    EXPECT(shm_memory_anon_create(0, &(shm_memory *){0}), SHM_STATUS_INVALID_ARGUMENT);
    CHECK(shm_channel_create_in(mem, 1 << 16, 1, &chan));
    EXPECT(shm_broadcast_attach_in(mem, &(shm_broadcast *){0}), SHM_STATUS_MISMATCH);
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        shm_receiver *rx = NULL;
        CHECK(shm_channel_receiver(chan, 0, &rx));
        uint8_t buf[128];
        for (uint64_t i = 0; i < n; i++) {
            shm_received info;
            CHECK(shm_receiver_recv_timeout(rx, buf, sizeof buf, &info, 10ULL * 1000000000ULL));
            if (check_message(buf, info.len, i) != 0) { fprintf(stderr, "child: message %llu\n", (unsigned long long)i); _exit(1); }
        }
        _exit(0);
    }
    shm_sender *tx = NULL;
    CHECK(shm_channel_sender(chan, 0, &tx));
    uint8_t msg[128];
    for (uint64_t i = 0; i < n; i++) {
        make_message(msg, sizeof msg, i);
        CHECK(shm_sender_send_timeout(tx, msg, sizeof msg, 10ULL * 1000000000ULL));
    }
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) { fprintf(stderr, "the child failed\n"); return 1; }
    CHECK(shm_sender_free(tx));
    CHECK(shm_channel_free(chan));
    CHECK(shm_memory_free(mem));
    printf("forked %llu\n", (unsigned long long)n);
    return 0;
}
