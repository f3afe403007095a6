//! One publisher to many subscriber processes: [`Broadcast`], [`Publisher`],
//! [`Subscriber`].
//!
//! A broadcast segment (kind [`Kind::Broadcast`](crate::format::schema::Kind::Broadcast)) holds a ring of fixed-size slots, one
//! publisher and up to a fixed number of subscribers that join and leave at any time.
//! Every subscriber gets every message published while it is joined, in order, or is
//! told what it missed. Two modes, fixed at create:
//!
//! * **Reliable** ([`BroadcastMode::Reliable`], back-pressure): the publisher waits for
//!   the slowest live subscriber (spin, then futex). A subscriber whose process died, that
//!   stays behind longer than the eviction timeout, or that writes a position no honest
//!   subscriber writes, is **evicted** so that the publisher goes on; its next call is
//!   [`Error::Evicted`](crate::format::error::Error::Evicted). Nothing a subscriber writes makes the publisher read or write
//!   outside the segment or wait past the timeout.
//! * **Lossy** ([`BroadcastMode::Lossy`]): the publisher never waits. A subscriber that
//!   falls more than the ring behind gets [`Error::Lagged`](crate::format::error::Error::Lagged)`{ missed }` and resumes at the
//!   oldest message still there, the way tokio's broadcast channel reports lag. Every
//!   slot is guarded by its own sequence stamp, so a message overwritten while a
//!   subscriber copied it out is `Lagged` too, never torn data. A lossy subscriber needs
//!   no write access: on a read-only mapping ([`SharedMemory::writable`](crate::format::memory::SharedMemory::writable) is false) it
//!   writes nothing at all and polls instead of sleeping on the futex.
//!
//! Messages are copied in by the publisher and out by each subscriber (a slot can be
//! overwritten, so a subscriber never reads one in place). Typed use: create with
//! [`BroadcastOptions::record`], publish with [`Publisher::publish_record`], attach with
//! [`Broadcast::attach_record`] (a subscriber expecting another type gets
//! [`Error::SchemaMismatch`](crate::format::error::Error::SchemaMismatch) when it joins) and receive with [`Subscriber::recv_record`].
//!
//! Waiting goes through [`crate::wait::Waiter`] like the channel: subscribers spin, then
//! sleep on a futex word; the publisher makes the wake-up call only when a subscriber
//! said it sleeps (one wake per publish at most, none when nobody sleeps). The
//! publisher's death is [`RecvError::PeerDied`](crate::RecvError::PeerDied) for every subscriber once it has read what
//! was published; a clean close is [`RecvError::Closed`](crate::RecvError::Closed).
//!
//! ```
//! use shm_core::{Broadcast, BroadcastOptions, BroadcastMode, HeapMemory};
//! # fn main() -> Result<(), shm_core::Error> {
//! let opts = BroadcastOptions::new().mode(BroadcastMode::Reliable).slots(8).max_message(64);
//! let mem = HeapMemory::new(opts.segment_len()? as usize);
//! let view = mem.share();                      // another process would map the segment
//! let bcast = Broadcast::create(mem, &opts)?;
//! let mut publisher = bcast.publisher()?;
//! let mut sub = Broadcast::attach(view)?.subscriber()?;
//! publisher.publish(b"hello")?;
//! let mut buf = Vec::new();
//! assert_eq!(sub.recv_into(&mut buf)?, 5);     // its length
//! assert_eq!(sub.last_number(), Some(0));      // message number 0
//! assert_eq!(buf, b"hello");
//! # Ok(()) }
//! ```
//!
//! ## Layout (payload of a kind-4 segment, offsets from `payload_offset`)
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `mode`: 1 reliable, 2 lossy |
//! | 4 | 4 | `max_subscribers`: 1 to 1024 |
//! | 8 | 8 | `slots`: a power of two, 2 to 2^24 |
//! | 16 | 8 | `slot_size`: `16 + max_message` rounded up to 64 |
//! | 24 | 8 | `max_message` |
//! | 32 | 8 | `evict_timeout_ns` (reliable; at most one hour) |
//! | 40 | 4 | `relayed`: 0 the publisher's own stream, 1 a stream relayed from elsewhere (bridges do not export it) |
//! | 44 | 4 | `upstream`: odd while a relayed stream's source is gone (subscribers that read everything get `UpstreamLost` once per change to odd) |
//! | 48 | 8 | `base`: the first message number (0, or where a relay started: its source's number) |
//! | 56 | 8 | config seal: FNV-1a of bytes 0 to 44, checked by every attach |
//! | 128 | 8 | `tail`: messages published so far (its own line: written per message) |
//! | 256 | 4 | publisher holder: its pid, 0 when nobody publishes |
//! | 260 | 4 | `closed`: 1 once the publisher closed |
//! | 264 | 4 | `members`: bumped by every subscriber that joins |
//! | 384 | 4 | `sleepers`: subscribers sleeping or about to |
//! | 388 | 4 | `data_seq`: futex word subscribers sleep on |
//! | 512 | 4 | `publisher_sleeping` |
//! | 516 | 4 | `space_seq`: futex word the reliable publisher sleeps on |
//! | 640 + 128·i | 128 | subscriber line `i`: holder pid (4; 0 = free), `state` (4; 0 active, 1 left, 2 evicted: behind, 3 evicted: dead, 4 evicted: corrupt), `position` (8; next message it reads) |
//! | 640 + 128·max_subscribers + slot_size·k | slot_size | slot `k`: `stamp` (8; `2n+1` while message `n` is written, `2n+2` once complete), `len` (8), payload |
//!
//! A slot `len` with bit 63 set is a **notice** with no payload
//! ([`Notice`](crate::protocol::broadcast::Notice)): bits 62..56 its kind, `1` = a gap upstream: bits 55..0 say
//! how many numbers `k` (at least 1) were lost, this one included; the next message is
//! number `n + k` and `tail` jumps there (a relay keeps its source's numbers), and a
//! subscriber reads the notice as `Lagged { missed: k }`. Any other value with bit 63
//! set is corrupt.
//!
//! The protocol, with the orderings and why nothing is lost or torn, is in
//! [`protocol::broadcast`](crate::protocol::broadcast).
//!
//! ## Who writes each word, and what a reader does with any other value ([`WORDS`])
//!
#![doc = include_str!("words.md")]

#[cfg(not(loom))]
mod compat;
#[cfg(not(loom))]
mod layout;
#[cfg(not(loom))]
mod options;
#[cfg(not(loom))]
mod publisher;
#[cfg(not(loom))]
mod receive;
#[cfg(not(loom))]
mod relay;
#[cfg(not(loom))]
mod reserve;
#[cfg(not(loom))]
mod segment;
#[cfg(not(loom))]
mod subscriber;
#[cfg(not(loom))]
mod waitable;

#[cfg(not(loom))]
pub use layout::WORDS;
#[cfg(not(loom))]
pub use options::{
    BroadcastMode, BroadcastOptions, MAX_EVICT_TIMEOUT, MAX_SLOTS, MAX_SUBSCRIBERS, RELAYED_SPIN,
};
#[cfg(not(loom))]
pub use publisher::{PublishFuture, Publisher};
#[cfg(not(loom))]
pub use reserve::{DetachedPublish, PublishReserveFuture, PublishSlot};
#[cfg(not(loom))]
pub use segment::{Broadcast, BroadcastState, LineState};
#[cfg(not(loom))]
pub use subscriber::{RecvFuture, RecvRecordFuture, Subscriber};
