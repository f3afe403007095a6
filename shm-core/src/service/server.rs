//! The answering end: [`Server`], and the [`ActiveRequest`] it answers.

use std::time::{Duration, Instant};

use super::layout::*;
use super::segment::Service;
use crate::format::error::{Error, RecvError, RecvTimeoutError, RespondError, TryRecvError};
use crate::format::memory::SharedMemory;
use crate::os::park::Park;
use crate::os::proc::{self, Liveness};
use crate::protocol::sync::{fence, Ordering};
use crate::wait::{
    self, Owner as End, Parked, Sleeper, Source, Step, WaitMode, WaitSource, Waitable,
};

impl<M: SharedMemory> Service<M> {
    /// An answering end: takes a server line (or one whose holder died).
    ///
    /// # Errors
    /// [`Error::ServersFull`] when every line is held by a live process,
    /// [`Error::ReadOnly`], [`Error::Truncated`].
    pub fn server(&self) -> Result<Server<M>, Error> {
        self.inner.seg.check_writable("taking a server line")?;
        self.inner.seg.intact()?;
        let Some(line) = self.claim_line(self.inner.cfg.max_servers, |s, i| s.server_line(i))
        else {
            return Err(Error::ServersFull {
                max: self.inner.cfg.max_servers,
            });
        };
        Ok(Server {
            svc: self.clone(),
            line,
            end: End::current(),
            wait: WaitMode::default(),
            parked: Parked::default(),
        })
    }
}

/// The answering end of a [`Service`]: takes requests, each handed to exactly one of the
/// service's servers (the oldest queued first), and answers them through
/// [`ActiveRequest`].
pub struct Server<M: SharedMemory> {
    svc: Service<M>,
    line: usize,
    end: End,
    wait: WaitMode,
    parked: Parked,
}

/// A request a server took: its bytes (copied out of the slot), its deadline and client,
/// and the ways to answer. Dropping it unanswered finishes the request (the client's
/// wait ends with `Closed`).
pub struct ActiveRequest<M: SharedMemory> {
    svc: Service<M>,
    slot: usize,
    id: u64,
    client: u32,
    end: End,
    data: Vec<u8>,
    deadline_ns: u64,
    /// Responses written: the server's own count.
    written: u32,
    finished: bool,
    wait: WaitMode,
}

/// The server's one step: take the oldest queued request.
struct TakeStep<'a, M: SharedMemory> {
    server: &'a Server<M>,
}

impl<M: SharedMemory> TakeStep<'_, M> {
    /// Takes slot `i` from `w` (queued), then checks what the client wrote: `Some` when
    /// the request is to be answered.
    fn take(&self, i: usize, w: u64) -> Result<Option<ActiveRequest<M>>, Error> {
        let s = self.server;
        let me = s.end.pid();
        let o = Owner::decode(w);
        let taken = Owner::word(Phase::Taken, o.client, me, o.retried);
        // Recorded before the take: a sweep that sees the take sees the record.
        s.svc.inner.held.hold(i, true);
        // AcqRel: Acquire pairs with the client's Release CAS to queued (its request is
        // visible); Release with the client's Acquire owner loads (and publishes the
        // record above to a sweep).
        if s.svc
            .slot_u64::<S_OWNER>(i)
            .compare_exchange(w, taken, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            s.svc.inner.held.let_go(i, true);
            return Ok(None); // another server took it, or its client cancelled
        }
        let slot = s.svc.slot(i);
        // Relaxed (all): ordered after the Acquire CAS above.
        let id = slot.u64_at(S_ID).load(Ordering::Relaxed);
        let deadline_ns = slot.u64_at(S_DEADLINE).load(Ordering::Relaxed);
        let len = slot.u32_at(S_LEN).load(Ordering::Relaxed);
        let mut req = ActiveRequest {
            svc: s.svc.clone(),
            slot: i,
            id,
            client: o.client,
            end: s.end,
            data: Vec::new(),
            deadline_ns,
            written: 0,
            finished: false,
            wait: s.wait,
        };
        // One read of the shared clock for both checks below.
        let now_ns = crate::os::sys::monotonic_ns();
        if deadline_ns != 0 && now_ns >= deadline_ns {
            // Never handed out: the client gets `Timeout` at its deadline.
            req.finish(Phase::Expired);
            return Ok(None);
        }
        // A request that waited in the queue (more than a liveness check's interval) may
        // be a dead client's: such a request is never handed out. A fresh one is not
        // asked (the common case pays no system call); its server sees the death through
        // `is_cancelled` and `respond`.
        let queued_at = slot.u64_at(S_QUEUED_AT).load(Ordering::Relaxed);
        let waited = now_ns.saturating_sub(queued_at);
        if waited > crate::wait::PEER_CHECK.as_nanos() as u64 && !proc::is_live(o.client) {
            req.finish(Phase::Free);
            return Ok(None);
        }
        if len > s.svc.inner.cfg.request_max {
            // No honest client writes it: answer with an error, do not hand it out.
            let _ = req.write(KIND_ERROR, u32::MAX, &[]);
            req.finish(Phase::Done);
            return Ok(None);
        }
        req.data = crate::format::copy::zeroed(len as usize);
        slot.load(SLOT_HEAD, &mut req.data);
        s.svc.inner.seg.intact()?;
        Ok(Some(req))
    }
}

impl<M: SharedMemory> Step for TakeStep<'_, M> {
    type Out = ActiveRequest<M>;

    fn look(&mut self) -> Result<Option<ActiveRequest<M>>, Error> {
        let s = self.server;
        let me = s.end.pid();
        s.end.check()?;
        s.svc.inner.seg.intact()?;
        // Bounded: a take that loses, or finds a request not to hand out, looks again, at
        // most once per slot; then the wait's own round (deadline, checks) comes first. A
        // peer that keeps writing requests back to the queue cannot hold a look for ever.
        for _ in 0..=s.svc.inner.cfg.slots {
            let mut best: Option<(usize, u64, u64)> = None;
            // A copy, kept in registers: read through the service, its fields would be
            // loaded again after every Acquire load below.
            let heads = s.svc.inner.heads;
            for i in 0..heads.len() {
                let Some(owner) = heads.u64_at::<S_OWNER>(i) else {
                    break;
                };
                // Acquire: pairs with the client's Release CAS to queued.
                let w = owner.load(Ordering::Acquire);
                if !Owner::word_is(w, Phase::Queued) {
                    continue;
                }
                let o = Owner::decode(w);
                if !(o.server == 0 && Owner::honest(w)) {
                    continue;
                }
                // A fan-out copy is for the one server process it names.
                // Relaxed: ordered by the take's Acquire CAS; a stale read only skips.
                let target = s.svc.slot_u32::<S_TARGET>(i).load(Ordering::Relaxed);
                if target != 0 && target != me {
                    continue;
                }
                // Relaxed: only orders the queue.
                let at = s.svc.slot_u64::<S_QUEUED_AT>(i).load(Ordering::Relaxed);
                if best.is_none_or(|(_, _, b)| at < b) {
                    best = Some((i, w, at));
                }
            }
            let Some((i, w, _)) = best else {
                return Ok(None);
            };
            if let Some(req) = self.take(i, w)? {
                return Ok(Some(req));
            }
            // Lost it, or it was not to be handed out: look again.
        }
        Ok(None)
    }
}

impl<M: SharedMemory> Sleeper for TakeStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.server.svc.inner.seg.intact()?;
        if peer {
            // Requests of dead clients leave the queue; slots of dead ends come free.
            self.server.svc.sweep();
        }
        Ok(())
    }

    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        let svc = &self.server.svc;
        // Acquire: pairs with the client's Release bump of `req_seq`.
        let seq = svc.inner.req_seq.get().load(Ordering::Acquire);
        svc.inner
            .server_sleepers
            .get()
            .fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the client's in `wake_servers`.
        fence(Ordering::SeqCst);
        if svc.any_queued(self.server.end.pid()) {
            svc.inner
                .server_sleepers
                .get()
                .fetch_sub(1, Ordering::Relaxed);
            return Ok(None);
        }
        // Periodic: a deadline or a client's death changes no word we can watch.
        Ok(Some(Park::futex(svc.inner.req_seq.get(), seq).periodic()))
    }

    fn done(&mut self) {
        self.server
            .svc
            .inner
            .server_sleepers
            .get()
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl<M: SharedMemory> Server<M> {
    /// How this end waits for requests (default: 50 µs of spin, then sleep).
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    /// The service this end answers.
    pub fn service(&self) -> &Service<M> {
        &self.svc
    }

    /// The oldest queued request, if there is one now.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when none; `Failed` with [`Error::Truncated`] or
    /// [`Error::Forked`].
    pub fn try_receive(&mut self) -> Result<ActiveRequest<M>, TryRecvError> {
        let mut parked = std::mem::take(&mut self.parked);
        let r = wait::try_once(&mut TakeStep { server: self }, &mut parked, Error::Empty);
        self.parked = parked;
        Ok(r?)
    }

    /// The oldest queued request, waiting until there is one.
    ///
    /// # Errors
    /// `Failed` with [`Error::Truncated`] or [`Error::Forked`].
    pub fn receive(&mut self) -> Result<ActiveRequest<M>, RecvError> {
        let pace = self.wait.pace_shared();
        Ok(wait::block(&mut TakeStep { server: self }, pace, None)?)
    }

    /// [`receive`](Self::receive), at most `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`]; as [`receive`](Self::receive).
    pub fn receive_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<ActiveRequest<M>, RecvTimeoutError> {
        let pace = self.wait.pace_shared();
        Ok(wait::block(
            &mut TakeStep { server: self },
            pace,
            Some(timeout),
        )?)
    }

    /// [`receive`](Self::receive), as a future (parked with the
    /// [`reactor`](crate::os::reactor), woken by a client's request).
    ///
    /// # Errors
    /// As [`receive`](Self::receive).
    ///
    /// # Cancel safety
    /// Cancellation safe: a request is taken only in the poll that completes the future.
    pub async fn receive_async(&mut self) -> Result<ActiveRequest<M>, RecvError> {
        let spin = self.wait.async_spin();
        let guard = ServerPark { s: self };
        std::future::poll_fn(|cx| {
            let s = &mut *guard.s;
            let mut parked = std::mem::take(&mut s.parked);
            let r = wait::poll_step(&mut TakeStep { server: s }, &mut parked, spin, cx);
            s.parked = parked;
            r
        })
        .await
        .map_err(Into::into)
    }
}

/// Takes back a parked receive's announcement when its future ends or is dropped.
struct ServerPark<'a, M: SharedMemory> {
    s: &'a mut Server<M>,
}

impl<M: SharedMemory> Drop for ServerPark<'_, M> {
    fn drop(&mut self) {
        if self.s.end.forked() {
            return;
        }
        let mut parked = std::mem::take(&mut self.s.parked);
        parked.release(&mut TakeStep { server: self.s });
    }
}

impl<M: SharedMemory> Drop for Server<M> {
    fn drop(&mut self) {
        if self.end.forked() {
            return;
        }
        // Release: pairs with the Acquire of the next claim. Only our own pid.
        let _ = self.svc.server_line(self.line).compare_exchange(
            self.end.pid(),
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

impl<M: SharedMemory> std::fmt::Debug for Server<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("line", &self.line).finish()
    }
}

/// A respond's wait for room in the request's response ring.
struct RoomStep<'a, M: SharedMemory> {
    req: &'a mut ActiveRequest<M>,
    kind: u32,
    len: u32,
    data: &'a [u8],
}

impl<M: SharedMemory> Step for RoomStep<'_, M> {
    type Out = ();

    fn look(&mut self) -> Result<Option<()>, Error> {
        self.req.end.check()?;
        self.req.held()?;
        let r = &mut *self.req;
        // Acquire: pairs with the client's Release store of `read` after its copy.
        let read = r.svc.slot_u32::<S_READ>(r.slot).load(Ordering::Acquire);
        let used = r.written.wrapping_sub(read);
        if used > r.svc.inner.cfg.depth {
            // No honest client writes it: this client cannot be answered.
            return Err(Error::Cancelled);
        }
        if used == r.svc.inner.cfg.depth {
            return Ok(None);
        }
        r.write(self.kind, self.len, self.data)?;
        Ok(Some(()))
    }
}

impl<M: SharedMemory> Sleeper for RoomStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.req.svc.inner.seg.intact()?;
        self.req.held()?;
        if peer && proc::liveness(self.req.client) == Liveness::Dead {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        let r = &*self.req;
        let read = r.svc.slot_u32::<S_READ>(r.slot);
        let sleeps = r.svc.slot_u32::<S_SERVER_SLEEPS>(r.slot);
        // Acquire: pairs with the client's Release store of `read`.
        let seen = read.load(Ordering::Acquire);
        sleeps.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the client's (between its `read` store and its
        // sleeps load).
        fence(Ordering::SeqCst);
        if read.load(Ordering::Acquire) != seen {
            sleeps.fetch_sub(1, Ordering::Relaxed);
            return Ok(None);
        }
        let owner = r.svc.slot_u64::<S_OWNER>(r.slot);
        // Relaxed: compared for change by the reactor.
        let w = owner.load(Ordering::Relaxed);
        Ok(Some(
            Park::futex(read, seen).watch_u64(owner, w).peer(r.client),
        ))
    }

    fn done(&mut self) {
        let r = &*self.req;
        r.svc
            .slot_u32::<S_SERVER_SLEEPS>(r.slot)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl<M: SharedMemory> ActiveRequest<M> {
    /// The request's bytes (copied out of the slot when the server took it: the client
    /// could still write the slot, so no reference into it is handed out).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The request's bytes, taken.
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    /// The request's id (what its client checks every response against).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client's pid.
    pub fn client_pid(&self) -> u32 {
        self.client
    }

    /// The request's deadline, if its client gave one.
    pub fn deadline(&self) -> Option<Instant> {
        self.remaining().and_then(|r| Instant::now().checked_add(r))
    }

    /// The time left until the request's deadline (`None`: no deadline; zero: passed).
    pub fn remaining(&self) -> Option<Duration> {
        (self.deadline_ns != 0).then(|| {
            Duration::from_nanos(
                self.deadline_ns
                    .saturating_sub(crate::os::sys::monotonic_ns()),
            )
        })
    }

    /// Whether the client cancelled the request (dropped its pending response) or died:
    /// nothing more reaches it. Asks the client's liveness (a system call).
    pub fn is_cancelled(&self) -> bool {
        self.held().is_err() || proc::liveness(self.client) == Liveness::Dead
    }

    /// How `respond` waits for room (default: the server's mode).
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    /// `Ok` while this server still holds the request for its client; `Cancelled` once
    /// the client cancelled, or the slot no longer names this request.
    fn held(&self) -> Result<(), Error> {
        // Acquire: pairs with the client's Release CAS of a cancel.
        let w = self
            .svc
            .slot_u64::<S_OWNER>(self.slot)
            .load(Ordering::Acquire);
        let o = Owner::decode(w);
        if !Owner::honest(w)
            || !o.is(Phase::Taken)
            || o.server != self.end.pid()
            || o.client != self.client
        {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// Writes one entry at `written` (room checked by the caller) and tells the client.
    fn write(&mut self, kind: u32, len: u32, data: &[u8]) -> Result<(), Error> {
        let cfg = self.svc.inner.cfg;
        let slot = self.svc.slot(self.slot);
        let at = cfg.entries_at + (self.written % cfg.depth) as usize * cfg.entry_stride;
        // Relaxed (all): published by the Release store of `written` below.
        slot.u64_at(at).store(self.id, Ordering::Relaxed);
        slot.u32_at(at + 8).store(len, Ordering::Relaxed);
        slot.u32_at(at + 12).store(kind, Ordering::Relaxed);
        slot.store(at + ENTRY_HEAD, data);
        self.written = self.written.wrapping_add(1);
        // Release: pairs with the client's Acquire load of `written`.
        slot.u32_at(S_WRITTEN)
            .store(self.written, Ordering::Release);
        if kind == KIND_DATA {
            // A last or error entry: `finish`, which follows, wakes the client once.
            self.wake_client();
        }
        self.svc.inner.seg.intact()
    }

    /// Wakes the client's sleeping wait, if it says it sleeps.
    fn wake_client(&self) {
        let seq = self.svc.slot_u32::<S_CLIENT_SEQ>(self.slot);
        // SeqCst fence: pairs with the client's (between its sleeps increment and its
        // look): either it sees our entry, or we see it sleep.
        fence(Ordering::SeqCst);
        if self
            .svc
            .slot_u32::<S_CLIENT_SLEEPS>(self.slot)
            .load(Ordering::Relaxed)
            != 0
        {
            // Release: pairs with the client's Acquire load before it sleeps.
            seq.fetch_add(1, Ordering::Release);
            crate::os::futex::wake(seq);
        }
    }

    /// Hands the slot on: to the client (`Done`, `Expired`), or frees it when the client
    /// cancelled. Only the exact word this server left is moved.
    fn finish(&mut self, to: Phase) {
        if std::mem::replace(&mut self.finished, true) || self.end.forked() {
            return;
        }
        self.move_on(to);
        self.svc.inner.held.let_go(self.slot, true);
    }

    fn move_on(&mut self, to: Phase) {
        let owner = self.svc.slot_u64::<S_OWNER>(self.slot);
        let me = self.end.pid();
        for _ in 0..CLAIM_TRIES {
            // Acquire: pairs with the client's Release CAS of a cancel.
            let w = owner.load(Ordering::Acquire);
            let o = Owner::decode(w);
            if !Owner::honest(w) || o.server != me || o.client != self.client {
                return; // not ours any more
            }
            let next = if o.is(Phase::Taken) && to == Phase::Free {
                Owner::FREE
            } else if o.is(Phase::Taken) {
                Owner::word(to, o.client, 0, o.retried)
            } else if o.is(Phase::Cancelled) {
                Owner::FREE
            } else {
                return;
            };
            // Release: pairs with the client's Acquire owner load (every entry we wrote
            // is visible with the phase) and the next claim's Acquire.
            if owner
                .compare_exchange(w, next, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                if to == Phase::Done {
                    // Relaxed: a count for display only.
                    self.svc
                        .inner
                        .view
                        .u64_at(SERVED)
                        .fetch_add(1, Ordering::Relaxed);
                }
                if next != Owner::FREE {
                    self.wake_client();
                }
                return;
            }
        }
    }

    fn respond_kind(&mut self, kind: u32, data: &[u8], code: u32) -> Result<(), RespondError> {
        if self.finished {
            return Err(RespondError::Closed);
        }
        let max = self.svc.inner.cfg.response_max;
        if data.len() as u64 > u64::from(max) {
            return Err(RespondError::MessageTooLarge {
                len: data.len() as u64,
                max: max.into(),
            });
        }
        let len = if kind == KIND_ERROR || kind == KIND_PEER_DIED {
            code
        } else {
            data.len() as u32
        };
        let pace = self.wait.pace();
        let timeout = self.remaining();
        let mut step = RoomStep {
            req: self,
            kind,
            len,
            data,
        };
        Ok(wait::block(&mut step, pace, timeout)?)
    }

    /// Sends one response of the stream; more may follow. Waits while the client has
    /// `response_depth` responses unread (until the request's deadline, if any).
    ///
    /// # Errors
    /// [`RespondError::Cancelled`] once the client cancelled or died (the caller may
    /// stop working on it); [`RespondError::Timeout`] at the deadline;
    /// [`RespondError::MessageTooLarge`]; `Closed` after the last response.
    pub fn respond(&mut self, data: &[u8]) -> Result<(), RespondError> {
        self.respond_kind(KIND_DATA, data, 0)
    }

    /// Sends the last response (or the only one) and finishes the request.
    ///
    /// # Errors
    /// As [`respond`](Self::respond); the request is finished either way.
    pub fn respond_last(mut self, data: &[u8]) -> Result<(), RespondError> {
        let r = self.respond_kind(KIND_LAST, data, 0);
        self.finish(Phase::Done);
        r
    }

    /// Answers with an error code (the client's wait ends with `ServerError { code }`)
    /// and finishes the request.
    ///
    /// # Errors
    /// As [`respond`](Self::respond); the request is finished either way.
    pub fn respond_error(mut self, code: u32) -> Result<(), RespondError> {
        let r = self.respond_kind(KIND_ERROR, &[], code);
        self.finish(Phase::Done);
        r
    }

    /// Answers that the server which held this request elsewhere died, process `pid`
    /// (for a relay: a bridge whose far server died), and finishes the request: the
    /// client's wait ends with `PeerDied { pid }`, as when a server of its own service
    /// dies holding its request.
    ///
    /// # Errors
    /// As [`respond`](Self::respond); the request is finished either way.
    pub fn respond_peer_died(mut self, pid: u32) -> Result<(), RespondError> {
        let r = self.respond_kind(KIND_PEER_DIED, &[], pid);
        self.finish(Phase::Done);
        r
    }
}

impl<M: SharedMemory> Drop for ActiveRequest<M> {
    fn drop(&mut self) {
        self.finish(Phase::Done);
    }
}

impl<M: SharedMemory> std::fmt::Debug for ActiveRequest<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveRequest")
            .field("id", &self.id)
            .field("client", &self.client)
            .field("len", &self.data.len())
            .finish()
    }
}

/// A server as a [`WaitSet`](crate::waitset::WaitSet) sees it: ready when a request is
/// queued.
struct ServerSource<M: SharedMemory> {
    svc: Service<M>,
    me: u32,
}

impl<M: SharedMemory + Send + Sync + 'static> Waitable for Server<M> {
    fn wait_source(&self) -> WaitSource {
        WaitSource(Box::new(ServerSource {
            svc: self.svc.clone(),
            me: self.end.pid(),
        }))
    }
}

impl<M: SharedMemory + Send + Sync> Source for ServerSource<M> {
    fn has_data(&self) -> bool {
        self.svc.any_queued(self.me)
    }

    fn ready(&self, _dead: &dyn Fn(u32) -> bool) -> Result<bool, Error> {
        self.svc.inner.seg.intact()?;
        Ok(self.svc.any_queued(self.me))
    }

    fn arm(&self) -> Option<(crate::format::view::Word32, u32)> {
        let svc = &self.svc;
        // Acquire: as the server's own prepare.
        let seq = svc.inner.req_seq.get().load(Ordering::Acquire);
        svc.inner
            .server_sleepers
            .get()
            .fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the client's in `wake_servers`.
        fence(Ordering::SeqCst);
        if svc.any_queued(self.me) {
            svc.inner
                .server_sleepers
                .get()
                .fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some((svc.inner.req_seq, seq))
    }

    fn disarm(&self) {
        self.svc
            .inner
            .server_sleepers
            .get()
            .fetch_sub(1, Ordering::Relaxed);
    }

    fn peers(&self, _out: &mut Vec<u32>) {}

    fn limit(&self) -> Option<Duration> {
        // A queued request whose client died is swept by the server's own checks.
        Some(crate::os::park::SLICE)
    }
}
