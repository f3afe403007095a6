//! [`SeqLock`]: a record with consistent snapshots across processes.
//!
//! The payload holds a sequence word, an owner word (the pid of the writer holding the
//! write lock, 0 when it is free), and the record. A writer takes the owner word, makes
//! the sequence odd, writes the record, makes it even again and frees the owner word; a
//! reader copies the sequence, the record, and the sequence again, and keeps the copy only
//! if the two sequences are equal and even. The protocol, and why a writer that takes over
//! a dead writer's lock can never rob a live one, is in [`protocol::seqlock`](crate::protocol::seqlock). The record is copied with atomic word accesses
//! (see the `copy` module), never a plain racy `memcpy`.
//!
//! A sequence that stays odd means a writer is inside. A reader that finds the writer's
//! process dead (killed in the middle of a write) returns [`Error::WriterDied`](crate::format::error::Error::WriterDied) at once;
//! one still alive past the writer timeout is [`Error::WriterStuck`](crate::format::error::Error::WriterStuck). Every wait here goes
//! through [`crate::wait::Waiter`] and ends by the writer timeout. A later [`store`](SeqLock::store) from
//! any process takes the abandoned lock over and replaces the torn value, so readers
//! recover without a reset.
//!
//! ```
//! use shm_core::{HeapMemory, SeqLock};
//! # fn main() -> Result<(), shm_core::Error> {
//! let mem = HeapMemory::new(4096);
//! let view = mem.share();
//! let writer = SeqLock::create(mem, &[0u64; 4])?;
//! let reader = SeqLock::<[u64; 4], _>::attach(view)?;
//! writer.store(&[7; 4])?;
//! assert_eq!(reader.load()?, [7; 4]);
//! writer.update(|v| v[0] += 1)?;
//! assert_eq!(reader.load()?, [8, 7, 7, 7]);
//! # Ok(()) }
//! ```
//!
//! ## Who writes each word, and what a reader does with any other value ([`WORDS`])
//!
#![doc = include_str!("words.md")]

#[cfg(not(loom))]
mod api;

#[cfg(not(loom))]
pub use api::*;
