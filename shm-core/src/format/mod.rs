//! The format layer: what a segment is, independent of how it is mapped or synchronised.
//!
//! * [`memory`]: the [`SharedMemory`](memory::SharedMemory) trait every backend
//!   implements, and the heap test backend;
//! * [`layout`]: the versioned header, byte by byte, and its validation;
//! * [`raw`]: validated memory with bounds-checked access, and the one write gate;
//! * [`schema`]: what a segment holds ([`Kind`](schema::Kind)) and the record type it
//!   declares ([`Schema`](schema::Schema)), a leaf;
//! * [`record`]: typed plain-old-data records;
//! * [`error`]: the crate's error type;
//! * [`words`]: the word tables, every peer-writable word of every layout and how far
//!   it is trusted;
//! * [`copy`]: word-wise (and on x86-64 `rep movsb`) copies in and out of memory another
//!   process writes; only [`copy::method`] is public.

pub mod copy;
pub mod error;
pub mod layout;
pub mod memory;
pub mod raw;
pub mod record;
pub mod schema;
pub(crate) mod view;
pub mod words;
