/* Every function fed what a careless or hostile caller gives it: NULLs, zero and huge
 * sizes, a handle freed twice, a segment of the wrong kind, a segment made by another
 * program. Each must return its status, never crash. NAME is a prefix for the segments
 * this program makes (it removes them). Prints "bad input refused". */
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "common.h"

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: bad_input NAME\n"); return 2; }
    char chan_name[200], other_name[200];
    snprintf(chan_name, sizeof chan_name, "%s-chan", argv[1]);
    snprintf(other_name, sizeof other_name, "%s-other", argv[1]);
    shm_channel *chan = NULL;
    shm_sender *tx = NULL;
    shm_receiver *rx = NULL;
    shm_received info;
    uint8_t buf[64];

    /* NULLs everywhere. */
    EXPECT(shm_channel_create(NULL, 4096, 1, &chan), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_channel_create(chan_name, 4096, 1, NULL), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_channel_open(NULL, 0, &chan), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_channel_sender(NULL, 0, &tx), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_sender_send(NULL, buf, 8), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_receiver_try_recv(NULL, buf, 8, &info), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_broadcast_create(NULL, 64, 4, 4, 0, NULL), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_broadcast_subscriber_count(NULL, NULL), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_channel_free(NULL), SHM_STATUS_OK);
    EXPECT(shm_sender_free(NULL), SHM_STATUS_OK);
    if (shm_last_error_message() == NULL) { fprintf(stderr, "NULL message\n"); return 1; }

    /* Sizes out of range. */
    EXPECT(shm_channel_create(chan_name, 0, 1, &chan), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_channel_create(chan_name, 1000, 1, &chan), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_channel_create(chan_name, UINT64_MAX, 1, &chan), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_channel_create(chan_name, 4096, 0, &chan), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_channel_create(chan_name, 4096, UINT32_MAX, &chan), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_channel_create("", 4096, 1, &chan), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_channel_create("/a/b", 4096, 1, &chan), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_broadcast_create(chan_name, UINT64_MAX, 4, 4, 0, &(shm_broadcast *){0}),
           SHM_STATUS_INVALID_ARGUMENT);

    /* A channel, used wrongly. */
    CHECK(shm_channel_create(chan_name, 4096, 1, &chan));
    EXPECT(shm_channel_create(chan_name, 4096, 1, &(shm_channel *){0}), SHM_STATUS_ALREADY_EXISTS);
    EXPECT(shm_channel_sender(chan, 7, &tx), SHM_STATUS_INVALID_ARGUMENT);
    CHECK(shm_channel_sender(chan, 0, &tx));
    EXPECT(shm_channel_sender(chan, 0, &(shm_sender *){0}), SHM_STATUS_ROLE_TAKEN);
    CHECK(shm_channel_receiver(chan, 0, &rx));
    EXPECT(shm_sender_try_send(tx, NULL, 8), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_sender_try_send(tx, buf, SIZE_MAX), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_sender_try_send(tx, buf, 5000), SHM_STATUS_MESSAGE_TOO_LARGE);
    EXPECT(shm_receiver_try_recv(rx, buf, sizeof buf, &info), SHM_STATUS_EMPTY);
    EXPECT(shm_receiver_recv_timeout(rx, buf, sizeof buf, &info, 1000000), SHM_STATUS_TIMEOUT);
    CHECK(shm_sender_try_send(tx, NULL, 0)); /* an empty message is a message */
    CHECK(shm_sender_try_send(tx, buf, 40));
    EXPECT(shm_receiver_try_recv(rx, NULL, 0, NULL), SHM_STATUS_OK);
    info.len = 0;
    EXPECT(shm_receiver_try_recv(rx, buf, 8, &info), SHM_STATUS_MESSAGE_TOO_LARGE);
    if (info.len != 40) { fprintf(stderr, "needed size %zu, want 40\n", info.len); return 1; }
    EXPECT(shm_receiver_try_recv(rx, NULL, 40, &info), SHM_STATUS_INVALID_ARGUMENT);
    CHECK(shm_receiver_try_recv(rx, buf, sizeof buf, &info));
    EXPECT(shm_sender_commit(tx), SHM_STATUS_INVALID_ARGUMENT); /* nothing reserved */
    void *slot = NULL;
    EXPECT(shm_sender_reserve_timeout(tx, 8, 0, NULL), SHM_STATUS_INVALID_ARGUMENT);
    CHECK(shm_sender_reserve_timeout(tx, 8, 0, &slot));
    EXPECT(shm_sender_try_send(tx, buf, 8), SHM_STATUS_INVALID_ARGUMENT); /* reserved */
    CHECK(shm_sender_abandon(tx));
    CHECK(shm_sender_try_send(tx, buf, 8));

    /* A handle freed twice is refused, not freed again. */
    CHECK(shm_receiver_free(rx));
    EXPECT(shm_receiver_free(rx), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_sender_try_send(tx, buf, 8), SHM_STATUS_CLOSED);
    CHECK(shm_sender_free(tx));
    EXPECT(shm_sender_free(tx), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_channel_free((shm_channel *)buf), SHM_STATUS_INVALID_ARGUMENT);

    /* The wrong kind: a channel opened as a broadcast. */
    shm_broadcast *b = NULL;
    EXPECT(shm_broadcast_open(chan_name, 0, &b), SHM_STATUS_MISMATCH);
    CHECK(shm_channel_free(chan));

    /* Not there. */
    EXPECT(shm_channel_open(chan_name, 0, &chan), SHM_STATUS_NOT_FOUND);
    EXPECT(shm_channel_open(chan_name, 2000000, &chan), SHM_STATUS_NOT_FOUND);

    /* A segment made by another program (here: raw shm_open + ftruncate + mmap, the
     * tutorial's writer): not a channel. */
    int fd = shm_open(other_name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0) { perror("shm_open"); return 1; }
    uint64_t *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    p[0] = 100; p[1] = 876; p[2] = 8021;
    shm_status st = shm_channel_open(other_name, 0, &chan);
    if (st != SHM_STATUS_MISMATCH) {
        fprintf(stderr, "foreign segment: %s (%s)\n", shm_status_name(st), shm_last_error_message());
        return 1;
    }
    munmap(p, 4096);
    close(fd);
    shm_unlink(other_name);

    /* A service nobody answers: a server's try finds nothing, a call ends at its
     * deadline; a response buffer of NULL with a size is refused. */
    char svc_name[200];
    snprintf(svc_name, sizeof svc_name, "%s-svc", argv[1]);
    shm_service *svc = NULL;
    shm_server *server = NULL;
    shm_client *client = NULL;
    shm_request *req = NULL;
    EXPECT(shm_service_create(svc_name, 0, 64, 4, &svc), SHM_STATUS_INVALID_ARGUMENT);
    CHECK(shm_service_create(svc_name, 64, 64, 4, &svc));
    CHECK(shm_service_server(svc, &server));
    CHECK(shm_service_client(svc, &client));
    EXPECT(shm_server_receive_timeout(server, 0, &req), SHM_STATUS_EMPTY);
    EXPECT(shm_server_receive_timeout(server, 1000000, &req), SHM_STATUS_TIMEOUT);
    EXPECT(shm_client_call_timeout(client, buf, 8, NULL, 8, &info, 1000000), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_client_call_timeout(client, buf, 65, buf, 64, &info, 1000000), SHM_STATUS_MESSAGE_TOO_LARGE);
    EXPECT(shm_client_call_timeout(client, buf, 8, buf, 64, &info, 1000000), SHM_STATUS_TIMEOUT);
    EXPECT(shm_request_respond(NULL, buf, 8), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_request_data(NULL, NULL, NULL, NULL), SHM_STATUS_INVALID_ARGUMENT);
    CHECK(shm_client_free(client));
    CHECK(shm_server_free(server));
    CHECK(shm_service_free(svc));
    EXPECT(shm_service_free(svc), SHM_STATUS_INVALID_ARGUMENT);

    /* Status values C can pass that are none. */
    if (strcmp(shm_status_name(12345), "SHM_STATUS_UNKNOWN") != 0) return 1;
    if (strcmp(shm_status_name(-1), "SHM_STATUS_UNKNOWN") != 0) return 1;
    if (strcmp(shm_status_name(SHM_STATUS_LAGGED), "SHM_STATUS_LAGGED") != 0) return 1;
    /* A panic inside the library comes back as a status (the hook is not in shm.h). */
    extern shm_status shm_test_panic(void);
    EXPECT(shm_test_panic(), SHM_STATUS_PANIC);
    printf("bad input refused\n");
    return 0;
}
