//! A channel [`Receiver`] as a [`WaitSet`](crate::waitset::WaitSet) sees it.

use std::sync::atomic::AtomicU64 as LocalU64;
use std::sync::Arc;

use super::receiver::Receiver;
use super::ring::{closed_by, RingPtrs};
use crate::format::error::Error;
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::view::Word32;
use crate::protocol::ring::PRODUCER_CLOSED;
use crate::protocol::sync::{fence, Ordering};
use crate::wait::{Source, WaitSource, Waitable};

struct RecvSource<M: SharedMemory> {
    seg: Arc<RawSegment<M>>,
    ptrs: RingPtrs,
    /// The receiver's position (its process-local copy).
    at: Arc<LocalU64>,
}

impl<M: SharedMemory + Send + Sync + 'static> Waitable for Receiver<M> {
    fn wait_source(&self) -> WaitSource {
        WaitSource(Box::new(RecvSource {
            seg: Arc::clone(&self.chan.seg),
            ptrs: self.ptrs,
            at: Arc::clone(&self.at),
        }))
    }
}

impl<M: SharedMemory> RecvSource<M> {
    /// A frame (message or PAD) is published at the receiver's position.
    fn has_frame(&self) -> bool {
        // Relaxed: the receiver's own copy, written by this process.
        let at = self.at.load(std::sync::atomic::Ordering::Relaxed);
        // Acquire: pairs with the sender's Release header store.
        self.ptrs.header_word(at).load(Ordering::Acquire) != 0
    }
}

impl<M: SharedMemory + Send + Sync> Source for RecvSource<M> {
    fn has_data(&self) -> bool {
        self.has_frame()
    }

    fn ready(&self, dead: &dyn Fn(u32) -> bool) -> Result<bool, Error> {
        self.seg.intact()?;
        if self.has_frame() {
            return Ok(true);
        }
        let sh = self.ptrs.shared();
        let holder = self.ptrs.producer_holder();
        if closed_by(sh.closed, PRODUCER_CLOSED, holder) {
            return Err(Error::Closed);
        }
        // Acquire: pairs with the Release store of 0 in the sender's drop.
        let pid = holder.load(Ordering::Acquire);
        if pid != 0 && dead(pid) {
            // As in `peer_gone`: a sender that closed and then exited is a close.
            if closed_by(sh.closed, PRODUCER_CLOSED, holder) {
                return Err(Error::Closed);
            }
            if self.has_frame() {
                return Ok(true);
            }
            return Err(Error::PeerDied { pid });
        }
        Ok(false)
    }

    fn arm(&self) -> Option<(Word32, u32)> {
        let sh = self.ptrs.shared();
        // As `Consumer::prepare_sleep`: Acquire pairs with the sender's Release bump.
        let seq = sh.data_seq.load(Ordering::Acquire);
        sh.consumer_sleeping.store(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the one in `Producer::publish_header`.
        fence(Ordering::SeqCst);
        // Acquire: a close bumps `data_seq` after its bit (as in `prepare_sleep`).
        if self.has_frame() || sh.closed.load(Ordering::Acquire) & PRODUCER_CLOSED != 0 {
            sh.consumer_sleeping.store(0, Ordering::Relaxed);
            return None;
        }
        Some((self.ptrs.data_seq_word(), seq))
    }

    fn disarm(&self) {
        self.ptrs
            .shared()
            .consumer_sleeping
            .store(0, Ordering::Relaxed);
    }

    fn peers(&self, out: &mut Vec<u32>) {
        // Relaxed: which process to watch; `ready` reads the word again.
        out.push(self.ptrs.producer_holder().load(Ordering::Relaxed));
    }
}
