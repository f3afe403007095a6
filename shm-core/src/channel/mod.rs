//! A zero-copy message channel between two processes, over any [`SharedMemory`](crate::format::memory::SharedMemory).
//!
//! A channel segment (kind [`Kind::Channel`](crate::format::schema::Kind::Channel)) holds one or two single-producer
//! single-consumer rings. By convention ring 0 carries messages from the creator to the
//! process that attaches, and ring 1 (when there are two) the other way. Messages are
//! variable-size byte strings, written in place ([`Sender::reserve`] → [`SendSlot::write`]
//! → [`SendSlot::commit`]) and read in place ([`Receiver::recv`] → [`RecvSlot::read`],
//! released when the slot is dropped).
//!
//! Waiting: a side that must wait spins for a while ([`WaitMode::Block`](crate::wait::WaitMode::Block), 50 µs by
//! default), then sleeps on a futex word in the segment; the other side makes the wake-up
//! system call only when a sleeper has said it sleeps, so the uncontended path makes no
//! system call. [`WaitMode::Spin`](crate::wait::WaitMode::Spin) never sleeps. Every wait goes through the one bounded
//! waiting primitive, [`crate::wait::Waiter`]: sleeps are cut into slices of at most
//! 20 ms, and no round of a wait, spinning or sleeping, skips the checks of the deadline,
//! of a close by the other end ([`Error::Closed`](crate::format::error::Error::Closed)), of its process's death
//! ([`Error::PeerDied`](crate::format::error::Error::PeerDied)) and of a truncation under us ([`Error::Truncated`](crate::format::error::Error::Truncated)).
//!
//! Each end of a ring is held by one endpoint at a time, across processes and within one:
//! taking it is a compare-and-swap of the end's holder word from 0 (or from the pid of a
//! dead process) to our pid, and dropping the end sets the close bit, then clears the word.
//! A second `sender(r)` in the process that holds the first is [`Error::RoleTaken`](crate::format::error::Error::RoleTaken).
//!
//! ## Layout (payload of a kind-3 segment, offsets from `payload_offset`)
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `rings`: 1 or 2 |
//! | 8 | 8 | `capacity`: bytes of data per ring, a power of two ≥ 64 |
//! | 16 | 8 | config seal: FNV-1a of bytes 0 to 16, checked by every attach |
//! | 128 + r·(384 + capacity) | 384 + capacity | ring `r` |
//!
//! Each ring: three 128-byte lines, then the data.
//!
//! | offset in ring | size | field |
//! |---:|---:|---|
//! | 0 | 8 | `tail`: bytes the sender has published (its resume point) |
//! | 8 | 4 | sender holder: the pid of the process holding the sending end, 0 when nobody does |
//! | 128 | 8 | `head`: bytes the receiver has consumed |
//! | 136 | 4 | receiver holder: likewise for the receiving end |
//! | 256 | 4 | `data_seq`: futex word the receiver sleeps on |
//! | 260 | 4 | `space_seq`: futex word the sender sleeps on |
//! | 264 | 4 | receiver sleeping flag |
//! | 268 | 4 | sender sleeping flag |
//! | 272 | 4 | closed bits: 1 sender closed, 2 receiver closed |
//! | 384 | capacity | messages: an 8-byte header (`1 << 63 | len`, or `1 << 63 | 0xFFFF_FFFF` for a PAD to the end of the ring, never at index 0), the payload, padding to 8 bytes; the word after the last message is 0 |
//!
//! A hostile peer can write anything into the shared positions and lengths: each is
//! checked before use, and a bad one is [`Error::Corrupt`](crate::format::error::Error::Corrupt), after which the endpoint stays
//! broken. No read or write ever leaves the ring.
//!
//! ```
//! use shm_core::{Channel, ChannelOptions, HeapMemory};
//! # fn main() -> Result<(), shm_core::Error> {
//! let mem = HeapMemory::new(1 << 16);
//! let view = mem.share();                   // another process would map the segment
//! let ours = Channel::create(mem, &ChannelOptions::new())?;
//! let theirs = Channel::attach(view)?;
//! let mut tx = ours.sender(0)?;
//! let mut rx = theirs.receiver(0)?;
//!
//! let mut slot = tx.reserve(5)?;            // zero-copy: write in place
//! slot.write(0, b"hello")?;
//! slot.commit();
//! tx.send(b"world")?;                       // or copy in
//!
//! let msg = rx.recv()?;
//! let mut buf = [0u8; 5];
//! msg.read(0, &mut buf)?;                   // checked copy out of the slot
//! assert_eq!(&buf, b"hello");
//! drop(msg);                                // releases the space
//! let mut v = Vec::new();
//! rx.recv_into(&mut v)?;
//! assert_eq!(v, b"world");
//! # Ok(()) }
//! ```
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
mod receiver;
#[cfg(not(loom))]
mod ring;
#[cfg(not(loom))]
mod segment;
#[cfg(not(loom))]
mod sender;
#[cfg(not(loom))]
mod waitable;

#[cfg(not(loom))]
pub use layout::WORDS;
#[cfg(not(loom))]
pub use options::ChannelOptions;
#[cfg(not(loom))]
pub use receiver::{HeldMessage, Receiver, RecvFuture, RecvIntoFuture, RecvSlot};
#[cfg(not(loom))]
pub use segment::{Channel, RingState};
#[cfg(not(loom))]
pub use sender::{DetachedSlot, ReserveFuture, SendFuture, SendSlot, Sender};
