//! Request/response: many [`Client`]s, in any processes, send requests; each request is
//! taken by exactly one of the service's [`Server`]s, which answers with one response or
//! a stream of them.
//!
//! A service segment (kind [`Kind::Service`](crate::format::schema::Kind::Service)) holds
//! a table of request slots (`slots`, at most 4096). A client takes a free slot (one
//! compare-and-swap of its owner word), writes its request, its id and its deadline, and
//! queues it; servers take the oldest queued request by a compare-and-swap of the same
//! word, so a request goes to exactly one server (one-of-N dispatch; a server that is
//! busy simply does not look). The server answers through the slot's ring of
//! `response_depth` response entries; the client reads them and lets the slot go.
//!
//! The promises:
//!
//! * **Correlation.** The library chooses each request's id (the client's pid and a count
//!   of its process's requests, so it names one request of one client). A client checks, on every
//!   look, that its slot still names it and that id, and every response entry carries
//!   the id: a response for another request, another client or a stale id is never
//!   delivered (the wait ends with `Corrupt` instead).
//! * **Deadlines travel with the request** (`call_timeout`, `send_request_timeout`): as
//!   `CLOCK_MONOTONIC` nanoseconds, the clock every process shares. A server sees the
//!   time left ([`ActiveRequest::remaining`]); a request still queued at its deadline is
//!   never handed out; the client's wait ends at the deadline whatever the servers do.
//! * **Streams.** [`ActiveRequest::respond`] sends one response, `respond_last` the last,
//!   `respond_error` an error code; a server writing faster than its client reads waits
//!   (bounded by the deadline and the client's liveness).
//! * **Cancellation.** Dropping a [`PendingResponse`] cancels the request: a queued one
//!   leaves the queue, a taken one is marked so that its server sees
//!   [`ActiveRequest::is_cancelled`] and its `respond` says `Cancelled`.
//! * **Crashes.** A server that dies holding requests: each of their clients gets
//!   `PeerDied` (within a liveness check: 1 ms while spinning, a 20 ms slice while
//!   sleeping), or, for a request sent [idempotent](Client::set_idempotent) that had no
//!   response yet, the request goes back to the queue for another server, once. A client
//!   that dies: its queued requests are swept out of the queue (at a server's peer check,
//!   or a client's that finds every slot held), a taken one reads as cancelled to its
//!   server, and the server frees the slot when it finishes. A slot whose client and
//!   server are both dead is freed by the next sweep; no slot is ever lost.
//!
//! * **Fan-out, as an option.** [`Client::send_request_to_all`] sends a copy to every
//!   server process live now (each copy names its server, and only that server takes
//!   it) and returns one pending response per copy; a copy whose server dies before
//!   taking it ends with `PeerDied`.
//!
//! The four forms `try_call` (never waits: `Full`), `call`, `call_timeout`, `call_async`
//! send a request and wait for the first response; `send_request` returns the
//! [`PendingResponse`] to receive a stream from (`try_receive`, `receive`,
//! `receive_timeout`, `receive_async`). A server takes requests with `try_receive`,
//! `receive`, `receive_timeout`, `receive_async`, and a [`WaitSet`](crate::WaitSet) can
//! watch it among other ends.
//!
//! ```
//! use shm_core::service::{Service, ServiceOptions};
//! use shm_core::HeapMemory;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let opts = ServiceOptions::new().max_request(64).max_response(64);
//! let mem = HeapMemory::new(opts.segment_len()? as usize);
//! let view = mem.share(); // another process would map the segment
//! let svc = Service::create(mem, &opts)?;
//! let server = std::thread::spawn(move || -> Result<(), shm_core::Error> {
//!     let mut server = Service::attach(view)?.server()?;
//!     let mut req = server.receive()?;
//!     for part in req.data().to_vec().split(|&b| b == b' ') {
//!         req.respond(part)?; // a stream of responses
//!     }
//!     req.respond_last(b"end")?;
//!     Ok(())
//! });
//! let mut client = svc.client()?;
//! let mut pending = client.send_request(b"one two")?;
//! let mut got = Vec::new();
//! loop {
//!     let r = pending.receive()?;
//!     got.push(r.data);
//!     if r.last {
//!         break;
//!     }
//! }
//! assert_eq!(got, [&b"one"[..], b"two", b"end"]);
//! server.join().unwrap()?;
//! # Ok(()) }
//! ```
//!
//! ## Layout (payload of a kind-6 segment, offsets from `payload_offset`)
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 24 | `request_max`, `response_max`, `slots`, `response_depth`, `max_clients`, `max_servers` (4 bytes each) |
//! | 24 | 8 | `nonce`: the creator's random number (names the service to each process's registry of held slots) |
//! | 32 | 64 | the response record's schema (zero: bytes) |
//! | 96 | 8 | config seal: FNV-1a of bytes 0 to 96, checked by every attach |
//! | 128 | 8 | `served`: requests finished (for `hz`) |
//! | 136 | 4 | `req_seq`: the futex word servers sleep on |
//! | 140 | 4 | `server_sleepers` |
//! | 192 | 4 · max_clients | client lines: each holder's pid |
//! | next multiple of 64 | 4 · max_servers | server lines |
//! | next multiple of 64 | slots · stride | the slots |
//!
//! Each slot: a 128-byte head of two cache lines, the client's (`owner` 8, `id` 8,
//! `deadline` 8, request length 4, `flags` 4, `read` 4, `client_sleeps` 4, `queued_at`
//! 8, `target` 4) and the server's (`written` 4, `client_seq` 4, `server_sleeps` 4), the request
//! bytes (rounded to 8), then `response_depth` entries of a 16-byte head (`id` 8,
//! length 4, kind 4) and the response bytes (rounded to 8); the stride is rounded to 64.
//!
//! ## Who writes each word, and what a reader does with any other value ([`WORDS`])
//!
#![doc = include_str!("words.md")]

mod client;
mod layout;
mod options;
mod pending;
mod segment;
mod server;

pub use client::Client;
pub use layout::{MAX_ENDS, MAX_MESSAGE, MAX_RESPONSE_DEPTH, MAX_SLOTS, WORDS};
pub use options::ServiceOptions;
pub use pending::{PendingResponse, Response};
pub use segment::{Service, ServiceState, SlotState};
pub use server::{ActiveRequest, Server};
