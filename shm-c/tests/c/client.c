/* A C client of a Rust service: opens the service NAME, makes N calls of checksummed
 * 64-byte requests and checks each response is its own request echoed; then one call
 * the server answers with error 42, and a response larger than the buffer. Prints
 * "called N". */
#include "common.h"

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: client NAME N\n"); return 2; }
    uint64_t n = strtoull(argv[2], NULL, 10);
    shm_service *svc = NULL;
    shm_client *c = NULL;
    CHECK(shm_service_open(argv[1], 10ULL * 1000000000ULL, &svc));
    CHECK(shm_service_client(svc, &c));
    uint8_t req[64], resp[64];
    shm_received info;
    for (uint64_t i = 0; i < n; i++) {
        make_message(req, sizeof req, i);
        CHECK(shm_client_call_timeout(c, req, sizeof req, resp, sizeof resp, &info,
                                      10ULL * 1000000000ULL));
        if (info.len != sizeof req || check_message(resp, info.len, i) != 0) {
            fprintf(stderr, "call %llu: a response that is not its own\n", (unsigned long long)i);
            return 1;
        }
    }
    /* Request number 0xE: the Rust server answers with error 42. */
    make_message(req, sizeof req, 0xE0000000ULL);
    EXPECT(shm_client_call_timeout(c, req, sizeof req, resp, sizeof resp, &info,
                                   10ULL * 1000000000ULL),
           SHM_STATUS_SERVER_ERROR);
    if (info.number != 42) { fprintf(stderr, "error code %llu\n", (unsigned long long)info.number); return 1; }
    /* A buffer too small for the echo. */
    make_message(req, sizeof req, 7);
    EXPECT(shm_client_call_timeout(c, req, sizeof req, resp, 8, &info, 10ULL * 1000000000ULL),
           SHM_STATUS_MESSAGE_TOO_LARGE);
    if (info.len != sizeof req) { fprintf(stderr, "needed %zu\n", info.len); return 1; }
    CHECK(shm_client_free(c));
    CHECK(shm_service_free(svc));
    printf("called %llu\n", (unsigned long long)n);
    return 0;
}
