//! A broadcast [`Subscriber`] as a [`WaitSet`](crate::waitset::WaitSet) sees it.

use std::sync::atomic::AtomicU64 as LocalU64;
use std::sync::Arc;
use std::time::Duration;

use super::segment::Broadcast;
use super::subscriber::Subscriber;
use crate::format::error::Error;
use crate::format::memory::SharedMemory;
use crate::format::view::Word32;
use crate::protocol::broadcast as protocol;
use crate::protocol::sync::Ordering;
use crate::wait::{Source, WaitSource, Waitable};

struct SubSource<M: SharedMemory> {
    b: Broadcast<M>,
    /// Whether the subscriber has a line (announces its sleeps); a read-only one polls.
    line: bool,
    /// The subscriber's next number (its process-local copy).
    at: Arc<LocalU64>,
}

impl<M: SharedMemory + Send + Sync + 'static> Waitable for Subscriber<M> {
    fn wait_source(&self) -> WaitSource {
        WaitSource(Box::new(SubSource {
            b: self.b.clone(),
            line: self.line.is_some(),
            at: Arc::clone(&self.at),
        }))
    }
}

impl<M: SharedMemory> SubSource<M> {
    fn next(&self) -> u64 {
        // Relaxed: the subscriber's own copy, written by this process.
        self.at.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A message numbered `next` or later is published (or a forged tail says so: the
    /// subscriber's look then resyncs or reports it).
    fn published(&self) -> bool {
        // Acquire: pairs with the publisher's Release store of `tail`.
        self.b.control().tail.load(Ordering::Acquire) > self.next()
    }

    /// As `SubscribeStep::closed`: the close word set and the holder cleared.
    fn closed(&self) -> bool {
        // Acquire (both): pairs with the Release stores of `Publisher::drop`.
        self.b.holder().load(Ordering::Acquire) == 0 && self.b.closed().load(Ordering::Acquire) != 0
    }
}

impl<M: SharedMemory + Send + Sync> Source for SubSource<M> {
    fn has_data(&self) -> bool {
        self.published()
    }

    fn ready(&self, dead: &dyn Fn(u32) -> bool) -> Result<bool, Error> {
        self.b.seg.intact()?;
        if self.published() {
            return Ok(true);
        }
        if self.closed() {
            return Err(Error::Closed);
        }
        // Acquire: as in `closed`.
        let pid = self.b.holder().load(Ordering::Acquire);
        if pid != 0 && dead(pid) {
            if self.closed() {
                return Err(Error::Closed);
            }
            if self.published() {
                return Ok(true);
            }
            return Err(Error::PeerDied { pid });
        }
        Ok(false)
    }

    fn arm(&self) -> Option<(Word32, u32)> {
        let ctl = self.b.control();
        if !self.line {
            // Nothing to announce: a read-only subscriber writes nothing; it polls.
            // Acquire: pairs with the Release bump in `bump_data`.
            return (!self.published())
                .then(|| (self.b.data_seq_word(), ctl.data_seq.load(Ordering::Acquire)));
        }
        protocol::prepare_sleep(ctl, self.next()).map(|seq| (self.b.data_seq_word(), seq))
    }

    fn disarm(&self) {
        if self.line {
            protocol::done_sleeping(self.b.control());
        }
    }

    fn peers(&self, out: &mut Vec<u32>) {
        // Relaxed: which process to watch; `ready` reads the word again.
        out.push(self.b.holder().load(Ordering::Relaxed));
    }

    fn limit(&self) -> Option<Duration> {
        (!self.line).then_some(Duration::from_millis(1))
    }
}
