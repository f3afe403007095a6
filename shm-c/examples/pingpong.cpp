// Round trips between two processes through a channel, from C++ (shm.hpp): the parent
// sends SIZE bytes on ring 0, a forked child echoes them on ring 1; the parent pins to
// CPU 0 and the child to CPU 1 (as shm-demo's pingpong does) and prints the p50 and
// p99 of ROUND_TRIPS round trips (after a tenth as many to warm up) as JSON.
//
//   c++ -std=c++17 -O2 pingpong.cpp $(pkg-config --cflags --libs shm) -o pingpong
//   ./pingpong 100000 64
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "shm.hpp"

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)sched_setaffinity(0, sizeof set, &set);
}

int main(int argc, char **argv) {
    using namespace std::chrono;
    long n = argc > 1 ? std::atol(argv[1]) : 100000;
    size_t size = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 64;
    long warm = std::max(n / 10, 1000L);
    std::string name = "/shm-c-pingpong-" + std::to_string(getpid());
    try {
        auto chan = shm::Channel::create(name, 1 << 16, 2);
        pid_t child = fork();
        if (child == 0) {
            // The child attaches afresh: ends do not cross a fork.
            int rc = 0;
            try {
                pin(1);
                auto c = shm::Channel::open(name, seconds(10));
                auto rx = c.receiver(0);
                auto tx = c.sender(1);
                std::vector<uint8_t> buf(size);
                for (long i = 0; i < n + warm; i++) {
                    size_t len = rx.recv(buf.data(), buf.size());
                    tx.send(buf.data(), len);
                }
            } catch (const shm::Error &e) {
                std::fprintf(stderr, "child: %s\n", e.what());
                rc = 1;
            }
            _exit(rc);
        }
        pin(0);
        auto tx = chan.sender(0);
        auto rx = chan.receiver(1);
        std::vector<uint8_t> ping(size, 7), pong(size);
        std::vector<long> ns;
        ns.reserve(n);
        for (long i = 0; i < n + warm; i++) {
            ping[0] = (uint8_t)i;
            auto t = steady_clock::now();
            tx.send(ping.data(), ping.size());
            size_t len = rx.recv(pong.data(), pong.size());
            auto dt = duration_cast<nanoseconds>(steady_clock::now() - t).count();
            if (len != size || pong[0] != ping[0]) {
                std::fprintf(stderr, "bad echo at %ld\n", i);
                return 1;
            }
            if (i >= warm) ns.push_back(dt);
        }
        int status = 0;
        waitpid(child, &status, 0);
        std::sort(ns.begin(), ns.end());
        std::printf("{\"lang\":\"c++\",\"round_trips\":%ld,\"size\":%zu,\"p50_ns\":%ld,\"p99_ns\":%ld}\n", n,
                    size, ns[ns.size() / 2], ns[ns.size() * 99 / 100]);
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
    } catch (const shm::Error &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
