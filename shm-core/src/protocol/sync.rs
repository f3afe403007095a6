//! The atomics that the synchronisation algorithms use, behind a facade that switches to
//! [`loom`](https://docs.rs/loom)'s model-checked atomics under `--cfg loom`.
//!
//! Only the algorithm halves (each protocol's core: `protocol::ring`, `protocol::seqlock`,
//! `protocol::broadcast`) go through this facade; they take `&AtomicU64` and never see a
//! raw pointer, so the same code runs over loom atomics in the model and over atomics in
//! a mapping in production.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Hint to the CPU that we are spinning (`pause` on x86). A yield point under loom.
#[inline]
pub fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}
