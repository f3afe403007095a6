//! # shm-core
//!
//! The backend-independent half of the `shm` workspace:
//!
//! * [`SharedMemory`]: what every backend (`shm-posix`, `shm-anon`, `shm-memfd`) hands
//!   out: a base pointer, a length, a name and an ownership flag. Never a reference:
//!   another process may write the memory at any moment.
//! * [`layout`](format::layout): the fixed, versioned segment header (layout version 1) that is written
//!   once by the creator and validated, from one copied snapshot, on every attach.
//! * [`Segment`]: a typed plain-old-data record over any [`SharedMemory`], accessed by copy.
//! * [`SeqLock`]: a record with consistent snapshots: readers in other processes never see
//!   a half-written value, and a writer that died mid-write is reported, not waited on.
//! * [`Channel`]: a zero-copy message channel between two processes ([`Sender`],
//!   [`Receiver`]), blocking, non-blocking (`try_`) and async.
//! * [`Broadcast`]: one [`Publisher`] to many [`Subscriber`]s, reliable (back-pressure)
//!   or lossy (`Lagged` says what was missed).
//! * [`Event`]: payload-free notifications by id from many [`Notifier`]s to one
//!   [`Listener`] (a burst is one wake-up, none is lost).
//! * [`Service`]: request/response: many clients, many servers, each request taken by
//!   one server, deadlines carried with the request, streams of responses, and nothing
//!   lost when either side dies.
//! * [`HeapMemory`]: a heap-backed [`SharedMemory`] for tests without syscalls.
//!
//! A channel, in five lines (the second handle stands for another process's mapping):
//!
//! ```
//! # use shm_core::{Channel, ChannelOptions, HeapMemory};
//! # fn main() -> Result<(), shm_core::Error> {
//! let mem = HeapMemory::new(1 << 16);
//! let view = mem.share();
//! let mut tx = Channel::create(mem, &ChannelOptions::new())?.sender(0)?;
//! let mut rx = Channel::attach(view)?.receiver(0)?;
//! tx.send(b"hello")?;
//! assert_eq!(rx.recv()?.to_vec(), b"hello");
//! # Ok(()) }
//! ```
//!
//! A broadcast, likewise:
//!
//! ```
//! # use shm_core::{Broadcast, BroadcastOptions, HeapMemory};
//! # fn main() -> Result<(), shm_core::Error> {
//! let opts = BroadcastOptions::new().slots(8).max_message(64);
//! let mem = HeapMemory::new(opts.segment_len()? as usize);
//! let view = mem.share();
//! let mut publisher = Broadcast::create(mem, &opts)?.publisher()?;
//! let mut sub = Broadcast::attach(view)?.subscriber()?;
//! publisher.publish(b"tick")?;
//! let mut buf = Vec::new();
//! assert_eq!(sub.recv_into(&mut buf)?, 4);
//! assert_eq!((sub.last_number(), buf.as_slice()), (Some(0), &b"tick"[..]));
//! # Ok(()) }
//! ```
//!
//! A record:
//!
//! ```
//! use shm_core::{bytemuck, HeapMemory, Record, Segment};
//!
//! #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
//! #[bytemuck(crate = "shm_core::bytemuck")]
//! #[repr(C)]
//! struct MyData { col1: u64, col2: u64, col3: u64 }
//! impl Record for MyData { const NAME: &'static str = "MyData"; }
//!
//! # fn main() -> Result<(), shm_core::Error> {
//! let mem = HeapMemory::new(4096);
//! let other_view = mem.share();
//! let writer = Segment::create(mem, &MyData { col1: 100, col2: 876, col3: 8021 })?;
//! let reader = Segment::<MyData, _>::attach(other_view)?;
//! assert_eq!(reader.read()?, MyData { col1: 100, col2: 876, col3: 8021 });
//! # drop(writer);
//! # Ok(()) }
//! ```
//!
//! A seqlock, for a record that changes while others read it (every read is a whole
//! snapshot, never half old and half new):
//!
//! ```
//! # use shm_core::{HeapMemory, SeqLock};
//! # fn main() -> Result<(), shm_core::Error> {
//! let mem = HeapMemory::new(4096);
//! let view = mem.share();
//! let writer = SeqLock::create(mem, &[0u64; 3])?;
//! let reader = SeqLock::<[u64; 3], _>::attach(view)?;
//! writer.store(&[100, 876, 8021])?;
//! assert_eq!(reader.load()?, [100, 876, 8021]);
//! # Ok(()) }
//! ```
//!
//! A reader whose type does not match what the writer declared gets a typed error that
//! says both sides:
//!
//! ```
//! # use shm_core::{bytemuck, HeapMemory, Record, Segment, Error};
//! # #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! # #[bytemuck(crate = "shm_core::bytemuck")]
//! # #[repr(C)]
//! # struct MyData { col1: u64, col2: u64, col3: u64 }
//! # impl Record for MyData { const NAME: &'static str = "MyData"; }
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[bytemuck(crate = "shm_core::bytemuck")]
//! #[repr(C)]
//! struct Other { a: u64, b: u64 }
//! impl Record for Other { const NAME: &'static str = "Other"; }
//!
//! let mem = HeapMemory::new(4096);
//! let view = mem.share();
//! let _w = Segment::create(mem, &MyData { col1: 1, col2: 2, col3: 3 }).unwrap();
//! let err = Segment::<Other, _>::attach(view).err().unwrap();
//! assert_eq!(
//!     err.to_string(),
//!     r#"schema mismatch: segment holds "MyData" v1 (24 bytes, align 8), caller expects "Other" v1 (16 bytes, align 8)"#
//! );
//! ```
//!
//! Types that are not valid for every bit pattern cannot be mapped:
//!
//! ```compile_fail
//! # use shm_core::{bytemuck, Record};
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[bytemuck(crate = "shm_core::bytemuck")]
//! #[repr(C)]
//! struct Flag { on: bool } // bool is not Pod: rejected at compile time
//! impl Record for Flag { const NAME: &'static str = "Flag"; }
//! ```
//!
//! An enum (not every bit pattern is a variant) and a reference (a peer could write any
//! address into it) are rejected the same way:
//!
//! ```compile_fail
//! # use shm_core::{bytemuck, Record};
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[bytemuck(crate = "shm_core::bytemuck")]
//! #[repr(C)]
//! struct State { mode: Mode }
//! #[derive(Clone, Copy)]
//! #[repr(u32)]
//! enum Mode { Idle = 0, Busy = 1 }
//! impl Record for State { const NAME: &'static str = "State"; }
//! ```
//!
//! ```compile_fail
//! # use shm_core::{bytemuck, Record};
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[bytemuck(crate = "shm_core::bytemuck")]
//! #[repr(C)]
//! struct Node { next: &'static u64 }
//! impl Record for Node { const NAME: &'static str = "Node"; }
//! ```
//!
//! And the plain version of the same struct compiles (so the two above fail for the
//! field, not for a typo):
//!
//! ```
//! # use shm_core::{bytemuck, Record};
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[bytemuck(crate = "shm_core::bytemuck")]
//! #[repr(C)]
//! struct State { mode: u32 }
//! impl Record for State { const NAME: &'static str = "State"; }
//! ```
//!
//! ## One naming scheme
//!
//! Every family names its operations the same way, and the families added later
//! (request/response, the wait set) follow it from their first line:
//!
//! | form | meaning | channel | broadcast |
//! |---|---|---|---|
//! | `try_op` | never waits: done now or `Full` / `Empty` | [`Sender::try_send`], [`Sender::try_reserve`], [`Receiver::try_recv`] | [`Publisher::try_publish`], [`Subscriber::try_recv_into`] |
//! | `op` | waits as long as it takes (every round still checks close, peer death and truncation) | [`Sender::send`], [`Receiver::recv`] | [`Publisher::publish`], [`Subscriber::recv_into`] |
//! | `op_timeout` | waits at most a [`Duration`](std::time::Duration), then `Timeout` | [`Sender::send_timeout`], [`Receiver::recv_timeout`] | [`Publisher::publish_timeout`], [`Subscriber::recv_into_timeout`] |
//! | `op_async` | a future (`OpFuture`), cancellation safe | [`Sender::send_async`], [`Receiver::recv_async`] | [`Publisher::publish_async`], [`Subscriber::recv_into_async`] |
//!
//! * **One name per end**: `sender`/`receiver`, `publisher`/`subscriber`.
//! * **Typed use is `record`**: [`ChannelOptions::record`], [`Channel::attach_record`],
//!   [`Sender::send_record`], [`Receiver::recv_record`]; [`BroadcastOptions::record`],
//!   [`Broadcast::attach_record`], [`Publisher::publish_record`],
//!   [`Subscriber::recv_record`] (each in the four forms); a [`Segment`] or [`SeqLock`] is
//!   typed by its `T`.
//! * **Sizing**: every options builder has `for_messages(size)` and `segment_len()`.
//! * **Copying out** is `recv_into(&mut Vec<u8>)` (the vector grows to fit) and
//!   `recv_into_slice(&mut [u8])` (a message larger than the slice is
//!   `MessageTooLarge` and stays queued) on both families; both return the length.
//! * **Errors per operation**: [`TrySendError`], [`SendError`], [`SendTimeoutError`],
//!   [`TryRecvError`], [`RecvError`], [`RecvTimeoutError`] hold only what that form can
//!   return (`Full` only in `TrySendError`, `Empty` only in `TryRecvError`, `Timeout`
//!   only in the `_timeout` forms, plus `Failed(Error)` for what no caller handles
//!   apart: corruption, truncation, a forked end). Each converts into the umbrella
//!   [`Error`], so `?` works in a function returning `Result<_, Error>`.
//!
//! ```
//! # use shm_core::{Channel, ChannelOptions, HeapMemory, TryRecvError, TrySendError};
//! # fn main() -> Result<(), shm_core::Error> {
//! let opts = ChannelOptions::new().capacity(64);
//! let mem = HeapMemory::new(opts.segment_len()? as usize);
//! let view = mem.share();
//! let mut tx = Channel::create(mem, &opts)?.sender(0)?;
//! let mut rx = Channel::attach(view)?.receiver(0)?;
//! assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
//! while tx.try_send(&[7; 8]).is_ok() {}
//! assert!(matches!(tx.try_send(&[7; 8]), Err(TrySendError::Full)));
//! # Ok(()) }
//! ```
//!
//! ## Peers are not trusted
//!
//! Every word of a segment that another process can write has a row in its layout's
//! word table ([`format::words`]): who writes it, the values an honest writer produces,
//! and what a reader does with anything else. A peer can delay an end, never strand,
//! fool or crash it; once it stops, honest ends recover by themselves.
//!
//! ## Ends and `fork`
//!
//! A channel's [`Sender`] and [`Receiver`] and a broadcast's [`Publisher`] and
//! [`Subscriber`] belong to the process that made them. In a child made by `fork` they
//! refuse every operation with [`Error::Forked`] (before touching shared memory), and
//! dropping the child's copy changes nothing shared, so the parent's stream goes on
//! untouched. A child takes ends of its own (the parent's still hold their roles while
//! the parent lives). Segments, seqlocks and inspection have no ends and work in a child
//! as in any process.
#![deny(unsafe_code)]
#![deny(
    missing_docs,
    missing_debug_implementations,
    rustdoc::broken_intra_doc_links
)]

pub use bytemuck;

// The layers, bottom to top; a module imports only from its own layer and those below
// (`tests/layers.rs` checks it, and that no files import each other in a circle). Under
// `--cfg loom` only the protocol cores and the atomics facade are built: loom's atomics
// cannot be placed in a mapping, and the loom tests exercise the protocols directly.
//
// * `protocol`: the loom-checked synchronisation cores (channel ring, seqlock,
//   broadcast) over the `sync` atomics facade;
// * `os`: raw system calls and what wraps them (errno and fds, mappings, the SIGBUS
//   guard, futexes, process liveness, the futex reactor and its park types);
// * `format`: errors and schemas (leaves), the `SharedMemory` trait, the segment header
//   and its validation, typed records, the word tables, checked views and the word-wise
//   copies;
// * `wait`: the one bounded wait, and the drivers that run each endpoint's one step;
// * the families: `channel`, `broadcast`, `seqlock`, `event`, `service` (none imports
//   another);
// * `inspect` and `waitset` (above the families), then the test kits `conformance` and
//   `testing`.
#[cfg(not(loom))]
pub mod format;
#[cfg(not(loom))]
pub mod os;
pub mod protocol;
#[cfg(not(loom))]
pub mod wait;

pub mod broadcast;
pub mod channel;
#[cfg(not(loom))]
pub mod event;
pub mod seqlock;
#[cfg(not(loom))]
pub mod service;

// Tools on top: seeing inside a segment without joining it, and waiting on many ends.
#[cfg(not(loom))]
pub mod inspect;
#[cfg(not(loom))]
pub mod waitset;

#[cfg(all(feature = "conformance", not(loom)))]
pub mod conformance;
#[cfg(all(feature = "conformance", not(loom)))]
pub mod testing;

#[cfg(not(loom))]
pub use {
    broadcast::{Broadcast, BroadcastMode, BroadcastOptions, Publisher, Subscriber},
    channel::{Channel, ChannelOptions, Receiver, Sender},
    event::{Event, EventIds, EventOptions, Listener, Notifier},
    format::error::{
        CallError, CallTimeoutError, Error, NotifyError, RecvError, RecvTimeoutError, RespondError,
        SendError, SendTimeoutError, TryCallError, TryRecvError, TryResponseError, TrySendError,
        TryWaitError, WaitError, WaitTimeoutError,
    },
    format::layout::AttachOptions,
    format::memory::{HeapMemory, SharedMemory},
    format::raw::RawSegment,
    format::record::{Record, Segment},
    format::schema::{Kind, Schema},
    seqlock::SeqLock,
    service::{Service, ServiceOptions},
    wait::{WaitMode, Waitable},
    waitset::WaitSet,
};

/// The result type of this crate.
#[cfg(not(loom))]
pub type Result<T, E = Error> = core::result::Result<T, E>;
