//! The calling end: [`Client`], which sends requests (each then a
//! [`PendingResponse`](super::PendingResponse), in `pending.rs`).

use std::time::{Duration, Instant};

use super::layout::*;
use super::pending::{PendingResponse, Response};
use super::segment::Service;
use crate::format::error::{CallError, CallTimeoutError, Error, TryCallError};
use crate::format::memory::SharedMemory;
use crate::os::proc;
use crate::protocol::sync::Ordering;
use crate::wait::{self, Owner as End, Pace, Parked, Sleeper, Step, WaitMode};

impl<M: SharedMemory> Service<M> {
    /// A calling end: takes a client line (or one whose holder died).
    ///
    /// # Errors
    /// [`Error::ClientsFull`] when every line is held by a live process,
    /// [`Error::ReadOnly`], [`Error::Truncated`].
    pub fn client(&self) -> Result<Client<M>, Error> {
        self.inner.seg.check_writable("taking a client line")?;
        self.inner.seg.intact()?;
        let Some(line) = self.claim_line(self.inner.cfg.max_clients, |s, i| s.client_line(i))
        else {
            return Err(Error::ClientsFull {
                max: self.inner.cfg.max_clients,
            });
        };
        Ok(Client {
            svc: self.clone(),
            line,
            end: End::current(),
            wait: WaitMode::default(),
            idempotent: false,
            next_slot: (proc::current_pid() as usize) % self.inner.cfg.slots as usize,
        })
    }
}

/// The calling end of a [`Service`]: sends requests, each taken by exactly one server,
/// and waits for their responses.
///
/// Every request holds one of the service's slots from the send until its
/// [`PendingResponse`] is dropped (or, after a cancel, until its server lets go), so a
/// client that keeps many requests in flight uses many slots.
pub struct Client<M: SharedMemory> {
    svc: Service<M>,
    line: usize,
    end: End,
    wait: WaitMode,
    idempotent: bool,
    next_slot: usize,
}

/// A client's one step for a slot: claim a free one, fill it, queue it.
struct SendStep<'a, M: SharedMemory> {
    client: &'a mut Client<M>,
    req: &'a [u8],
    deadline_ns: u64,
    /// The shared clock when the send began (the request's place in the queue).
    now_ns: u64,
    /// The server process the request is for (0: any; a fan-out copy names one).
    target: u32,
}

impl<M: SharedMemory> SendStep<'_, M> {
    fn fill(&mut self, i: usize) -> Result<PendingResponse<M>, Error> {
        let c = &*self.client;
        let me = c.end.pid();
        let slot = c.svc.slot(i);
        let id = super::segment::next_id(me);
        // Relaxed (all): published by the Release CAS to queued below.
        slot.u64_at(S_ID).store(id, Ordering::Relaxed);
        slot.u64_at(S_DEADLINE)
            .store(self.deadline_ns, Ordering::Relaxed);
        slot.u32_at(S_LEN)
            .store(self.req.len() as u32, Ordering::Relaxed);
        let flags = if c.idempotent { IDEMPOTENT } else { 0 };
        slot.u32_at(S_FLAGS).store(flags, Ordering::Relaxed);
        slot.u32_at(S_TARGET).store(self.target, Ordering::Relaxed);
        slot.u32_at(S_WRITTEN).store(0, Ordering::Relaxed);
        slot.u32_at(S_READ).store(0, Ordering::Relaxed);
        slot.u32_at(S_CLIENT_SLEEPS).store(0, Ordering::Relaxed);
        slot.u32_at(S_SERVER_SLEEPS).store(0, Ordering::Relaxed);
        slot.u64_at(S_QUEUED_AT)
            .store(self.now_ns, Ordering::Relaxed);
        slot.store(SLOT_HEAD, self.req);
        let filling = Owner::word(Phase::Filling, me, 0, false);
        let queued = Owner::word(Phase::Queued, me, 0, false);
        // Release: pairs with the server's Acquire CAS that takes the slot: the request's
        // words and bytes above are visible to it.
        if let Err(found) = slot.u64_at(S_OWNER).compare_exchange(
            filling,
            queued,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            // Not ours any more (a peer wrote the word): the hold goes, and the slot is
            // left to the sweep.
            c.svc.inner.held.let_go(i, false);
            c.svc.inner.seg.intact()?;
            return Err(Error::Corrupt {
                what: "a service slot's owner word (changed while the client filled it)",
                found,
            });
        }
        c.svc.wake_servers();
        // Made before the last check: on an error its drop cancels the request and lets
        // the hold go.
        let pending = PendingResponse {
            svc: c.svc.clone(),
            slot: i,
            id,
            end: c.end,
            wait: c.wait,
            sent_ns: self.now_ns,
            deadline_ns: self.deadline_ns,
            read: 0,
            read_mirror: std::sync::OnceLock::new(),
            finished: false,
            retried: false,
            dead_server: 0,
            parked: Parked::default(),
        };
        c.svc.inner.seg.intact()?;
        Ok(pending)
    }
}

impl<M: SharedMemory> Step for SendStep<'_, M> {
    type Out = PendingResponse<M>;

    fn look(&mut self) -> Result<Option<PendingResponse<M>>, Error> {
        let c = &mut *self.client;
        c.end.check()?;
        c.svc.inner.seg.intact()?;
        let me = c.end.pid();
        let n = c.svc.inner.cfg.slots as usize;
        let filling = Owner::word(Phase::Filling, me, 0, false);
        for k in 0..n {
            let i = (c.next_slot + k) % n;
            let owner = c.svc.slot_u64::<S_OWNER>(i);
            // Relaxed: a look; the CAS below decides.
            if owner.load(Ordering::Relaxed) != Owner::FREE {
                continue;
            }
            // Recorded before the claim: a sweep that sees the claim sees the record.
            c.svc.inner.held.hold(i, false);
            // AcqRel: Acquire pairs with the Release CAS by which the last holder freed
            // it, after its last use of the slot; Release publishes the record above to a
            // sweep's Acquire load.
            if owner
                .compare_exchange(Owner::FREE, filling, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                c.next_slot = i; // the slot used last: its lines are warm
                return self.fill(i).map(Some);
            }
            c.svc.inner.held.let_go(i, false);
        }
        Ok(None)
    }
}

impl<M: SharedMemory> Sleeper for SendStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.client.svc.inner.seg.intact()?;
        if peer {
            // Every slot held: free those whose ends are all dead.
            self.client.svc.sweep();
        }
        Ok(())
    }
}

impl<M: SharedMemory> Client<M> {
    /// How this end's requests wait for their responses (default: 50 µs of spin, then
    /// sleep).
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    /// Whether the next requests are idempotent: if the server holding one dies before
    /// its first response, the request goes back to the queue for another server (once)
    /// instead of ending with `PeerDied`. Default: no.
    pub fn set_idempotent(&mut self, idempotent: bool) {
        self.idempotent = idempotent;
    }

    /// The service this end calls.
    pub fn service(&self) -> &Service<M> {
        &self.svc
    }

    fn check_len(&self, req: &[u8]) -> Result<(), Error> {
        let max = self.svc.inner.cfg.request_max;
        if req.len() as u64 > u64::from(max) {
            return Err(Error::MessageTooLarge {
                len: req.len() as u64,
                max: max.into(),
            });
        }
        Ok(())
    }

    fn send(
        &mut self,
        req: &[u8],
        timeout: Option<Duration>,
        wait: bool,
    ) -> Result<PendingResponse<M>, Error> {
        // One read of the shared clock: the deadline's and the queue's.
        let now_ns = crate::os::sys::monotonic_ns();
        let deadline_ns = timeout.map_or(0, |t| deadline_after(now_ns, t));
        let slot_wait = if wait {
            timeout.or(Some(Duration::MAX))
        } else {
            None
        };
        self.send_at(req, deadline_ns, now_ns, slot_wait, 0)
    }

    /// Sends with the deadline `deadline_ns` (shared clock; 0: none), waiting for a slot
    /// at most `slot_wait` (`None`: not at all; `Duration::MAX`: without limit).
    fn send_at(
        &mut self,
        req: &[u8],
        deadline_ns: u64,
        now_ns: u64,
        slot_wait: Option<Duration>,
        target: u32,
    ) -> Result<PendingResponse<M>, Error> {
        self.check_len(req)?;
        let mut step = SendStep {
            client: self,
            req,
            deadline_ns,
            now_ns,
            target,
        };
        match slot_wait {
            None => {
                let mut parked = Parked::default();
                wait::try_once(&mut step, &mut parked, Error::Full)
            }
            Some(Duration::MAX) => wait::block(&mut step, Pace::Poll, None),
            Some(w) => wait::block(&mut step, Pace::Poll, Some(w)),
        }
    }

    /// Sends `req` with an absolute `deadline` (`None`: none), waiting at most
    /// `slot_wait` for a free slot: for a caller that keeps one deadline across several
    /// waits (a binding that waits in slices, a bridge forwarding a remote request's
    /// remaining time).
    ///
    /// # Errors
    /// [`CallTimeoutError::Timeout`] when no slot came free within `slot_wait`; as
    /// [`send_request`](Self::send_request).
    pub fn send_request_until(
        &mut self,
        req: &[u8],
        deadline: Option<Instant>,
        slot_wait: Duration,
    ) -> Result<PendingResponse<M>, CallTimeoutError> {
        let now_ns = crate::os::sys::monotonic_ns();
        let deadline_ns = deadline.map_or(0, |d| {
            deadline_after(now_ns, d.saturating_duration_since(Instant::now()))
        });
        Ok(self.send_at(req, deadline_ns, now_ns, Some(slot_wait), 0)?)
    }

    /// Fan-out: sends a copy of `req` to every server process live now (one slot each,
    /// each copy taken only by the server it names), with a deadline `timeout` from now
    /// (`None`: none), and returns their pending responses (empty when no server is
    /// live). Not the default: [`send_request`](Self::send_request) goes to one server.
    /// A copy whose server dies before taking it ends with `PeerDied`.
    ///
    /// # Errors
    /// [`CallTimeoutError::Timeout`] when a slot did not come free by the deadline (the
    /// copies already sent are cancelled); as [`send_request`](Self::send_request).
    pub fn send_request_to_all(
        &mut self,
        req: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Vec<PendingResponse<M>>, CallTimeoutError> {
        let now_ns = crate::os::sys::monotonic_ns();
        let deadline_ns = timeout.map_or(0, |t| deadline_after(now_ns, t));
        let slot_wait = timeout.unwrap_or(Duration::MAX);
        let mut servers: Vec<u32> = (0..self.svc.inner.cfg.max_servers as usize)
            // Acquire: pairs with the Release of a server's claim.
            .map(|i| self.svc.server_line(i).load(Ordering::Acquire))
            .filter(|&p| p != 0 && proc::is_live(p))
            .collect();
        servers.sort_unstable();
        servers.dedup();
        let mut out = Vec::with_capacity(servers.len());
        for pid in servers {
            // Dropped on an error: every copy sent so far is cancelled.
            out.push(self.send_at(req, deadline_ns, now_ns, Some(slot_wait), pid)?);
        }
        Ok(out)
    }

    /// Sends `req` if a slot is free now, without waiting: the try form of
    /// [`send_request`](Self::send_request). The request has no deadline.
    ///
    /// # Errors
    /// [`TryCallError::Full`] when every slot is in use now,
    /// [`TryCallError::MessageTooLarge`]; `Failed` with [`Error::Truncated`],
    /// [`Error::Forked`], [`Error::Corrupt`].
    pub fn try_call(&mut self, req: &[u8]) -> Result<PendingResponse<M>, TryCallError> {
        Ok(self.send(req, None, false)?)
    }

    /// Sends `req`, waiting for a free slot, and returns its pending response. The
    /// request has no deadline (see [`send_request_timeout`](Self::send_request_timeout)).
    ///
    /// # Errors
    /// [`CallError::MessageTooLarge`]; `Failed` with [`Error::Truncated`],
    /// [`Error::Forked`], [`Error::Corrupt`].
    pub fn send_request(&mut self, req: &[u8]) -> Result<PendingResponse<M>, CallError> {
        Ok(self.send(req, None, true)?)
    }

    /// Sends `req` with a deadline `timeout` from now, which travels with it: a server
    /// sees the remaining time, a request still queued at its deadline is never handed to
    /// a server, and every wait for its responses ends at the deadline.
    ///
    /// # Errors
    /// [`CallTimeoutError::Timeout`] when no slot came free in time; as
    /// [`send_request`](Self::send_request).
    pub fn send_request_timeout(
        &mut self,
        req: &[u8],
        timeout: Duration,
    ) -> Result<PendingResponse<M>, CallTimeoutError> {
        Ok(self.send(req, Some(timeout), true)?)
    }

    /// Sends `req` and waits for its (first) response. Dropping the pending request
    /// afterwards cancels whatever of a stream is left.
    ///
    /// # Errors
    /// [`CallError::PeerDied`] when the server holding the request died,
    /// [`CallError::ServerError`] for an error response, [`CallError::Closed`] when the
    /// server dropped the request unanswered; as [`send_request`](Self::send_request).
    ///
    /// # Examples
    /// See [`Service::create`].
    pub fn call(&mut self, req: &[u8]) -> Result<Response, CallError> {
        let mut pending = self.send_request(req)?;
        pending.receive()
    }

    /// [`call`](Self::call) with a deadline `timeout` from now, carried by the request
    /// (see [`send_request_timeout`](Self::send_request_timeout)); the whole call ends by
    /// then.
    ///
    /// # Errors
    /// [`CallTimeoutError::Timeout`]; as [`call`](Self::call).
    pub fn call_timeout(
        &mut self,
        req: &[u8],
        timeout: Duration,
    ) -> Result<Response, CallTimeoutError> {
        let mut pending = self.send_request_timeout(req, timeout)?;
        pending.receive_timeout(timeout)
    }

    /// [`call`](Self::call), as a future: the slot wait polls, the response wait parks
    /// with the [`reactor`](crate::os::reactor).
    ///
    /// # Errors
    /// As [`call`](Self::call).
    ///
    /// # Cancel safety
    /// Dropping the future before a slot was free sends nothing; dropping it after
    /// cancels the request (the server sees
    /// [`is_cancelled`](crate::service::ActiveRequest::is_cancelled)).
    pub async fn call_async(&mut self, req: &[u8]) -> Result<Response, CallError> {
        let mut pending = self.send_request_async(req).await?;
        pending.receive_async().await
    }

    /// [`send_request`](Self::send_request), as a future.
    ///
    /// # Errors
    /// As [`send_request`](Self::send_request).
    ///
    /// # Cancel safety
    /// Nothing is sent until the future completes.
    pub async fn send_request_async(
        &mut self,
        req: &[u8],
    ) -> Result<PendingResponse<M>, CallError> {
        self.check_len(req)?;
        let mut parked = Parked::default();
        let mut step = SendStep {
            client: self,
            req,
            deadline_ns: 0,
            now_ns: crate::os::sys::monotonic_ns(),
            target: 0,
        };
        // The slot wait has no futex word: the step's park polls (every reactor tick).
        std::future::poll_fn(|cx| wait::poll_step(&mut step, &mut parked, Duration::ZERO, cx))
            .await
            .map_err(Into::into)
    }
}

impl<M: SharedMemory> Drop for Client<M> {
    fn drop(&mut self) {
        if self.end.forked() {
            return;
        }
        // Release: pairs with the Acquire of the next claim. Only our own pid.
        let _ = self.svc.client_line(self.line).compare_exchange(
            self.end.pid(),
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

impl<M: SharedMemory> std::fmt::Debug for Client<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("line", &self.line).finish()
    }
}

/// The deadline `t` after `now_ns` on the shared clock (never 0, which means none).
fn deadline_after(now_ns: u64, t: Duration) -> u64 {
    now_ns
        .saturating_add(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX))
        .max(1)
}
