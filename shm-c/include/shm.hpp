// shm from C++17: a header-only wrapper over the C API of shm.h.
//
// * Handles are RAII, move-only classes (Channel, Sender, Receiver, Broadcast, Publisher,
//   Subscriber, SeqLock<T>, Service, Client, Server, Request, Event, Notifier, Listener,
//   WaitSet); each frees its C handle in its destructor.
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
#include <vector>

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

// A seqlock record of a type the program describes (shm_schema): one writer, any
// number of readers, never a torn value. T must be trivially copyable.
template <class T>
class SeqLock {
  public:
    static SeqLock create(const std::string &name, const char *type_name, const T &initial, uint32_t version = 1) {
        shm_schema s{type_name, version, sizeof(T), alignof(T)};
        shm_seqlock *p = nullptr;
        detail::check(shm_seqlock_create(name.c_str(), &s, &initial, &p));
        return SeqLock(p);
    }
    template <class Rep, class Period>
    static SeqLock open(const std::string &name, const char *type_name, std::chrono::duration<Rep, Period> wait,
                        uint32_t version = 1) {
        shm_schema s{type_name, version, sizeof(T), alignof(T)};
        shm_seqlock *p = nullptr;
        detail::check(shm_seqlock_open(name.c_str(), &s, detail::nanos(wait), &p));
        return SeqLock(p);
    }
    T load() {
        T v;
        detail::check(shm_seqlock_load(h_.get(), &v, sizeof v));
        return v;
    }
    void store(const T &v) { detail::check(shm_seqlock_store(h_.get(), &v, sizeof v)); }

  private:
    explicit SeqLock(shm_seqlock *p) noexcept : h_(p) {}
    detail::Handle<shm_seqlock, shm_seqlock_free> h_;
};

// The calling end of a service.
class Client {
  public:
    explicit Client(shm_client *p) noexcept : h_(p) {}
    // The response's length (it goes into resp[0..cap)); std::nullopt when the deadline
    // passed. An error response throws shm::Error with SHM_STATUS_SERVER_ERROR (its code
    // in last_error_code()).
    template <class Rep, class Period>
    std::optional<size_t> call_timeout(const void *req, size_t len, void *resp, size_t cap,
                                       std::chrono::duration<Rep, Period> timeout) {
        Received r{};
        shm_status s = shm_client_call_timeout(h_.get(), req, len, resp, cap, &r, detail::nanos(timeout));
        code_ = s == SHM_STATUS_SERVER_ERROR ? (uint32_t)r.number : 0;
        if (s == SHM_STATUS_TIMEOUT) return std::nullopt;
        detail::check(s);
        return r.len;
    }
    uint32_t last_error_code() const noexcept { return code_; }

  private:
    detail::Handle<shm_client, shm_client_free> h_;
    uint32_t code_ = 0;
};

// One request a server took: its bytes, and the ways to answer it.
class Request {
  public:
    explicit Request(shm_request *p) noexcept : h_(p) {}
    std::pair<const uint8_t *, size_t> data() {
        const void *d = nullptr;
        size_t n = 0;
        detail::check(shm_request_data(h_.get(), &d, &n, nullptr));
        return {static_cast<const uint8_t *>(d), n};
    }
    void respond(const void *data, size_t len) { detail::check(shm_request_respond(h_.get(), data, len)); }
    void respond_last(const void *data, size_t len) { detail::check(shm_request_respond_last(h_.get(), data, len)); }
    void respond_error(uint32_t code) { detail::check(shm_request_respond_error(h_.get(), code)); }

  private:
    detail::Handle<shm_request, shm_request_free> h_;
};

// The answering end of a service.
class Server {
  public:
    explicit Server(shm_server *p) noexcept : h_(p) {}
    // The oldest queued request; std::nullopt when none came within `timeout`.
    template <class Rep, class Period>
    std::optional<Request> receive_timeout(std::chrono::duration<Rep, Period> timeout) {
        shm_request *p = nullptr;
        shm_status s = shm_server_receive_timeout(h_.get(), detail::nanos(timeout), &p);
        if (s == SHM_STATUS_TIMEOUT || s == SHM_STATUS_EMPTY) return std::nullopt;
        detail::check(s);
        return Request(p);
    }
    shm_server *get() const noexcept { return h_.get(); }

  private:
    detail::Handle<shm_server, shm_server_free> h_;
};

// A service in a named POSIX segment.
class Service {
  public:
    static Service create(const std::string &name, uint32_t max_request, uint32_t max_response, uint32_t slots) {
        shm_service *p = nullptr;
        detail::check(shm_service_create(name.c_str(), max_request, max_response, slots, &p));
        return Service(p);
    }
    template <class Rep, class Period>
    static Service open(const std::string &name, std::chrono::duration<Rep, Period> wait) {
        shm_service *p = nullptr;
        detail::check(shm_service_open(name.c_str(), detail::nanos(wait), &p));
        return Service(p);
    }
    Client client() {
        shm_client *p = nullptr;
        detail::check(shm_service_client(h_.get(), &p));
        return Client(p);
    }
    Server server() {
        shm_server *p = nullptr;
        detail::check(shm_service_server(h_.get(), &p));
        return Server(p);
    }

  private:
    explicit Service(shm_service *p) noexcept : h_(p) {}
    detail::Handle<shm_service, shm_service_free> h_;
};

// Payload-free notifications by id.
class Notifier {
  public:
    explicit Notifier(shm_notifier *p) noexcept : h_(p) {}
    void notify(uint64_t id) { detail::check(shm_notifier_notify(h_.get(), id)); }

  private:
    detail::Handle<shm_notifier, shm_notifier_free> h_;
};

class Listener {
  public:
    explicit Listener(shm_listener *p) noexcept : h_(p) {}
    // The ids notified since the last call (up to 4096); empty when none came within
    // `timeout`.
    template <class Rep, class Period>
    std::vector<uint64_t> wait_timeout(std::chrono::duration<Rep, Period> timeout) {
        std::vector<uint64_t> ids(4096);
        size_t n = 0;
        shm_status s = shm_listener_wait_timeout(h_.get(), ids.data(), ids.size(), &n, detail::nanos(timeout));
        if (s == SHM_STATUS_TIMEOUT || s == SHM_STATUS_EMPTY) return {};
        detail::check(s);
        ids.resize(n);
        return ids;
    }
    shm_listener *get() const noexcept { return h_.get(); }

  private:
    detail::Handle<shm_listener, shm_listener_free> h_;
};

class Event {
  public:
    static Event create(const std::string &name, uint32_t max_ids, uint32_t max_notifiers) {
        shm_event *p = nullptr;
        detail::check(shm_event_create(name.c_str(), max_ids, max_notifiers, &p));
        return Event(p);
    }
    template <class Rep, class Period>
    static Event open(const std::string &name, std::chrono::duration<Rep, Period> wait) {
        shm_event *p = nullptr;
        detail::check(shm_event_open(name.c_str(), detail::nanos(wait), &p));
        return Event(p);
    }
    Notifier notifier() {
        shm_notifier *p = nullptr;
        detail::check(shm_event_notifier(h_.get(), &p));
        return Notifier(p);
    }
    Listener listener() {
        shm_listener *p = nullptr;
        detail::check(shm_event_listener(h_.get(), &p));
        return Listener(p);
    }

  private:
    explicit Event(shm_event *p) noexcept : h_(p) {}
    detail::Handle<shm_event, shm_event_free> h_;
};

// Many ends waited on at once. The ends stay the caller's (and must outlive their
// attachment); a ready key means the end's try call has something (or its error).
class WaitSet {
  public:
    WaitSet() {
        shm_waitset *p = nullptr;
        detail::check(shm_waitset_create(&p));
        h_ = detail::Handle<shm_waitset, shm_waitset_free>(p);
    }
    uint64_t attach(Listener &l) { return key(shm_waitset_attach_listener(h_.get(), l.get(), &k_)); }
    uint64_t attach(Server &s) { return key(shm_waitset_attach_server(h_.get(), s.get(), &k_)); }
    template <class Rep, class Period>
    uint64_t attach_interval(std::chrono::duration<Rep, Period> every) {
        return key(shm_waitset_attach_interval(h_.get(), detail::nanos(every), &k_));
    }
    void detach(uint64_t key) { detail::check(shm_waitset_detach(h_.get(), key)); }
    // The ready attachments (empty when nothing was ready within `timeout`).
    template <class Rep, class Period>
    std::vector<shm_ready> wait_timeout(std::chrono::duration<Rep, Period> timeout) {
        std::vector<shm_ready> ready(128);
        size_t n = 0;
        shm_status s = shm_waitset_wait_timeout(h_.get(), ready.data(), ready.size(), &n, detail::nanos(timeout));
        if (s == SHM_STATUS_TIMEOUT || s == SHM_STATUS_EMPTY) return {};
        detail::check(s);
        ready.resize(n);
        return ready;
    }
    // Readable while anything is ready: for poll/epoll; owned by the set.
    int fd() {
        int f = -1;
        detail::check(shm_waitset_fd(h_.get(), &f));
        return f;
    }

  private:
    uint64_t key(shm_status s) {
        detail::check(s);
        return k_;
    }
    detail::Handle<shm_waitset, shm_waitset_free> h_;
    uint64_t k_ = 0;
};

}  // namespace shm

#endif
