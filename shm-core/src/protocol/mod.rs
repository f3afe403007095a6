//! The synchronisation cores, on their own over the [`sync`] atomics facade so that loom
//! can model-check the code that runs over mappings (`tests/loom.rs`).
//!
//! * [`ring`]: the channel's single-producer single-consumer ring;
//! * [`seqlock`]: the seqlock's sequence and owner words;
//! * [`broadcast`]: the broadcast's slots, stamps and positions.
//!
//! They take `&AtomicU64` / `&AtomicU32` and never a raw pointer; the endpoints above
//! (`channel`, `seqlock`, `broadcast`) hand them words in a mapping.

pub mod broadcast;
pub mod ring;
pub mod seqlock;
pub mod sync;
