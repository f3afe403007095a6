// shm from C++17: a header-only wrapper over the C API of shm.h.
//
// * Handles are RAII, move-only classes (Channel, Sender, Receiver, Broadcast, Publisher,
//   Subscriber); each frees its C handle in its destructor.
// * Errors are exceptions (shm::Error, a std::runtime_error carrying the shm_status and
//   the library's message): a closed peer, a dead peer, corruption or a bad argument end
//   what the caller was doing, and an exception cannot be ignored by mistake. The
//   outcomes a caller asks for are not errors: try_ forms return false / std::nullopt
//   when they would wait, _timeout forms when the time runs out, and a broadcast
//   receive reports a lag in its result (Received::missed) rather than throwing.
// * Buffers are (pointer, size) pairs or any contiguous container with data() and
//   size() (std::vector, std::string, std::array, std::span in C++20); timeouts are
//   std::chrono durations.
#ifndef SHM_HPP
#define SHM_HPP

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "shm.h"

namespace shm {

// A failed call: the status and the library's message for it.
class Error : public std::runtime_error {
  public:
    Error(shm_status status, const char *what)
        : std::runtime_error(std::string(shm_status_name(status)) + ": " + what), status_(status) {}
    shm_status status() const noexcept { return status_; }

  private:
    shm_status status_;
};

namespace detail {
inline void check(shm_status s) {
    if (s != SHM_STATUS_OK) throw Error(s, shm_last_error_message());
}
template <class Rep, class Period>
inline uint64_t nanos(std::chrono::duration<Rep, Period> d) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    return ns <= 0 ? 0 : (uint64_t)ns >= SHM_FOREVER ? SHM_FOREVER - 1 : (uint64_t)ns;
}
// One C handle and its free function: move-only.
template <class T, shm_status (*Free)(T *)>
class Handle {
  public:
    explicit Handle(T *p = nullptr) noexcept : p_(p) {}
    Handle(Handle &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Handle &operator=(Handle &&o) noexcept {
        if (this != &o) {
            reset();
            p_ = std::exchange(o.p_, nullptr);
        }
        return *this;
    }
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    ~Handle() { reset(); }
    T *get() const noexcept { return p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }

  private:
    void reset() noexcept {
        if (p_) (void)Free(std::exchange(p_, nullptr));
    }
    T *p_;
};
}  // namespace detail

// What a receive delivered (see shm_received).
using Received = shm_received;

// The sending end of one ring.
class Sender {
  public:
    explicit Sender(shm_sender *p) noexcept : h_(p) {}
    void send(const void *data, size_t len) { detail::check(shm_sender_send(h_.get(), data, len)); }
    template <class C> void send(const C &c) { send(c.data(), c.size() * sizeof(*c.data())); }
    // false: no room now.
    bool try_send(const void *data, size_t len) {
        shm_status s = shm_sender_try_send(h_.get(), data, len);
        if (s == SHM_STATUS_FULL) return false;
        detail::check(s);
        return true;
    }
    // false: no room within `timeout`.
    template <class Rep, class Period>
    bool send_timeout(const void *data, size_t len, std::chrono::duration<Rep, Period> timeout) {
        shm_status s = shm_sender_send_timeout(h_.get(), data, len, detail::nanos(timeout));
        if (s == SHM_STATUS_TIMEOUT) return false;
        detail::check(s);
        return true;
    }
    // Room for `len` bytes in the ring itself (write them, then commit() or abandon()):
    // nullptr when there is none within `timeout`.
    template <class Rep, class Period>
    void *reserve_timeout(size_t len, std::chrono::duration<Rep, Period> timeout) {
        void *slot = nullptr;
        shm_status s = shm_sender_reserve_timeout(h_.get(), len, detail::nanos(timeout), &slot);
        if (s == SHM_STATUS_TIMEOUT) return nullptr;
        detail::check(s);
        return slot;
    }
    void commit() { detail::check(shm_sender_commit(h_.get())); }
    void abandon() { detail::check(shm_sender_abandon(h_.get())); }

  private:
    detail::Handle<shm_sender, shm_sender_free> h_;
};

// The receiving end of one ring.
class Receiver {
  public:
    explicit Receiver(shm_receiver *p) noexcept : h_(p) {}
    // The message's length (the message goes into buf[0..cap)).
    size_t recv(void *buf, size_t cap) {
        Received r{};
        detail::check(shm_receiver_recv(h_.get(), buf, cap, &r));
        return r.len;
    }
    // std::nullopt: nothing now.
    std::optional<size_t> try_recv(void *buf, size_t cap) {
        Received r{};
        shm_status s = shm_receiver_try_recv(h_.get(), buf, cap, &r);
        if (s == SHM_STATUS_EMPTY) return std::nullopt;
        detail::check(s);
        return r.len;
    }
    // std::nullopt: nothing within `timeout`.
    template <class Rep, class Period>
    std::optional<size_t> recv_timeout(void *buf, size_t cap, std::chrono::duration<Rep, Period> timeout) {
        Received r{};
        shm_status s = shm_receiver_recv_timeout(h_.get(), buf, cap, &r, detail::nanos(timeout));
        if (s == SHM_STATUS_TIMEOUT) return std::nullopt;
        detail::check(s);
        return r.len;
    }

  private:
    detail::Handle<shm_receiver, shm_receiver_free> h_;
};

// A channel in a named POSIX segment.
class Channel {
  public:
    static Channel create(const std::string &name, uint64_t capacity, uint32_t rings = 2) {
        shm_channel *p = nullptr;
        detail::check(shm_channel_create(name.c_str(), capacity, rings, &p));
        return Channel(p);
    }
    template <class Rep, class Period>
    static Channel open(const std::string &name, std::chrono::duration<Rep, Period> wait) {
        shm_channel *p = nullptr;
        detail::check(shm_channel_open(name.c_str(), detail::nanos(wait), &p));
        return Channel(p);
    }
    Sender sender(uint32_t ring) {
        shm_sender *p = nullptr;
        detail::check(shm_channel_sender(h_.get(), ring, &p));
        return Sender(p);
    }
    Receiver receiver(uint32_t ring) {
        shm_receiver *p = nullptr;
        detail::check(shm_channel_receiver(h_.get(), ring, &p));
        return Receiver(p);
    }

  private:
    explicit Channel(shm_channel *p) noexcept : h_(p) {}
    detail::Handle<shm_channel, shm_channel_free> h_;
};

// The publishing end of a broadcast.
class Publisher {
  public:
    explicit Publisher(shm_publisher *p) noexcept : h_(p) {}
    void publish(const void *data, size_t len) { detail::check(shm_publisher_publish(h_.get(), data, len)); }
    template <class C> void publish(const C &c) { publish(c.data(), c.size() * sizeof(*c.data())); }
    bool try_publish(const void *data, size_t len) {
        shm_status s = shm_publisher_try_publish(h_.get(), data, len);
        if (s == SHM_STATUS_FULL) return false;
        detail::check(s);
        return true;
    }
    template <class Rep, class Period>
    bool publish_timeout(const void *data, size_t len, std::chrono::duration<Rep, Period> timeout) {
        shm_status s = shm_publisher_publish_timeout(h_.get(), data, len, detail::nanos(timeout));
        if (s == SHM_STATUS_TIMEOUT) return false;
        detail::check(s);
        return true;
    }

  private:
    detail::Handle<shm_publisher, shm_publisher_free> h_;
};

// One subscriber of a broadcast. A receive returns what it delivered: a message
// (len, number) or a lag (missed > 0, no message: the next call goes on).
class Subscriber {
  public:
    explicit Subscriber(shm_subscriber *p) noexcept : h_(p) {}
    Received recv(void *buf, size_t cap) { return take(shm_subscriber_recv(h_.get(), buf, cap, &r_)); }
    std::optional<Received> try_recv(void *buf, size_t cap) {
        shm_status s = shm_subscriber_try_recv(h_.get(), buf, cap, &r_);
        if (s == SHM_STATUS_EMPTY) return std::nullopt;
        return take(s);
    }
    template <class Rep, class Period>
    std::optional<Received> recv_timeout(void *buf, size_t cap, std::chrono::duration<Rep, Period> timeout) {
        shm_status s = shm_subscriber_recv_timeout(h_.get(), buf, cap, &r_, detail::nanos(timeout));
        if (s == SHM_STATUS_TIMEOUT) return std::nullopt;
        return take(s);
    }

  private:
    Received take(shm_status s) {
        if (s != SHM_STATUS_LAGGED) detail::check(s);
        return r_;
    }
    detail::Handle<shm_subscriber, shm_subscriber_free> h_;
    Received r_{};
};

// A broadcast in a named POSIX segment.
class Broadcast {
  public:
    static Broadcast create(const std::string &name, uint64_t max_message, uint64_t slots,
                            uint32_t max_subscribers, bool lossy) {
        shm_broadcast *p = nullptr;
        detail::check(shm_broadcast_create(name.c_str(), max_message, slots, max_subscribers, lossy, &p));
        return Broadcast(p);
    }
    template <class Rep, class Period>
    static Broadcast open(const std::string &name, std::chrono::duration<Rep, Period> wait) {
        shm_broadcast *p = nullptr;
        detail::check(shm_broadcast_open(name.c_str(), detail::nanos(wait), &p));
        return Broadcast(p);
    }
    Publisher publisher() {
        shm_publisher *p = nullptr;
        detail::check(shm_broadcast_publisher(h_.get(), &p));
        return Publisher(p);
    }
    Subscriber subscriber() {
        shm_subscriber *p = nullptr;
        detail::check(shm_broadcast_subscriber(h_.get(), &p));
        return Subscriber(p);
    }
    uint32_t subscriber_count() {
        uint32_t n = 0;
        detail::check(shm_broadcast_subscriber_count(h_.get(), &n));
        return n;
    }

  private:
    explicit Broadcast(shm_broadcast *p) noexcept : h_(p) {}
    detail::Handle<shm_broadcast, shm_broadcast_free> h_;
};

}  // namespace shm

#endif
