// A C++ server over shm.hpp: creates the service NAME, waits on its server and an
// interval in a WaitSet, answers N requests (each echoed back, the first byte flipped),
// and prints "served N".
#include <cstdio>
#include <vector>

#include "shm.hpp"

int main(int argc, char **argv) {
    if (argc != 3) { std::fprintf(stderr, "usage: server_cpp NAME N\n"); return 2; }
    long n = std::atol(argv[2]);
    using namespace std::chrono_literals;
    try {
        auto svc = shm::Service::create(argv[1], 256, 256, 16);
        auto server = svc.server();
        shm::WaitSet ws;
        uint64_t kserver = ws.attach(server);
        uint64_t ktick = ws.attach_interval(20ms);
        long served = 0, ticks = 0;
        while (served < n) {
            for (const shm_ready &r : ws.wait_timeout(30s)) {
                if (r.status != SHM_STATUS_OK) {
                    std::fprintf(stderr, "ready with %s\n", shm_status_name(r.status));
                    return 1;
                }
                if (r.key == ktick) {
                    ticks++;
                    continue;
                }
                if (r.key != kserver) return 1;
                while (auto req = server.receive_timeout(0s)) {
                    auto [data, len] = req->data();
                    std::vector<uint8_t> out(data, data + len);
                    if (!out.empty()) out[0] ^= 0xFF;
                    req->respond_last(out.data(), out.size());
                    served++;
                }
            }
        }
        ws.detach(ktick);
        std::printf("served %ld\n", served);
    } catch (const shm::Error &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
