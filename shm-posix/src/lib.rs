//! # shm-posix: named POSIX shared memory
//!
//! A [`PosixShm`] is a `shm_open` object (a file in `/dev/shm`) mapped `MAP_SHARED`. The
//! creating handle owns the name and unlinks it on drop; [`PosixShm::persist`] hands that
//! duty over. Any process that knows the name can open it.
//!
//! ```
//! use shm_posix::ShmOptions;
//! use shm_core::Segment;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let name = format!("/shm-posix-doc-{}", std::process::id());
//! let shm = ShmOptions::new(&name).size(4 << 30).create()?;   // 4 GiB, costs one page
//! let writer = Segment::create(shm, &[100u64, 876, 8021])?;
//!
//! // In another process (here the same one, for the example):
//! let reader = Segment::<[u64; 3], _>::attach(ShmOptions::new(&name).open()?)?;
//! assert_eq!(reader.read()?, [100, 876, 8021]);
//! # drop(reader); drop(writer); // the creator unlinks the name
//! # assert!(ShmOptions::new(&name).open().is_err());
//! # Ok(()) }
//! ```
//!
//! ## Reserving memory: no SIGBUS on a full `/dev/shm`
//!
//! `/dev/shm` is a tmpfs: `ftruncate` only sets a size, and pages are allocated when first
//! touched. If the tmpfs is full at that moment the kernel raises SIGBUS. [`ShmOptions::create`]
//! therefore reserves pages with `posix_fallocate`, so that a full `/dev/shm` fails at
//! create with [`Error::NoSpace`]. Reserving costs memory, and the point of a large sparse
//! segment (the tutorial's 4 GiB) is that untouched pages cost nothing, so by default only
//! the first 64 KiB (the header and the start of the payload) are reserved;
//! [`ShmOptions::reserve`] chooses how much, up to the whole segment
//! ([`Reserve::All`]). Pages beyond the reservation can still SIGBUS on first touch if
//! `/dev/shm` fills up in the meantime; reserve everything you will write.
//!
//! ## Names
//!
//! A name is `/` followed by up to 254 bytes with no other `/`. Like glibc's `shm_open`,
//! every function here also takes the name without its leading slash (`"my_shm"` means
//! `"/my_shm"`), and shows the normalised name in what it returns and in its errors.
//!
//! ## Trust, and the SIGBUS guard
//!
//! A POSIX segment can be truncated by anyone who can open it for writing, and touching a
//! truncated page raises SIGBUS. `open` refuses a segment smaller than its header claims,
//! and refuses segments that another user owns or that are group- or world-writable
//! (unless [`ShmOptions::allow_foreign`] says otherwise), so only processes of our own
//! user can do that. Against such a peer, every mapping this crate makes is **guarded**
//! ([`shm_core::os::sigbus`]): the first mapping installs a process-wide `SIGBUS` handler
//! (keeping, and chaining to, the one that was there) that turns a fault inside one of
//! our mappings into zero pages mapped over it; the call that touched it, and every later
//! call through shm-core, returns [`shm_core::Error::Truncated`]. Faults elsewhere in the
//! process go to the previous handler, or kill the process as they would have. Against a
//! hostile peer of the same user `shm-memfd` is still the better choice: its segments are
//! sealed against shrinking, so the data stays shared instead of being cut off.
//!
//! ## Bounded opens
//!
//! Opening never waits without a bound: the name is opened with `O_NONBLOCK` (a FIFO
//! planted under the name cannot block us) and its type is checked on the opened fd; the
//! shared `flock` below is taken with `LOCK_NB` and retried for at most
//! [`ShmOptions::lock_timeout`] (default [`DEFAULT_LOCK_TIMEOUT`]), then
//! [`Error::Locked`] names the process holding the lock, if `/proc/locks` tells.
//!
//! ## Stale segments
//!
//! Every handle holds a shared `flock` on its segment for as long as it lives. A segment
//! of ours (it starts with the layout's magic) whose lock nobody holds has no live user:
//! its creator died without unlinking it. [`list_stale`] finds those and [`remove_stale`]
//! unlinks them; segments in use are never touched. (A child process between `fork` and
//! `exec` shares its parent's open file descriptions, and so the lock, for that moment; a
//! segment then looks in use a little longer.)
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

mod error;
mod listing;
mod name;
mod options;
mod shm;
mod sys;

pub use error::Error;
pub use listing::{
    cleanup, inspect, is_stale, list, list_stale, remove_stale, Listing, Removal, SegmentState,
};
pub use name::{normalize_name, validate_name, NAME_MAX};
pub use options::{Reserve, ShmOptions, DEFAULT_LOCK_TIMEOUT, DEFAULT_RESERVE};
pub use shm::{unlink, PosixShm};
