//! The operating-system layer: every raw system call of the crate's mappings, futexes and
//! processes lives below here, with the safe wrappers the layers above use.
//!
//! * [`sys`]: errno and fd plumbing for raw calls (`cvt`, `ret_owned_fd`, `fstat`);
//! * [`cpu`]: the CPU model, cores and cache sizes (rings sized to the caches), pinning;
//! * [`mapping`]: owned `mmap` regions (the backends map through it);
//! * [`sigbus`]: the guard that turns a truncated file under a mapping into zero pages;
//! * `futex`: wait and wake on a word in shared memory (every futex call goes through it);
//! * [`proc`]: process identity and liveness (pidfds), role words;
//! * [`park`]: what a parked wait sleeps on and watches;
//! * [`reactor`]: futex words turned into wakers for the async API.

pub mod cpu;
pub(crate) mod futex;
pub mod mapping;
pub mod park;
pub mod proc;
pub mod reactor;
pub mod sigbus;
pub mod sys;
