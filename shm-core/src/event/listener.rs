//! The listening end: [`Listener`], the set of ids it returns, and its future.

use std::time::Duration;

use super::layout::*;
use super::segment::Event;
use crate::format::error::{Error, TryWaitError, WaitError, WaitTimeoutError};
use crate::format::memory::SharedMemory;
use crate::os::park::Park;
use crate::os::proc::{self, Liveness};
use crate::protocol::sync::{fence, Ordering};
use crate::wait::{self, Owner, Parked, Sleeper, Source, Step, WaitMode, WaitSource, Waitable};

impl<M: SharedMemory> Event<M> {
    /// The listening end (one per event at a time, across processes and within one).
    ///
    /// # Errors
    /// [`Error::RoleTaken`] while a live process holds it, [`Error::ReadOnly`],
    /// [`Error::Truncated`].
    pub fn listener(&self) -> Result<Listener<M>, Error> {
        self.seg.check_writable("taking the listening end")?;
        self.seg.intact()?;
        let me = proc::current_pid();
        if let Err(pid) = proc::claim_role(self.words.holder.get(), me, CLAIM_TRIES) {
            return Err(Error::RoleTaken {
                role: "listening",
                ring: 0,
                pid,
            });
        }
        // AcqRel: Acquire pairs with the Release `fetch_or` of a previous listener's drop;
        // Release with the notifiers' Acquire loads of `closed`.
        self.words
            .closed
            .get()
            .fetch_and(!LISTENER_CLOSED, Ordering::AcqRel);
        Ok(Listener {
            ev: self.clone(),
            owner: Owner::current(),
            wait: WaitMode::default(),
            parked: Parked::default(),
        })
    }
}

/// The ids notified since the listener last looked: a set, in increasing order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventIds {
    words: Vec<u64>,
}

impl EventIds {
    /// The ids, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut bits = w;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros();
                    bits &= bits - 1;
                    64 * i as u64 + u64::from(b)
                })
            })
        })
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u64) -> bool {
        let i = (id / 64) as usize;
        self.words.get(i).is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// How many ids.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty (never, for a set a wait returned).
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }
}

impl<'a> IntoIterator for &'a EventIds {
    type Item = u64;
    type IntoIter = Box<dyn Iterator<Item = u64> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// The listening end of an [`Event`]: waits until ids are notified and returns them all
/// at once ([`EventIds`]).
///
/// Every way of waiting (`try_wait`, `wait`, `wait_timeout`, `wait_async`) runs the same
/// step: one code path, the same checks. A notifier whose process died without closing
/// is reported once, as `PeerDied`, after every id it set was delivered.
pub struct Listener<M: SharedMemory> {
    ev: Event<M>,
    owner: Owner,
    wait: WaitMode,
    parked: Parked,
}

/// The listener's one step: take the ids set.
struct ListenStep<'a, M: SharedMemory> {
    ev: &'a Event<M>,
    owner: Owner,
}

impl<M: SharedMemory> ListenStep<'_, M> {
    /// Takes every set bit (below `max_ids`): `None` when none is set.
    fn take(&self) -> Option<EventIds> {
        let ev = self.ev;
        let mut out: Option<EventIds> = None;
        for i in 0..ev.bitmap_len() {
            let word = ev.bitmap(i);
            // Relaxed: a look; the swap below is the take.
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            // Acquire: pairs with the notifiers' Release `fetch_or`.
            let bits = word.swap(0, Ordering::Acquire) & ev.mask(i);
            if bits != 0 {
                let ids = out.get_or_insert_with(|| EventIds {
                    words: vec![0; ev.bitmap_len()],
                });
                ids.words[i] = bits;
            }
        }
        out
    }
}

impl<M: SharedMemory> Step for ListenStep<'_, M> {
    type Out = EventIds;

    fn look(&mut self) -> Result<Option<EventIds>, Error> {
        self.owner.check()?;
        let ids = self.take();
        self.ev.seg.intact()?;
        Ok(ids)
    }
}

impl<M: SharedMemory> Sleeper for ListenStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.ev.seg.intact()?;
        if peer {
            dead_notifier(self.ev)?;
        }
        Ok(())
    }

    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        let ev = self.ev;
        let seq = arm(ev);
        let Some(seq) = seq else { return Ok(None) };
        // Periodic: a notifier's death makes no futex call, and there may be many; a
        // parked future runs the full checks at every reactor tick.
        let closed = ev.words.closed.get();
        Ok(Some(
            Park::futex(ev.words.seq.get(), seq)
                // Relaxed: only compared for change by the reactor.
                .watch_u32(closed, closed.load(Ordering::Relaxed))
                .periodic(),
        ))
    }

    fn done(&mut self) {
        disarm(self.ev);
    }
}

/// Announces a sleep of one of the listener's waits: `Some(seq)` to sleep on, or `None`
/// when an id is set now (look again). On `Some`, [`disarm`] after the wait.
fn arm<M: SharedMemory>(ev: &Event<M>) -> Option<u32> {
    let w = &ev.words;
    // Acquire: pairs with the notifier's Release bump in `wake_listener`.
    let seq = w.seq.get().load(Ordering::Acquire);
    w.sleepers.get().fetch_add(1, Ordering::Relaxed);
    // SeqCst fence: pairs with the notifier's (between its bit and its sleepers load).
    fence(Ordering::SeqCst);
    if ev.any_pending() {
        w.sleepers.get().fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(seq)
}

/// Takes back [`arm`]'s announcement.
fn disarm<M: SharedMemory>(ev: &Event<M>) {
    ev.words.sleepers.get().fetch_sub(1, Ordering::Relaxed);
}

/// `PeerDied` for the first notifier line held by a dead process, once every id set
/// was taken (a set bit is delivered first); the line is cleared so that it is reported
/// once and can be taken again.
fn dead_notifier<M: SharedMemory>(ev: &Event<M>) -> Result<(), Error> {
    let me = proc::current_pid();
    for (line, pid) in ev.held_lines(me) {
        if proc::liveness(pid) != Liveness::Dead {
            continue;
        }
        if ev.any_pending() {
            return Ok(()); // delivered first; reported at the next check
        }
        // Relaxed: clearing a dead holder's line publishes nothing; a new notifier's
        // claim (a CAS from a dead pid) may win instead, and then the line is theirs.
        if line
            .compare_exchange(pid, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            ev.seg.intact()?;
            return Err(Error::PeerDied { pid });
        }
    }
    Ok(())
}

impl<M: SharedMemory> Listener<M> {
    /// How this end waits (spin, or spin then sleep; default: 50 µs of spin).
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    /// The event this end listens to.
    pub fn event(&self) -> &Event<M> {
        &self.ev
    }

    fn step(&mut self) -> (ListenStep<'_, M>, &mut Parked) {
        (
            ListenStep {
                ev: &self.ev,
                owner: self.owner,
            },
            &mut self.parked,
        )
    }

    /// The ids notified since the last look, if any, now.
    ///
    /// # Errors
    /// [`TryWaitError::Empty`] when none; [`TryWaitError::PeerDied`] once per notifier
    /// whose process died without dropping its end, when nothing is pending (the
    /// liveness check runs at most every millisecond: a try right after a death may say
    /// `Empty` first); `Failed` with [`Error::Truncated`] or [`Error::Forked`].
    pub fn try_wait(&mut self) -> Result<EventIds, TryWaitError> {
        let (mut step, parked) = self.step();
        Ok(wait::try_once(&mut step, parked, Error::Empty)?)
    }

    /// The ids notified since the last look, waiting until there is one.
    ///
    /// # Errors
    /// [`WaitError::PeerDied`] once per notifier whose process died without dropping
    /// its end (after every id it set was returned); `Failed` with [`Error::Truncated`]
    /// or [`Error::Forked`].
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{Event, EventOptions, HeapMemory};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let opts = EventOptions::new();
    /// let mem = HeapMemory::new(opts.segment_len()? as usize);
    /// let view = mem.share();
    /// let mut listener = Event::create(mem, &opts)?.listener()?;
    /// let t = std::thread::spawn(move || {
    ///     let mut n = shm_core::Event::attach(view).unwrap().notifier().unwrap();
    ///     n.notify(7).unwrap();
    /// });
    /// assert!(listener.wait()?.contains(7));
    /// t.join().unwrap();
    /// # Ok(()) }
    /// ```
    pub fn wait(&mut self) -> Result<EventIds, WaitError> {
        self.wait_impl(None).map_err(Into::into)
    }

    /// [`wait`](Self::wait), at most `timeout`.
    ///
    /// # Errors
    /// As [`wait`](Self::wait), and [`WaitTimeoutError::Timeout`].
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<EventIds, WaitTimeoutError> {
        self.wait_impl(Some(timeout)).map_err(Into::into)
    }

    fn wait_impl(&mut self, timeout: Option<Duration>) -> Result<EventIds, Error> {
        let pace = self.wait.pace();
        let (mut step, _) = self.step();
        wait::block(&mut step, pace, timeout)
    }

    /// [`wait`](Self::wait), as a future: parked with the
    /// [`reactor`](crate::os::reactor), woken by a notify and looked at every
    /// [`SLICE`](crate::os::park::SLICE) for the checks.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// # Cancel safety
    /// Cancellation safe: ids are taken only in the poll that completes the future, so a
    /// dropped future loses none; the next call gets them.
    pub fn wait_async(&mut self) -> WaitFuture<'_, M> {
        WaitFuture { listener: self }
    }

    fn unpark(&mut self) {
        if self.owner.forked() {
            return;
        }
        let (mut step, parked) = self.step();
        parked.release(&mut step);
    }
}

impl<M: SharedMemory> Drop for Listener<M> {
    fn drop(&mut self) {
        if self.owner.forked() {
            return; // the parent still holds the end
        }
        self.unpark();
        let w = &self.ev.words;
        // Release: pairs with the notifiers' Acquire loads of `closed`.
        w.closed.get().fetch_or(LISTENER_CLOSED, Ordering::Release);
        // Release: pairs with the Acquire of the next claim and of the notifiers' close
        // check (a cleared holder comes with a visible close bit). Only our own pid.
        let _ = w.holder.get().compare_exchange(
            self.owner.pid(),
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

impl<M: SharedMemory> std::fmt::Debug for Listener<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("event", &self.ev).finish()
    }
}

/// The future of [`Listener::wait_async`].
pub struct WaitFuture<'a, M: SharedMemory> {
    listener: &'a mut Listener<M>,
}

impl<M: SharedMemory> std::future::Future for WaitFuture<'_, M> {
    type Output = Result<EventIds, WaitError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let l = &mut *self.get_mut().listener;
        let spin = l.wait.async_spin();
        let (mut step, parked) = l.step();
        wait::poll_step(&mut step, parked, spin, cx).map(|r| r.map_err(Into::into))
    }
}

impl<M: SharedMemory> Drop for WaitFuture<'_, M> {
    fn drop(&mut self) {
        self.listener.unpark();
    }
}

impl<M: SharedMemory> std::fmt::Debug for WaitFuture<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitFuture").finish()
    }
}

/// The listener as a [`WaitSet`](crate::waitset::WaitSet) sees it.
struct ListenSource<M: SharedMemory> {
    ev: Event<M>,
    me: u32,
}

impl<M: SharedMemory + Send + Sync + 'static> Waitable for Listener<M> {
    fn wait_source(&self) -> WaitSource {
        WaitSource(Box::new(ListenSource {
            ev: self.ev.clone(),
            me: self.owner.pid(),
        }))
    }
}

impl<M: SharedMemory + Send + Sync> Source for ListenSource<M> {
    fn has_data(&self) -> bool {
        self.ev.any_pending()
    }

    fn ready(&self, dead: &dyn Fn(u32) -> bool) -> Result<bool, Error> {
        let ev = &self.ev;
        ev.seg.intact()?;
        if ev.any_pending() {
            return Ok(true);
        }
        match ev.held_lines(self.me).find(|&(_, pid)| dead(pid)) {
            Some((_, pid)) => Err(Error::PeerDied { pid }),
            None => Ok(false),
        }
    }

    fn arm(&self) -> Option<(crate::format::view::Word32, u32)> {
        arm(&self.ev).map(|seq| (self.ev.words.seq, seq))
    }

    fn disarm(&self) {
        disarm(&self.ev);
    }

    fn peers(&self, out: &mut Vec<u32>) {
        out.extend(self.ev.held_lines(self.me).map(|(_, pid)| pid));
    }
}
