//! Payload-free notifications by id: many [`Notifier`]s, in any processes, wake one
//! [`Listener`], which gets the set of ids notified since it last looked.
//!
//! An event segment (kind [`Kind::Event`](crate::format::schema::Kind::Event)) holds a
//! bitmap of ids (`max_ids`, at most 4096): `notify(id)` sets the id's bit, and if the
//! listener says it sleeps, bumps a futex word and wakes it. The listener takes every
//! set bit at once (a swap per bitmap word), so a burst of notifies is one wake-up and
//! none is lost: an id notified twice before the listener looks is returned once.
//!
//! Waiting: as every end of the crate, the listener spins for a while
//! ([`WaitMode::Block`](crate::wait::WaitMode::Block), 50 µs by default), then sleeps on
//! the futex word in slices of at most 20 ms; a notifier makes the wake-up call only when
//! a sleeper has announced itself, so a notify to a busy listener makes no system call.
//! The four forms `try_wait`, `wait`, `wait_timeout`, `wait_async` run one step. A
//! [`WaitSet`](crate::waitset::WaitSet) waits on a listener among other ends.
//!
//! Ends and peers: notifiers take lines (`max_notifiers`, at most 1024) the way a channel
//! end is taken (a compare-and-swap from 0 or a dead pid to ours); the listening end is
//! one per event. A notifier whose process dies without dropping its end is reported to
//! the listener once, as `PeerDied`, after every id it set was delivered (its line is
//! then free). A listener that closed or died is reported to each `notify` (`Closed`,
//! `PeerDied`); the ids stay set for the listener that takes the end next.
//!
//! ## Layout (payload of a kind-5 segment, offsets from `payload_offset`)
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `max_ids`: 1 to 4096 |
//! | 4 | 4 | `max_notifiers`: 1 to 1024 |
//! | 8 | 8 | config seal: FNV-1a of bytes 0 to 8, checked by every attach |
//! | 64 | 4 | listener holder: its pid, 0 when nobody holds it |
//! | 68 | 4 | `sleepers`: the listener's waits that sleep now |
//! | 72 | 4 | `seq`: the futex word the listener sleeps on |
//! | 76 | 4 | `closed`: bit 1, the listener closed |
//! | 128 | 8 · ⌈max_ids / 64⌉ | the bitmap: bit `id % 64` of word `id / 64` |
//! | next multiple of 64 | 4 · max_notifiers | notifier lines: each holder's pid, 0 when free |
//!
//! ```
//! use shm_core::{Event, EventOptions, HeapMemory};
//! # fn main() -> Result<(), shm_core::Error> {
//! let opts = EventOptions::new().max_ids(16);
//! let mem = HeapMemory::new(opts.segment_len()? as usize);
//! let view = mem.share(); // another process would map the segment
//! let mut listener = Event::create(mem, &opts)?.listener()?;
//! let mut notifier = Event::attach(view)?.notifier()?;
//! for id in [2, 9, 2, 2] {
//!     notifier.notify(id)?; // a burst: one wake-up
//! }
//! let ids = listener.wait()?;
//! assert_eq!(ids.iter().collect::<Vec<_>>(), [2, 9]);
//! assert!(listener.try_wait().is_err()); // Empty: everything was taken
//! # Ok(()) }
//! ```
//!
//! ## Who writes each word, and what a reader does with any other value ([`WORDS`])
//!
#![doc = include_str!("words.md")]

mod layout;
mod listener;
mod notifier;
mod options;
mod segment;

pub use layout::{MAX_IDS, MAX_NOTIFIERS, WORDS};
pub use listener::{EventIds, Listener, WaitFuture};
pub use notifier::Notifier;
pub use options::EventOptions;
pub use segment::{Event, EventState};
