//! A request in flight: its [`PendingResponse`], which receives the [`Response`]s of its
//! stream and cancels the request when dropped.

use std::time::{Duration, Instant};

use super::layout::*;
use super::segment::Service;
use crate::format::error::{CallError, CallTimeoutError, Error, TryResponseError};
use crate::format::memory::SharedMemory;
use crate::format::view::View;
use crate::os::park::Park;
use crate::os::proc::{self, Liveness};
use crate::protocol::sync::{fence, Ordering};
use crate::wait::{
    self, Owner as End, Parked, Sleeper, Source, Step, WaitMode, WaitSource, Waitable,
};

/// One response of a request's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Its bytes.
    pub data: Vec<u8>,
    /// Whether the server said it is the last of the stream.
    pub last: bool,
}

/// A request sent and not yet finished: receives its response (or stream of responses),
/// and cancels the request when dropped.
///
/// Every response is checked to be this request's (its slot still names this client and
/// the id the library chose, and each response entry carries that id): a response for
/// another request, another client or a stale id is never delivered.
pub struct PendingResponse<M: SharedMemory> {
    pub(super) svc: Service<M>,
    pub(super) slot: usize,
    pub(super) id: u64,
    pub(super) end: End,
    pub(super) wait: WaitMode,
    /// When the send began, on the shared clock (CLOCK_MONOTONIC ns): the one reading
    /// the send made, reused here rather than read again.
    pub(super) sent_ns: u64,
    /// The deadline on the shared clock (CLOCK_MONOTONIC ns; 0: none).
    pub(super) deadline_ns: u64,
    /// Responses taken: the client's own count (the shared `read` word is only written).
    pub(super) read: u32,
    /// A copy of `read` a wait set's source reads (process-local: a peer cannot change
    /// it), made when the first wait set watches this response (no allocation per call
    /// otherwise).
    pub(super) read_mirror: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicU32>>,
    pub(super) finished: bool,
    /// Whether a server's death sent the request back to the queue.
    pub(super) retried: bool,
    /// The pid of the server whose death this request reported (its slot is freed at
    /// once when dropped).
    pub(super) dead_server: u32,
    pub(super) parked: Parked,
}

/// The pending response's one step: take the next response of the stream.
struct ReceiveStep<'a, M: SharedMemory> {
    p: &'a mut PendingResponse<M>,
}

impl<M: SharedMemory> ReceiveStep<'_, M> {
    fn slot(&self) -> View {
        self.p.svc.slot(self.p.slot)
    }

    /// The owner word, checked to still be this request's: `Corrupt` otherwise.
    fn owner(&mut self) -> Result<(u64, Owner), Error> {
        let p = &mut *self.p;
        match request_owner(&p.svc, p.slot, p.end.pid(), p.id) {
            Ok(x) => Ok(x),
            Err(found) => {
                p.svc.inner.seg.intact()?;
                p.finished = true;
                Err(Error::Corrupt {
                    what: "the request's slot (its owner word or id no longer name this request)",
                    found,
                })
            }
        }
    }

    /// Takes entry `read % depth`, which the server's `written` vouches for.
    fn take(&mut self, slot: View) -> Result<Response, Error> {
        let p = &mut *self.p;
        let cfg = p.svc.inner.cfg;
        let at = cfg.entries_at + (p.read % cfg.depth) as usize * cfg.entry_stride;
        // Relaxed (all three): ordered after the Acquire load of `written`.
        let id = slot.u64_at(at).load(Ordering::Relaxed);
        let len = slot.u32_at(at + 8).load(Ordering::Relaxed);
        let kind = slot.u32_at(at + 12).load(Ordering::Relaxed);
        let corrupt = |what, found: u64| {
            p.svc.inner.seg.intact()?;
            Err(Error::Corrupt { what, found })
        };
        if id != p.id {
            p.finished = true;
            return corrupt("a response entry's id (not this request's)", id);
        }
        let out = match kind {
            KIND_DATA | KIND_LAST => {
                if len > cfg.response_max {
                    p.finished = true;
                    return corrupt("a response entry's length", len.into());
                }
                let mut data = crate::format::copy::zeroed(len as usize);
                slot.load(at + ENTRY_HEAD, &mut data);
                Ok(Response {
                    data,
                    last: kind == KIND_LAST,
                })
            }
            KIND_ERROR => Err(Error::ServerError { code: len }),
            // (Any pid: a server could as well answer an error; the request ends either way.)
            KIND_PEER_DIED => Err(Error::PeerDied { pid: len }),
            _ => {
                p.finished = true;
                return corrupt("a response entry's kind", kind.into());
            }
        };
        p.read = p.read.wrapping_add(1);
        // Relaxed: process-local; the wait set only compares it with `written`.
        if let Some(m) = p.read_mirror.get() {
            m.store(p.read, std::sync::atomic::Ordering::Relaxed);
        }
        // Release: pairs with the server's Acquire load of `read`: the entry is free
        // once it sees the count (our copy above is done).
        slot.u32_at(S_READ).store(p.read, Ordering::Release);
        // SeqCst fence: pairs with the server's (between its sleeps count and its room
        // check): either it sees the room, or we see it sleep.
        fence(Ordering::SeqCst);
        if slot.u32_at(S_SERVER_SLEEPS).load(Ordering::Relaxed) != 0 {
            crate::os::futex::wake(slot.u32_at(S_READ));
        }
        if !matches!(out, Ok(Response { last: false, .. })) {
            p.finished = true;
        }
        p.svc.inner.seg.intact()?;
        out
    }

    /// Whether an entry is there, or the phase says the wait is over (a look).
    fn something(&self) -> bool {
        let p = &*self.p;
        request_news(&p.svc, p.slot, p.end.pid(), p.id, p.read)
    }
}

impl<M: SharedMemory> Step for ReceiveStep<'_, M> {
    type Out = Response;

    fn look(&mut self) -> Result<Option<Response>, Error> {
        self.p.end.check()?;
        if self.p.finished {
            return Err(Error::Closed);
        }
        let slot = self.slot();
        // Acquire: pairs with the server's Release store of `written` after an entry.
        let written = slot.u32_at(S_WRITTEN).load(Ordering::Acquire);
        // Every look reads the owner word too (measured: a client that polled
        // `written` alone and the owner word every 16th look made the 64-byte call
        // slower, 1.7 us against 0.7 us, AMD EPYC).
        let (_, o) = self.owner()?;
        if o.is(Phase::Queued) || o.is(Phase::Filling) {
            if written != self.p.read {
                return self.corrupt("a queued request's response count", written.into());
            }
            return Ok(None);
        }
        if o.is(Phase::Expired) {
            self.p.finished = true;
            return Err(Error::Timeout {
                waited: self.p.waited(),
            });
        }
        if !(o.is(Phase::Taken) || o.is(Phase::Done)) {
            return self.corrupt("the request's slot phase", o.phase.into());
        }
        // Acquire: as above; loaded again after the owner word, whose Acquire load of a
        // `Done` (the server's Release CAS after its last entry) makes every entry's
        // count visible (the load before it may be older).
        let written = slot.u32_at(S_WRITTEN).load(Ordering::Acquire);
        let ready = written.wrapping_sub(self.p.read);
        if ready > self.p.svc.inner.cfg.depth {
            return self.corrupt("a request's response count", written.into());
        }
        if ready > 0 {
            return self.take(slot).map(Some);
        }
        if o.is(Phase::Done) {
            self.p.finished = true;
            return Err(Error::Closed);
        }
        Ok(None)
    }
}

impl<M: SharedMemory> ReceiveStep<'_, M> {
    /// Ends the request with `Corrupt` (a value no honest server writes).
    fn corrupt<T>(&mut self, what: &'static str, found: u64) -> Result<T, Error> {
        self.p.svc.inner.seg.intact()?;
        self.p.finished = true;
        Err(Error::Corrupt { what, found })
    }
}

impl<M: SharedMemory> Sleeper for ReceiveStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.p.svc.inner.seg.intact()?;
        if !peer {
            return Ok(());
        }
        let (w, o) = self.owner()?;
        if o.is(Phase::Queued) {
            // A fan-out copy waits for one server: its death ends the wait.
            // Relaxed: written by us at fill.
            let target = self.slot().u32_at(S_TARGET).load(Ordering::Relaxed);
            if target != 0 && proc::liveness(target) == Liveness::Dead {
                self.p.finished = true;
                self.p.dead_server = target;
                return Err(Error::PeerDied { pid: target });
            }
            return Ok(());
        }
        if !o.is(Phase::Taken) || proc::liveness(o.server) != Liveness::Dead {
            return Ok(());
        }
        let slot = self.slot();
        // Relaxed: written by us at fill.
        let flags = slot.u32_at(S_FLAGS).load(Ordering::Relaxed);
        // Acquire: pairs with the server's Release store after an entry.
        let answered = slot.u32_at(S_WRITTEN).load(Ordering::Acquire) != 0;
        if flags & IDEMPOTENT != 0 && !o.retried && !answered {
            let me = self.p.end.pid();
            let requeued = Owner::word(Phase::Queued, me, 0, true);
            // AcqRel: Release so the next server's Acquire take sees the slot as we
            // left it; fails if the slot moved (then the next look says how).
            if slot
                .u64_at(S_OWNER)
                .compare_exchange(w, requeued, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.p.retried = true;
                self.p.svc.wake_servers();
                return Ok(());
            }
        }
        self.p.finished = true;
        self.p.dead_server = o.server;
        Err(Error::PeerDied { pid: o.server })
    }

    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        let slot = self.slot();
        let seq_word = slot.u32_at(S_CLIENT_SEQ);
        // Acquire: pairs with the server's Release bump of `client_seq`.
        let seq = seq_word.load(Ordering::Acquire);
        slot.u32_at(S_CLIENT_SLEEPS).fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the server's (between its entry or done and its
        // sleeps load): either it sees us sleep, or we see its entry.
        fence(Ordering::SeqCst);
        if self.something() {
            slot.u32_at(S_CLIENT_SLEEPS).fetch_sub(1, Ordering::Relaxed);
            return Ok(None);
        }
        let p = &*self.p;
        let owner = p.svc.slot_u64::<S_OWNER>(p.slot);
        // Relaxed: compared for change by the reactor.
        let w = owner.load(Ordering::Relaxed);
        Ok(Some(
            Park::futex(p.svc.slot_u32::<S_CLIENT_SEQ>(p.slot), seq)
                .watch_u64(owner, w)
                .peer(Owner::decode(w).server)
                // A fan-out copy's server dying before it took the copy, or a
                // deadline passing, changes no word: looked at every reactor tick.
                .periodic(),
        ))
    }

    fn done(&mut self) {
        self.slot()
            .u32_at(S_CLIENT_SLEEPS)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl<M: SharedMemory> PendingResponse<M> {
    /// The request's id (chosen by the library; every response is checked against it).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the stream is over: the last response, an error response, or an end
    /// (`Closed`, `PeerDied`, `Timeout` at the deadline, `Corrupt`) was returned.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether the request went back to the queue because its server died before
    /// answering (an [idempotent](super::Client::set_idempotent) request; at most once).
    pub fn retried(&self) -> bool {
        self.retried
    }

    /// The request's deadline, if it was sent with one.
    pub fn deadline(&self) -> Option<Instant> {
        self.left().and_then(|l| Instant::now().checked_add(l))
    }

    /// How this request waits (default: the client's mode when it was sent).
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    fn step(&mut self) -> ReceiveStep<'_, M> {
        ReceiveStep { p: self }
    }

    /// The time left to the deadline (`None`: no deadline; zero: passed).
    /// How long since the send began.
    fn waited(&self) -> Duration {
        Duration::from_nanos(crate::os::sys::monotonic_ns().saturating_sub(self.sent_ns))
    }

    fn left(&self) -> Option<Duration> {
        (self.deadline_ns != 0).then(|| {
            Duration::from_nanos(
                self.deadline_ns
                    .saturating_sub(crate::os::sys::monotonic_ns()),
            )
        })
    }

    /// The next response, if there is one now.
    ///
    /// # Errors
    /// [`TryResponseError::Empty`] when none yet; [`TryResponseError::Timeout`] once the
    /// request's deadline passed; `Closed` after the last response (or a server that
    /// dropped the request unanswered); `PeerDied` when its server died holding it
    /// (checked at most every millisecond); `ServerError` for an error response; `Failed`
    /// with [`Error::Corrupt`] when the slot no longer holds this request.
    pub fn try_receive(&mut self) -> Result<Response, TryResponseError> {
        if self.left().is_some_and(|l| l.is_zero()) && !self.finished {
            let mut s = self.step();
            if let Some(r) = s.look()? {
                return Ok(r);
            }
            self.finished = true;
            return Err(TryResponseError::Timeout {
                waited: self.waited(),
            });
        }
        let mut parked = std::mem::take(&mut self.parked);
        let r = wait::try_once(&mut self.step(), &mut parked, Error::Empty);
        self.parked = parked;
        Ok(r?)
    }

    /// The next response, waiting for it (until the request's deadline, if it has one).
    ///
    /// # Errors
    /// As [`try_receive`](Self::try_receive), but never `Empty`; a deadline that passes
    /// is `Failed(Timeout)` here (use [`receive_timeout`](Self::receive_timeout) to have
    /// it as its own arm).
    pub fn receive(&mut self) -> Result<Response, CallError> {
        self.receive_impl(None).map_err(Into::into)
    }

    /// [`receive`](Self::receive), at most `timeout` (and never past the deadline).
    ///
    /// # Errors
    /// [`CallTimeoutError::Timeout`]; as [`receive`](Self::receive).
    pub fn receive_timeout(&mut self, timeout: Duration) -> Result<Response, CallTimeoutError> {
        self.receive_impl(Some(timeout)).map_err(Into::into)
    }

    fn receive_impl(&mut self, timeout: Option<Duration>) -> Result<Response, Error> {
        // A response already there costs no read of the clock.
        if let Some(r) = self.step().look()? {
            return Ok(r);
        }
        let bound = match (timeout, self.left()) {
            (Some(t), Some(l)) => Some(t.min(l)),
            (t, l) => t.or(l),
        };
        // As a channel's ends: the spin does not yield (a yield on a loaded machine hands
        // the CPU away for a whole slice; measured, the 64-byte call's p50 doubled). A
        // client that must leave the CPU to its servers sleeps: `WaitMode::Block` with
        // a short or zero spin.
        let pace = self.wait.pace();
        let r = wait::block(&mut self.step(), pace, bound);
        if matches!(r, Err(Error::Timeout { .. })) && self.left().is_some_and(|l| l.is_zero()) {
            self.finished = true;
        }
        r
    }

    /// [`receive`](Self::receive), as a future (parked with the
    /// [`reactor`](crate::os::reactor), woken by the server's response or its death).
    /// The request's deadline, if any, is not a timer here: wrap the future in your
    /// runtime's timeout.
    ///
    /// # Errors
    /// As [`receive`](Self::receive).
    ///
    /// # Cancel safety
    /// Cancellation safe: a response is taken only in the poll that completes the
    /// future; a dropped future loses none.
    pub async fn receive_async(&mut self) -> Result<Response, CallError> {
        let spin = self.wait.async_spin();
        let guard = ParkGuard { p: self };
        std::future::poll_fn(|cx| {
            let p = &mut *guard.p;
            let mut parked = std::mem::take(&mut p.parked);
            let r = wait::poll_step(&mut p.step(), &mut parked, spin, cx);
            p.parked = parked;
            r
        })
        .await
        .map_err(Into::into)
    }

    fn unpark(&mut self) {
        if self.end.forked() {
            return;
        }
        let mut parked = std::mem::take(&mut self.parked);
        parked.release(&mut self.step());
    }
}

/// Takes back a parked receive's announcement when its future ends or is dropped.
struct ParkGuard<'a, M: SharedMemory> {
    p: &'a mut PendingResponse<M>,
}

impl<M: SharedMemory> Drop for ParkGuard<'_, M> {
    fn drop(&mut self) {
        self.p.unpark();
    }
}

impl<M: SharedMemory> Drop for PendingResponse<M> {
    fn drop(&mut self) {
        if self.end.forked() {
            return; // the parent still holds the request
        }
        self.unpark();
        cancel(
            &self.svc,
            self.slot,
            self.end.pid(),
            self.id,
            self.dead_server,
        );
        self.svc.inner.held.let_go(self.slot, false);
    }
}

/// The owner word of slot `i`, if it still names request `id` of client `me` (an honest
/// word, our pid in its client field, our id in the slot): what every client-side look
/// checks before trusting the slot. `Err` carries the word found.
fn request_owner<M: SharedMemory>(
    svc: &Service<M>,
    i: usize,
    me: u32,
    id: u64,
) -> Result<(u64, Owner), u64> {
    // Acquire: pairs with the Release CASes that move the slot (take, done, cancel).
    let w = svc.slot_u64::<S_OWNER>(i).load(Ordering::Acquire);
    let o = Owner::decode(w);
    // Relaxed: written by the client before the slot was queued.
    let now = svc.slot_u64::<S_ID>(i).load(Ordering::Relaxed);
    if Owner::honest(w) && o.client == me && now == id {
        Ok((w, o))
    } else {
        Err(w)
    }
}

/// Whether request `id` in slot `i` has news for a client that took `read` responses: an
/// entry `written` vouches for, or a phase other than queued or taken (done, expired, or
/// the slot no longer this request's). What a sleep is announced against, by the
/// pending response's own wait and by a wait set's source alike.
fn request_news<M: SharedMemory>(svc: &Service<M>, i: usize, me: u32, id: u64, read: u32) -> bool {
    // Acquire: pairs with the server's Release store of `written`.
    svc.slot_u32::<S_WRITTEN>(i).load(Ordering::Acquire) != read
        || request_owner(svc, i, me, id)
            .map_or(true, |(_, o)| !(o.is(Phase::Queued) || o.is(Phase::Taken)))
}

/// Lets a request's slot go: free it if no server holds it (or its server is dead),
/// else mark it cancelled for the server to free. Only a slot that still names this
/// client and id is touched.
fn cancel<M: SharedMemory>(svc: &Service<M>, i: usize, me: u32, id: u64, dead_server: u32) {
    let owner = svc.slot_u64::<S_OWNER>(i);
    for _ in 0..CLAIM_TRIES {
        let Ok((w, o)) = request_owner(svc, i, me, id) else {
            return; // not ours any more: a sweep or the server deals with it
        };
        // A taken request is handed to its server to free, without asking whether it
        // lives (a system call on the common path, where the client took the last
        // response before the server moved the slot on): a cancelled slot whose server
        // is dead is freed by the next sweep; one whose death this request reported is
        // freed now.
        let next = if o.is(Phase::Taken) && (o.server != dead_server || dead_server == 0) {
            Owner::word(Phase::Cancelled, me, o.server, o.retried)
        } else if o.is(Phase::Cancelled) {
            return;
        } else {
            Owner::FREE
        };
        // Release: pairs with the Acquire of the next claim (after our last read of the
        // slot) and of the server's respond (which then sees the cancel).
        if owner
            .compare_exchange(w, next, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            if next != Owner::FREE {
                // A server waiting for room wakes and sees the cancel.
                crate::os::futex::wake(svc.slot_u32::<S_READ>(i));
            }
            return;
        }
    }
}

impl<M: SharedMemory> std::fmt::Debug for PendingResponse<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingResponse")
            .field("id", &self.id)
            .field("slot", &self.slot)
            .field("finished", &self.finished)
            .finish()
    }
}

/// A pending response as a [`WaitSet`](crate::waitset::WaitSet) sees it: ready when a
/// response came, or the request ended (done, expired, not this request's any more), or
/// its server died.
struct PendingSource<M: SharedMemory> {
    svc: Service<M>,
    slot: usize,
    id: u64,
    me: u32,
    read: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl<M: SharedMemory + Send + Sync + 'static> Waitable for PendingResponse<M> {
    fn wait_source(&self) -> WaitSource {
        WaitSource(Box::new(PendingSource {
            svc: self.svc.clone(),
            slot: self.slot,
            id: self.id,
            me: self.end.pid(),
            read: std::sync::Arc::clone(
                self.read_mirror.get_or_init(|| {
                    std::sync::Arc::new(std::sync::atomic::AtomicU32::new(self.read))
                }),
            ),
        }))
    }
}

impl<M: SharedMemory> PendingSource<M> {
    /// The owner word, if it still names this request.
    fn owner(&self) -> Option<Owner> {
        request_owner(&self.svc, self.slot, self.me, self.id)
            .ok()
            .map(|(_, o)| o)
    }
}

impl<M: SharedMemory + Send + Sync> Source for PendingSource<M> {
    fn has_data(&self) -> bool {
        // Relaxed: process-local.
        let read = self.read.load(std::sync::atomic::Ordering::Relaxed);
        request_news(&self.svc, self.slot, self.me, self.id, read)
    }

    fn ready(&self, dead: &dyn Fn(u32) -> bool) -> Result<bool, Error> {
        self.svc.inner.seg.intact()?;
        if self.has_data() {
            return Ok(true);
        }
        match self.owner() {
            Some(o) if o.is(Phase::Taken) && dead(o.server) => {
                Err(Error::PeerDied { pid: o.server })
            }
            _ => Ok(false),
        }
    }

    fn arm(&self) -> Option<(crate::format::view::Word32, u32)> {
        let view = self.svc.slot(self.slot);
        let seq_word = view.word32(S_CLIENT_SEQ);
        // Acquire: pairs with the server's Release bump of `client_seq`.
        let seq = seq_word.get().load(Ordering::Acquire);
        view.u32_at(S_CLIENT_SLEEPS).fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the server's, as the client's own wait.
        fence(Ordering::SeqCst);
        if self.has_data() {
            view.u32_at(S_CLIENT_SLEEPS).fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some((seq_word, seq))
    }

    fn disarm(&self) {
        self.svc
            .slot_u32::<S_CLIENT_SLEEPS>(self.slot)
            .fetch_sub(1, Ordering::Relaxed);
    }

    fn peers(&self, out: &mut Vec<u32>) {
        if let Some(o) = self.owner().filter(|o| o.is(Phase::Taken)) {
            out.push(o.server);
        }
    }

    fn limit(&self) -> Option<Duration> {
        // A deadline passing changes no word: look again every slice.
        Some(crate::os::park::SLICE)
    }
}
