//! Waiting on many ends at once: [`WaitSet`].
//!
//! Attach any receiving end (a channel [`Receiver`](crate::Receiver), a broadcast
//! [`Subscriber`](crate::Subscriber), an event [`Listener`](crate::Listener)), intervals
//! and deadlines; [`WaitSet::wait`] blocks the thread until at least one is ready and
//! says which. It is **level-triggered**: an end with a message still unread (or ids not
//! taken) is ready at every wait, until the end's own try operation takes it.
//!
//! How it waits: for a while (50 µs by default, [`WaitSet::set_wait`]) it looks at every
//! end in turn; then it announces a sleep on each end exactly as the end's own blocking
//! wait would (so the peer makes its wake-up call), and sleeps with one `futex_waitv`
//! (Linux 5.16) on every end's futex word at once. It runs the checks every wait of the
//! crate runs: the segment's truncation, a close, and the death of each end's peer
//! (through a pidfd per peer process, polled in one system call); an end whose peer
//! closed or died is reported ready **with its error** ([`Ready::error`]). While the set
//! sleeps, its **looker** thread runs the checks in its place and wakes it only for what
//! it finds, so the sleep is not set up again at every check (that costs the kernel a
//! page lookup per end, and each wake-up a context switch; see `looker.rs`): a peer's
//! death wakes the looker at once (its pidfd), and it looks at every end at least every
//! 200 ms (a truncation, a silenced wake-up). No busy wait: an idle set costs five short
//! looks a second.
//!
//! Limits: `futex_waitv` takes 128 words, one of which is the set's own: a set holds at
//! most [`MAX_ENDS`] ends ([`Error::InvalidOption`](crate::Error::InvalidOption) at the attach past it; intervals and
//! deadlines do not count). Two sets (or a set and the end's own blocking wait, in other
//! threads) may watch one end: a broadcast subscriber or an event listener counts its
//! sleepers; a channel receiver has a single sleeping flag, so one of two concurrent
//! sleepers on it may be woken only at its next 20 ms slice.
//!
//! ## A file descriptor for event loops
//!
//! [`WaitSet::as_fd`] gives an `eventfd` that is readable while anything in the set is
//! ready (level-triggered, as the set), for epoll, mio, GLib or asyncio's `add_reader`.
//! It is made by a watcher thread, started by the first call: the thread runs the set's
//! wait and, when something is ready, makes the fd readable, then waits until the owner
//! calls [`WaitSet::try_wait`] (which empties the fd and hands the thread the turn
//! again) before it looks again. A wake-up costs the watcher's futex wake-up plus one
//! `write` to the eventfd (the loop's `epoll_wait` return is the owner's). The thread
//! ends, and the fd closes, when the set is dropped.
//!
//! ```
//! use shm_core::{Channel, ChannelOptions, Event, EventOptions, HeapMemory};
//! use shm_core::waitset::WaitSet;
//! # fn main() -> Result<(), shm_core::Error> {
//! let chan = Channel::create(HeapMemory::new(1 << 14), &ChannelOptions::new())?;
//! let opts = EventOptions::new();
//! let ev = Event::create(HeapMemory::new(opts.segment_len()? as usize), &opts)?;
//! let (mut tx, mut rx) = (chan.sender(0)?, chan.receiver(0)?);
//! let (mut notifier, mut shutdown) = (ev.notifier()?, ev.listener()?);
//!
//! let mut set = WaitSet::new();
//! let data = set.attach(&rx)?;
//! let stop = set.attach(&shutdown)?;
//! tx.send(b"frame")?;
//! notifier.notify(0)?;
//! let ready = set.wait()?;
//! assert!(ready.iter().any(|r| r.key == data) && ready.iter().any(|r| r.key == stop));
//! assert_eq!(rx.recv()?.to_vec(), b"frame");
//! assert!(shutdown.try_wait()?.contains(0));
//! # Ok(()) }
//! ```

mod looker;
mod set;
mod state;
mod watcher;

pub use set::{WaitSet, MAX_ENDS};
pub use state::{Key, Ready, Stats};
