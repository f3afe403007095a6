//! What a relay (the `shm-zenoh` importer) adds to a publisher: gap notices, its
//! source's numbering, and the upstream flag.

use super::layout::*;
use super::publisher::*;
use crate::format::error::Error;
use crate::format::memory::SharedMemory;
use crate::protocol::broadcast::{self as protocol};
use crate::protocol::sync::Ordering;
use crate::wait;

impl<M: SharedMemory> Publisher<M> {
    /// Tells every subscriber that `missed` messages were lost upstream, before anything
    /// published after: each subscriber's receive at this point is
    /// [`Error::Lagged`]`{ missed }`, then it goes on. For relays (the `shm-zenoh`
    /// importer) that republish a remote stream and must report its gaps exactly. The
    /// notice takes one message number (one slot, no payload); a gap above
    /// [`protocol::MAX_GAP`] takes several notices. `missed == 0` publishes nothing.
    /// Waits for room like [`publish`](Self::publish) (reliable mode).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when the gap would number past 2^62 (nothing is
    /// published then), and as [`publish`](Self::publish).
    pub fn publish_gap(&mut self, missed: u64) -> Result<(), Error> {
        self.numbers_left(missed)?;
        let mut left = missed;
        while left > 0 {
            let part = left.min(protocol::MAX_GAP);
            self.publish_notice(protocol::Notice::Gap(part))?;
            left -= part;
        }
        Ok(())
    }

    /// Starts the numbering at `n` (a relay republishing a source that is already at
    /// message `n`, so that its subscribers see the source's numbers). Only before
    /// anything was published; subscribers that joined already go on from `n`, with
    /// nothing reported missed.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] once something was published (or `n` above 2^62).
    pub fn start_at(&mut self, n: u64) -> Result<(), Error> {
        let ctl = self.b.control();
        // Acquire: pairs with any earlier publisher's Release store of `tail`.
        let tail = ctl.tail.load(Ordering::Acquire);
        if self.next != 0 || tail != 0 || n > protocol::MAX_TAIL || self.detached.is_some() {
            return Err(Error::InvalidOption {
                option: "broadcast start_at",
                found: n,
                expected: "a broadcast with nothing published yet, and a number up to 2^62",
            });
        }
        self.b.seg.check_writable("Publisher::start_at")?;
        self.owner.check()?;
        // Release: pairs with the subscribers' Acquire load in `Broadcast::base`, which
        // they make before they read a slot; the tail store below publishes it.
        self.b.u64_at(BASE).store(n, Ordering::Release);
        // Release: pairs with the Acquire loads of `tail` (joiners start there).
        ctl.tail.store(n, Ordering::Release);
        self.next = n;
        self.base = n;
        // Subscribers waiting at 0 move to `n` at their next look.
        wake_subscribers(ctl);
        self.b.seg.intact()
    }

    /// Tells the subscribers that the upstream source is gone for now (a relay whose
    /// source disappeared): each subscriber that has read everything published gets
    /// [`Error::UpstreamLost`] once, then goes on waiting for messages. Takes no message
    /// number. [`upstream_restored`](Self::upstream_restored) ends the outage.
    ///
    /// # Errors
    /// [`Error::Truncated`].
    pub fn publish_upstream_lost(&mut self) -> Result<(), Error> {
        self.set_upstream(true)
    }

    /// Ends an outage announced by [`publish_upstream_lost`](Self::publish_upstream_lost).
    ///
    /// # Errors
    /// [`Error::Truncated`].
    pub fn upstream_restored(&mut self) -> Result<(), Error> {
        self.set_upstream(false)
    }

    pub(super) fn set_upstream(&mut self, lost: bool) -> Result<(), Error> {
        self.owner.check()?;
        let word = self.b.upstream();
        // Relaxed: only this publisher writes the word.
        let now = word.load(Ordering::Relaxed);
        if (now & 1 == 1) != lost {
            // Release: pairs with the subscribers' Acquire load in their empty look;
            // everything published before is visible to one that sees the change.
            word.store(now.wrapping_add(1), Ordering::Release);
            let ctl = self.b.control();
            wake_subscribers(ctl);
        }
        self.b.seg.intact()
    }

    pub(super) fn publish_notice(&mut self, notice: protocol::Notice) -> Result<(), Error> {
        let pace = self.wait.pace_shared();
        let (mut step, _) = self.step();
        wait::block(&mut step, pace, None)?;
        self.write_len(&[], notice.encode(), notice.numbers())
    }
}
