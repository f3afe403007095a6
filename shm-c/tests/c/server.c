/* A C server: creates the service NAME, answers N requests (each echoed back whole,
 * checked for its deadline), frees everything (removing the name), and prints
 * "served N". */
#include "common.h"

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: server NAME N\n"); return 2; }
    uint64_t n = strtoull(argv[2], NULL, 10);
    shm_service *svc = NULL;
    shm_server *s = NULL;
    CHECK(shm_service_create(argv[1], 256, 256, 16, &svc));
    CHECK(shm_service_server(svc, &s));
    shm_request *r = NULL;
    for (uint64_t i = 0; i < n; i++) {
        CHECK(shm_server_receive_timeout(s, 30ULL * 1000000000ULL, &r));
        const void *data = NULL;
        size_t len = 0;
        uint64_t left = 0;
        CHECK(shm_request_data(r, &data, &len, &left));
        if (left == 0) { fprintf(stderr, "request %llu: no time left\n", (unsigned long long)i); return 1; }
        CHECK(shm_request_respond_last(r, data, len));
        EXPECT(shm_request_respond(r, data, len), SHM_STATUS_INVALID_ARGUMENT); /* answered */
        CHECK(shm_request_free(r));
    }
    CHECK(shm_server_free(s));
    CHECK(shm_service_free(svc));
    printf("served %llu\n", (unsigned long long)n);
    return 0;
}
