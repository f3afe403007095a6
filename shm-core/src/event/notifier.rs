//! The notifying end: [`Notifier`]. Many processes notify one listener.

use std::time::Instant;

use super::layout::*;
use super::segment::Event;
use crate::format::error::{Error, NotifyError};
use crate::format::memory::SharedMemory;
use crate::os::proc::{self, Liveness};
use crate::os::sys;
use crate::protocol::sync::{fence, Ordering};
use crate::wait::{Owner, PEER_CHECK};

impl<M: SharedMemory> Event<M> {
    /// A notifying end: takes a free notifier line (or one whose holder died).
    ///
    /// # Errors
    /// [`Error::NotifiersFull`] when every line is held by a live process,
    /// [`Error::ReadOnly`] on a read-only mapping, [`Error::Truncated`].
    pub fn notifier(&self) -> Result<Notifier<M>, Error> {
        self.seg.check_writable("taking a notifier line")?;
        self.seg.intact()?;
        let me = proc::current_pid();
        for i in 0..self.max_notifiers as usize {
            if proc::claim_role(self.line(i), me, CLAIM_TRIES).is_ok() {
                self.seg.intact()?;
                return Ok(Notifier {
                    ev: self.clone(),
                    line: i,
                    owner: Owner::current(),
                    next_check: None,
                    watched: None,
                });
            }
        }
        Err(Error::NotifiersFull {
            max: self.max_notifiers,
        })
    }
}

/// A notifying end of an [`Event`]: [`notify`](Self::notify) sets an id's bit and wakes
/// the listener if it sleeps. Never waits.
///
/// Dropping it frees its line; a notifier whose process dies without dropping it is
/// reported to the listener once ([`Error::PeerDied`]), after every id it set.
pub struct Notifier<M: SharedMemory> {
    ev: Event<M>,
    line: usize,
    owner: Owner,
    /// When the listener's liveness is due to be checked again.
    next_check: Option<Instant>,
    /// The listener pid last checked and its pidfd (a check is then one `poll`, not the
    /// three calls of opening one each time).
    watched: Option<(u32, std::os::fd::OwnedFd)>,
}

impl<M: SharedMemory> Notifier<M> {
    /// Notifies `id`: sets its bit for the listener (a burst of notifies of one id before
    /// the listener looks is one), and wakes the listener if it sleeps. Never waits. An
    /// id set while no listener holds the end stays set for the next one.
    ///
    /// # Errors
    /// [`NotifyError::NoSuchEvent`] for an id at or above `max_ids`;
    /// [`NotifyError::Closed`] once the listener closed its end (nothing is set);
    /// [`NotifyError::PeerDied`] once its process died without closing (checked at most
    /// every millisecond: a notify soon after the death may still succeed, and sets the
    /// id for the next listener);
    /// `Failed` with [`Error::Forked`] or [`Error::Truncated`].
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{Event, EventOptions, HeapMemory, NotifyError};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let opts = EventOptions::new().max_ids(4);
    /// let ev = Event::create(HeapMemory::new(opts.segment_len()? as usize), &opts)?;
    /// let mut n = ev.notifier()?;
    /// n.notify(3)?;
    /// assert!(matches!(n.notify(4), Err(NotifyError::NoSuchEvent { id: 4, limit: 4 })));
    /// # Ok(()) }
    /// ```
    pub fn notify(&mut self, id: u64) -> Result<(), NotifyError> {
        self.owner.check()?;
        let limit = u64::from(self.ev.max_ids);
        if id >= limit {
            return Err(NotifyError::NoSuchEvent { id, limit });
        }
        // Before the bit: a listener that takes the id and closes at once must not turn
        // a delivered notify into `Closed`.
        self.listener_gone()?;
        let ev = &self.ev;
        let word = ev.bitmap((id / 64) as usize);
        let bit = 1u64 << (id % 64);
        // Load first: a bit already set (a burst) costs no write to the shared line.
        // Relaxed: only a shortcut; the listener's swap and our fence order the rest.
        if word.load(Ordering::Relaxed) & bit == 0 {
            // Release: pairs with the listener's Acquire swap that takes the word.
            word.fetch_or(bit, Ordering::Release);
        }
        // SeqCst fence: orders the bit's store before the sleepers load below, against
        // the listener's sleepers increment → fence → bitmap load in its `prepare`:
        // either it sees our bit, or we see it sleep.
        fence(Ordering::SeqCst);
        if ev.words.sleepers.get().load(Ordering::Relaxed) != 0 {
            ev.wake_listener();
        }
        ev.seg.intact()?;
        Ok(())
    }

    /// `Closed` or `PeerDied` when the listener is gone (its liveness is checked at most
    /// every [`PEER_CHECK`]).
    fn listener_gone(&mut self) -> Result<(), Error> {
        let w = &self.ev.words;
        // Acquire (both): pairs with the Release stores of the listener's drop (bit, then
        // holder cleared).
        let closed = || {
            w.closed.get().load(Ordering::Acquire) & LISTENER_CLOSED != 0
                && w.holder.get().load(Ordering::Acquire) == 0
        };
        if closed() {
            return Err(Error::Closed);
        }
        let now = Instant::now();
        if self.next_check.is_some_and(|t| now < t) {
            return Ok(());
        }
        self.next_check = Some(now + PEER_CHECK);
        // Acquire: as above.
        let pid = w.holder.get().load(Ordering::Acquire);
        if pid == 0 || pid == self.owner.pid() {
            return Ok(());
        }
        if self.watched.as_ref().is_none_or(|(p, _)| *p != pid) {
            self.watched = match sys::pidfd_open(pid) {
                Ok(fd) => Some((pid, fd)),
                // No such process, or no pidfds: the slow check says which.
                Err(_) => None,
            };
        }
        let dead = match &self.watched {
            // A pidfd is readable once its process has exited (zombie included).
            Some((_, fd)) => sys::readable_now(&[std::os::fd::AsFd::as_fd(fd)])[0],
            None => proc::liveness(pid) == Liveness::Dead,
        };
        if dead {
            // A listener that closed and exited at once: its stores are all visible now.
            if closed() {
                return Err(Error::Closed);
            }
            return Err(Error::PeerDied { pid });
        }
        Ok(())
    }

    /// The event this end notifies.
    pub fn event(&self) -> &Event<M> {
        &self.ev
    }
}

impl<M: SharedMemory> Drop for Notifier<M> {
    fn drop(&mut self) {
        if self.owner.forked() {
            return; // the parent still holds the line
        }
        let line = self.ev.line(self.line);
        // Release: pairs with the Acquire of the next claim (`claim_role`), after our
        // last bit. Only our own pid is cleared: a line the listener cleared (believing
        // us dead) and someone else took is theirs.
        let _ = line.compare_exchange(self.owner.pid(), 0, Ordering::Release, Ordering::Relaxed);
    }
}

impl<M: SharedMemory> std::fmt::Debug for Notifier<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("line", &self.line)
            .finish()
    }
}
