// A C++ receiver over shm.hpp: opens the channel NAME, receives COUNT checksummed
// messages of SIZE bytes on ring 0, and expects the close after them; prints
// "received COUNT". A moved-from end is empty and frees nothing twice.
#include <cstdio>
#include <vector>

#include "shm.hpp"
extern "C" {
#include "common.h"
}

int main(int argc, char **argv) {
    if (argc != 4) { std::fprintf(stderr, "usage: receiver_cpp NAME COUNT SIZE\n"); return 2; }
    uint64_t count = std::strtoull(argv[2], nullptr, 10);
    size_t size = std::strtoull(argv[3], nullptr, 10);
    using namespace std::chrono_literals;
    try {
        auto chan = shm::Channel::open(argv[1], 10s);
        auto first = chan.receiver(0);
        shm::Receiver rx = std::move(first);  // move-only: `first` gives its handle up
        std::vector<uint8_t> buf(size);
        for (uint64_t i = 0; i < count; i++) {
            auto len = rx.recv_timeout(buf.data(), buf.size(), 10s);
            if (!len || *len != size || check_message(buf.data(), *len, i) != 0) {
                std::fprintf(stderr, "message %llu wrong\n", (unsigned long long)i);
                return 1;
            }
        }
        try {
            rx.recv_timeout(buf.data(), buf.size(), 10s);
            std::fprintf(stderr, "no close after the last message\n");
            return 1;
        } catch (const shm::Error &e) {
            if (e.status() != SHM_STATUS_CLOSED) throw;
        }
    } catch (const shm::Error &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    std::printf("received %llu\n", (unsigned long long)count);
    return 0;
}
