//! A service segment: create, attach, inspect, the lines its ends claim, and the sweep
//! that frees the slots of dead ends.

use std::sync::Arc;

use super::layout::*;
use super::options::{service_schema, ServiceOptions};
use crate::format::error::Error;
use crate::format::layout::{AttachOptions, Expect};
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::schema::{Kind, Schema};
use crate::format::view::{Blocks, View, Word32};
use crate::os::proc;
use crate::protocol::sync::{AtomicU32, AtomicU64, Ordering};

fn expect(schema: Schema, min_payload: u64, any_schema: bool) -> Expect {
    Expect {
        kind: Kind::Service,
        schema,
        min_payload,
        any_schema,
    }
}

fn corrupt_header(field: &'static str, found: u64, expected: &'static str) -> Error {
    Error::CorruptHeader {
        field,
        found,
        expected,
    }
}

/// A schema as the config holds it (64 bytes; zero for none).
fn schema_bytes(s: Option<Schema>) -> [u8; 64] {
    let mut b = [0u8; 64];
    if let Some(s) = s {
        let name = s.name().as_bytes();
        b[..name.len()].copy_from_slice(name);
        b[40..44].copy_from_slice(&(name.len() as u32).to_ne_bytes());
        b[44..48].copy_from_slice(&s.version().to_ne_bytes());
        b[48..56].copy_from_slice(&s.size().to_ne_bytes());
        b[56..64].copy_from_slice(&s.align().to_ne_bytes());
    }
    b
}

fn schema_from(b: &[u8]) -> Option<Schema> {
    let word = |r: std::ops::Range<usize>| u64::from_ne_bytes(b[r].try_into().expect("8 bytes"));
    let half = |r: std::ops::Range<usize>| u32::from_ne_bytes(b[r].try_into().expect("4 bytes"));
    let len = (half(40..44) as usize).min(40);
    if b.iter().all(|&x| x == 0) {
        return None;
    }
    Some(Schema::from_parts(
        &b[..len],
        half(44..48),
        word(48..56),
        word(56..64),
    ))
}

/// The slots this process holds of one service, as a client and as a server: a count
/// per slot and role (two threads may both record a hold before one of them wins the
/// claim). What tells a slot whose owner word names this process but that no end of it
/// holds (a word a peer wrote back from an old value) from a live request, so that the
/// sweep frees it. One per service and process, found by the service's nonce, so that
/// two attaches of one service in a process share it; after that, a hold is one atomic
/// add, no lock.
pub(super) struct Held {
    counts: Box<[std::sync::atomic::AtomicU32]>,
}

impl Held {
    /// The one `Held` of the service `nonce` (of `slots` slots) in this process.
    fn of(nonce: u64, slots: u32) -> Arc<Held> {
        type Table = Vec<(u64, u32, std::sync::Weak<Held>)>;
        static TABLE: std::sync::Mutex<Table> = std::sync::Mutex::new(Vec::new());
        // A panic while the lock is held cannot leave the table half-changed.
        let mut t = TABLE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        t.retain(|(_, _, w)| w.strong_count() > 0);
        if let Some(h) = t
            .iter()
            .find(|(n, s, _)| *n == nonce && *s == slots)
            .and_then(|(_, _, w)| w.upgrade())
        {
            return h;
        }
        let h = Arc::new(Held {
            counts: (0..2 * slots as usize)
                .map(|_| std::sync::atomic::AtomicU32::new(0))
                .collect(),
        });
        t.push((nonce, slots, Arc::downgrade(&h)));
        h
    }

    fn count(&self, slot: usize, server: bool) -> &std::sync::atomic::AtomicU32 {
        &self.counts[2 * slot + usize::from(server)]
    }

    /// Records that an end of this process holds `slot` (before its claim, whose Release
    /// publishes it to a sweep's Acquire load of the owner word).
    pub(super) fn hold(&self, slot: usize, server: bool) {
        // Relaxed: published by the claim's Release compare-and-swap that follows.
        self.count(slot, server)
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes back one [`hold`](Self::hold).
    pub(super) fn let_go(&self, slot: usize, server: bool) {
        // Relaxed: a sweep that still sees the hold leaves the slot alone (harmless).
        self.count(slot, server)
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether an end of this process holds `slot` in that role.
    pub(super) fn holds(&self, slot: usize, server: bool) -> bool {
        // Relaxed: ordered after the sweep's Acquire load of the owner word.
        self.count(slot, server)
            .load(std::sync::atomic::Ordering::Relaxed)
            != 0
    }
}

/// The ids this process gives its requests: its pid in bits 40 to 63, a count below, so
/// that an id names one request of one client among every process's.
pub(super) fn next_id(pid: u32) -> u64 {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    // Relaxed: only uniqueness matters.
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (u64::from(pid) << 40) | (n & ((1 << 40) - 1))
}

/// The layout as attach read (and checked) it: sizes and the offsets they give.
#[derive(Debug, Clone, Copy)]
pub(super) struct Config {
    pub(super) request_max: u32,
    pub(super) response_max: u32,
    pub(super) slots: u32,
    pub(super) depth: u32,
    pub(super) max_clients: u32,
    pub(super) max_servers: u32,
    pub(super) stride: usize,
    pub(super) slots_at: usize,
    pub(super) entries_at: usize,
    pub(super) entry_stride: usize,
    pub(super) server_lines: usize,
}

impl Config {
    fn of(o: &ServiceOptions) -> Config {
        Config {
            request_max: o.request_max,
            response_max: o.response_max,
            slots: o.slots,
            depth: o.response_depth,
            max_clients: o.max_clients,
            max_servers: o.max_servers,
            stride: slot_stride(o.request_max, o.response_max, o.response_depth) as usize,
            slots_at: slots_at(o.max_clients, o.max_servers) as usize,
            entries_at: entries_at(o.request_max) as usize,
            entry_stride: entry_stride(o.response_max) as usize,
            server_lines: server_lines(o.max_clients) as usize,
        }
    }
}

/// One request slot, as [`Service::state`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// The slot's index.
    pub slot: u32,
    /// "filling", "queued", "taken", "done", "cancelled" or "expired".
    pub phase: &'static str,
    /// The client's pid.
    pub client_pid: u32,
    /// The server's pid (0 while queued).
    pub server_pid: u32,
    /// How long ago the request was queued (0 if the word says the future).
    pub age: std::time::Duration,
}

/// What [`Service::state`] reads: the service's shared state, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    /// The largest request.
    pub request_max: u32,
    /// The largest response.
    pub response_max: u32,
    /// Request slots.
    pub slots: u32,
    /// Responses a request's stream holds.
    pub response_depth: u32,
    /// The pids holding client lines.
    pub client_pids: Vec<u32>,
    /// The pids holding server lines.
    pub server_pids: Vec<u32>,
    /// Every slot in use.
    pub requests: Vec<SlotState>,
    /// Requests the servers finished so far (a count that wraps).
    pub served: u64,
}

impl ServiceState {
    /// Requests each server holds now, per server pid.
    pub fn in_flight(&self, server: u32) -> usize {
        self.requests
            .iter()
            .filter(|r| r.server_pid == server && r.phase == "taken")
            .count()
    }

    /// The oldest request still waiting for a server, if any.
    pub fn oldest_queued(&self) -> Option<std::time::Duration> {
        self.requests
            .iter()
            .filter(|r| r.phase == "queued")
            .map(|r| r.age)
            .max()
    }
}

/// A request/response service: clients in any processes send requests, each taken by
/// exactly one server, which answers with one response or a stream of them (see the
/// [module docs](crate::service)).
pub struct Service<M: SharedMemory> {
    /// Everything, shared: every request and pending response carries a clone of its
    /// service and is moved through a call's results, so a clone is one pointer (its
    /// parts in place made those moves about 300 bytes each).
    pub(super) inner: Arc<ServiceInner<M>>,
}

/// A [`Service`]'s parts.
pub(crate) struct ServiceInner<M: SharedMemory> {
    pub(super) seg: Arc<RawSegment<M>>,
    pub(super) cfg: Config,
    pub(super) view: View,
    /// Every slot's head ([`SLOT_HEAD`] bytes), checked once: its words are reached with
    /// no check but the slot index's.
    pub(super) heads: Blocks<SLOT_HEAD>,
    pub(super) req_seq: Word32,
    pub(super) server_sleepers: Word32,
    /// The record types declared (request, response).
    pub(super) records: (Option<Schema>, Option<Schema>),
    /// The slots this process holds (found in the registry by the creator's random
    /// number, the service's nonce).
    pub(super) held: Arc<Held>,
}

impl<M: SharedMemory> Clone for Service<M> {
    fn clone(&self) -> Self {
        Service {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: SharedMemory> Service<M> {
    /// Lays a service into fresh, zeroed memory.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for options out of range, [`Error::ReadOnly`],
    /// [`Error::TooSmall`] (see [`ServiceOptions::segment_len`]),
    /// [`Error::AlreadyInitialized`].
    ///
    /// # Examples
    /// ```
    /// # use shm_core::service::{Service, ServiceOptions};
    /// # use shm_core::HeapMemory;
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let opts = ServiceOptions::new().max_request(64).max_response(64);
    /// let mem = HeapMemory::new(opts.segment_len()? as usize);
    /// let view = mem.share(); // stands for another process's mapping
    /// let svc = Service::create(mem, &opts)?;
    /// let server = std::thread::spawn(move || -> Result<(), shm_core::Error> {
    ///     let mut server = Service::attach(view)?.server()?;
    ///     let req = server.receive()?;
    ///     let answer = [req.data(), b"!"].concat();
    ///     req.respond_last(&answer)?;
    ///     Ok(())
    /// });
    /// let mut client = svc.client()?;
    /// assert_eq!(client.call(b"ping")?.data, b"ping!");
    /// server.join().unwrap()?;
    /// # Ok(()) }
    /// ```
    pub fn create(mem: M, opts: &ServiceOptions) -> Result<Self, Error> {
        opts.check()?;
        let request_schema = match opts.request_schema {
            Some(s) => Some(s?),
            None => None,
        };
        let response_schema = match opts.response_schema {
            Some(s) => Some(s?),
            None => None,
        };
        let need = opts.payload_len();
        let schema = request_schema.unwrap_or_else(service_schema);
        // Random enough to tell services apart within a process: the clock, the pid and
        // an address, mixed.
        let nonce = crate::format::words::seal(
            &[
                crate::os::sys::monotonic_ns().to_ne_bytes(),
                u64::from(proc::current_pid()).to_ne_bytes(),
                (&need as *const u64 as u64).to_ne_bytes(),
            ]
            .concat(),
        );
        let seg = RawSegment::create(mem, expect(schema, need, false), |raw| {
            let mut head = [0u8; CONFIG];
            for (i, v) in [
                opts.request_max,
                opts.response_max,
                opts.slots,
                opts.response_depth,
                opts.max_clients,
                opts.max_servers,
            ]
            .into_iter()
            .enumerate()
            {
                head[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
            }
            head[NONCE..NONCE + 8].copy_from_slice(&nonce.to_ne_bytes());
            head[RESPONSE_SCHEMA..RESPONSE_SCHEMA + 64]
                .copy_from_slice(&schema_bytes(response_schema));
            let seal = crate::format::words::seal(&head[..CONFIG_WORDS]);
            head[SEAL..SEAL + 8].copy_from_slice(&seal.to_ne_bytes());
            // The payload holds `need` bytes (checked by create); not published yet.
            raw.view().store(0, &head);
        })?;
        Ok(Self::with(
            Arc::new(seg),
            Config::of(opts),
            (request_schema, response_schema),
            nonce,
        ))
    }

    fn with(
        seg: Arc<RawSegment<M>>,
        cfg: Config,
        records: (Option<Schema>, Option<Schema>),
        nonce: u64,
    ) -> Self {
        let view = seg.view();
        Service {
            inner: Arc::new(ServiceInner {
                heads: view
                    .blocks(cfg.slots_at, cfg.stride, cfg.slots as usize)
                    .expect("attach checked that every slot fits"),
                req_seq: view.word32(REQ_SEQ),
                server_sleepers: view.word32(SERVER_SLEEPERS),
                seg,
                cfg,
                view,
                records,
                held: Held::of(nonce, cfg.slots),
            }),
        }
    }

    /// Attaches to a service segment, validating the header and the service's layout.
    /// Requests and responses are bytes here, whatever records the service declares.
    ///
    /// # Errors
    /// What header validation finds ([`Error::BadMagic`], [`Error::KindMismatch`],
    /// [`Error::CorruptHeader`], [`Error::NotReady`], [`Error::PayloadTooSmall`], ...).
    pub fn attach(mem: M) -> Result<Self, Error> {
        Self::attach_with(mem, &AttachOptions::default())
    }

    /// [`attach`](Self::attach) with explicit timeouts.
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub fn attach_with(mem: M, opts: &AttachOptions) -> Result<Self, Error> {
        Self::attach_expecting(mem, opts, None)
    }

    /// Attaches to a service whose requests are records of type `Req` and responses of
    /// type `Resp` (made with [`ServiceOptions::record`] and
    /// [`ServiceOptions::response_record`]): both schemas are checked.
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] when either differs; as [`attach`](Self::attach).
    pub fn attach_records<Req, Resp>(mem: M) -> Result<Self, Error>
    where
        Req: crate::format::record::Record,
        Resp: crate::format::record::Record,
    {
        let want = (Schema::of::<Req>()?, Schema::of::<Resp>()?);
        Self::attach_expecting(mem, &AttachOptions::default(), Some(want))
    }

    fn attach_expecting(
        mem: M,
        opts: &AttachOptions,
        want: Option<(Schema, Schema)>,
    ) -> Result<Self, Error> {
        let schema = want.map_or_else(service_schema, |w| w.0);
        let seg = RawSegment::attach(mem, expect(schema, CONFIG as u64, want.is_none()), opts)?;
        let mut head = [0u8; CONFIG];
        seg.read_at(0, &mut head)?;
        let seal = u64::from_ne_bytes(head[SEAL..SEAL + 8].try_into().expect("8 bytes"));
        if seal != crate::format::words::seal(&head[..CONFIG_WORDS]) {
            return Err(corrupt_header(
                "service config seal",
                seal,
                "the hash of the config words (one was changed after create)",
            ));
        }
        let w = |i: usize| u32::from_ne_bytes(head[4 * i..4 * i + 4].try_into().expect("4"));
        let o = ServiceOptions {
            request_max: w(0),
            response_max: w(1),
            slots: w(2),
            response_depth: w(3),
            max_clients: w(4),
            max_servers: w(5),
            request_schema: None,
            response_schema: None,
        };
        if o.check().is_err() {
            return Err(corrupt_header(
                "service config",
                u64::from(o.slots),
                "sizes in their ranges (see ServiceOptions)",
            ));
        }
        let response_schema = schema_from(&head[RESPONSE_SCHEMA..RESPONSE_SCHEMA + 64]);
        let h = seg.header();
        let len = (h.schema_name_len as usize).min(h.schema_name.len());
        let header_schema = Schema::from_parts(
            &h.schema_name[..len],
            h.schema_version,
            h.schema_size,
            h.schema_align,
        );
        let request_schema = Some(header_schema).filter(|s| *s != service_schema());
        if let Some((_, resp)) = want {
            let found = response_schema.unwrap_or_else(service_schema);
            if found != resp {
                return Err(Error::SchemaMismatch {
                    found,
                    expected: resp,
                });
            }
        }
        let need = o.payload_len();
        if need > seg.payload_len() as u64 {
            return Err(Error::PayloadTooSmall {
                kind: Kind::Service,
                needed: need,
                found: seg.payload_len() as u64,
            });
        }
        let nonce = u64::from_ne_bytes(head[NONCE..NONCE + 8].try_into().expect("8 bytes"));
        Ok(Self::with(
            Arc::new(seg),
            Config::of(&o),
            (request_schema, response_schema),
            nonce,
        ))
    }

    /// The largest request, in bytes.
    pub fn max_request(&self) -> u32 {
        self.inner.cfg.request_max
    }

    /// The largest response, in bytes.
    pub fn max_response(&self) -> u32 {
        self.inner.cfg.response_max
    }

    /// How many requests can be in flight at once.
    pub fn slots(&self) -> u32 {
        self.inner.cfg.slots
    }

    /// How many responses of a stream the client may leave unread.
    pub fn response_depth(&self) -> u32 {
        self.inner.cfg.depth
    }

    /// How many clients may hold ends at once.
    pub fn max_clients(&self) -> u32 {
        self.inner.cfg.max_clients
    }

    /// How many servers may hold ends at once.
    pub fn max_servers(&self) -> u32 {
        self.inner.cfg.max_servers
    }

    /// The record types the service declares (request, response), if any.
    pub fn records(&self) -> (Option<Schema>, Option<Schema>) {
        self.inner.records
    }

    /// The validated segment underneath.
    pub fn raw(&self) -> &RawSegment<M> {
        &self.inner.seg
    }

    /// Client line `i` (below `max_clients`).
    pub(super) fn client_line(&self, i: usize) -> &AtomicU32 {
        self.inner.view.u32_at(CLIENT_LINES + 4 * i)
    }

    /// Server line `i` (below `max_servers`).
    pub(super) fn server_line(&self, i: usize) -> &AtomicU32 {
        self.inner.view.u32_at(self.inner.cfg.server_lines + 4 * i)
    }

    /// Slot `i` (below `slots`: attach proved they all fit).
    pub(super) fn slot(&self, i: usize) -> View {
        self.inner
            .view
            .sub(
                self.inner.cfg.slots_at + i * self.inner.cfg.stride,
                self.inner.cfg.stride,
            )
            .expect("attach checked that every slot fits")
    }

    /// The 4-byte word at `OFF` of slot `i`'s head (for parks too, which borrow from
    /// the service).
    ///
    /// # Panics
    /// If `i` is not below the slot count (indices are ours, never a peer's).
    #[inline(always)]
    pub(super) fn slot_u32<const OFF: usize>(&self, i: usize) -> &AtomicU32 {
        self.inner
            .heads
            .u32_at::<OFF>(i)
            .expect("a slot index below the slot count")
    }

    /// The 8-byte word at `OFF` of slot `i`'s head.
    ///
    /// # Panics
    /// As [`slot_u32`](Self::slot_u32).
    #[inline(always)]
    pub(super) fn slot_u64<const OFF: usize>(&self, i: usize) -> &AtomicU64 {
        self.inner
            .heads
            .u64_at::<OFF>(i)
            .expect("a slot index below the slot count")
    }

    /// Takes a line among `lines` for `me`: its index, or `None` when every one is held.
    pub(super) fn claim_line<'a>(
        &'a self,
        count: u32,
        line: impl Fn(&'a Self, usize) -> &'a AtomicU32,
    ) -> Option<usize> {
        let me = proc::current_pid();
        (0..count as usize).find(|&i| proc::claim_role(line(self, i), me, CLAIM_TRIES).is_ok())
    }

    /// Frees every slot whose client and server are both gone (dead, 0 or impossible
    /// pids), every cancelled slot whose server is gone, and every slot whose owner word no honest end writes: what a client does
    /// when it finds no free slot, and servers at their peer checks, so calling it is
    /// never needed; an operator's tool may. Liveness is asked once per pid per sweep.
    /// Returns how many slots it freed (none on a read-only mapping, which it never
    /// writes).
    pub fn sweep(&self) -> usize {
        if !self.inner.seg.is_writable() {
            return 0; // a read-only mapping frees nothing (and must not write)
        }
        let me = proc::current_pid();
        let mut seen: Vec<(u32, bool)> = Vec::new();
        let mut live = |pid: u32| -> bool {
            if pid == 0 {
                return false;
            }
            if let Some(&(_, l)) = seen.iter().find(|(p, _)| *p == pid) {
                return l;
            }
            let l = proc::is_live(pid);
            seen.push((pid, l));
            l
        };
        let mut freed = 0;
        for i in 0..self.inner.cfg.slots as usize {
            let owner = self.slot_u64::<S_OWNER>(i);
            // Acquire: pairs with the Release CAS of whoever moved the slot last.
            let w = owner.load(Ordering::Acquire);
            if w == Owner::FREE {
                continue;
            }
            let o = Owner::decode(w);
            // An end of this process named in the word but holding nothing there: a word
            // written back by a peer, as good as dead. Asked after the load: an end
            // records its hold before its claim, whose Release our Acquire load saw.
            let ours = |server: bool| self.inner.held.holds(i, server);
            let client_on = o.client != 0
                && (if o.client == me {
                    ours(false)
                } else {
                    live(o.client)
                });
            let server_on = o.server != 0
                && (if o.server == me {
                    ours(true)
                } else {
                    live(o.server)
                });
            let next = if !Owner::honest(w) {
                Owner::FREE
            } else if o.is(Phase::Cancelled) {
                // Its client has let go: only its server holds it.
                if server_on {
                    continue;
                }
                Owner::FREE
            } else if !client_on && !server_on {
                Owner::FREE
            } else if o.is(Phase::Taken) && o.server == me && !server_on {
                // Our server holds nothing here: finish it as an unanswered request, for
                // a live client (which cannot tell, since our process lives).
                Owner::word(Phase::Done, o.client, 0, o.retried)
            } else {
                continue;
            };
            // AcqRel: as a client's free; fails harmlessly if an end moved it.
            if owner
                .compare_exchange(w, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                freed += 1;
                if next != Owner::FREE {
                    self.slot_u32::<S_CLIENT_SEQ>(i)
                        .fetch_add(1, Ordering::Release);
                    crate::os::futex::wake(self.slot_u32::<S_CLIENT_SEQ>(i));
                }
            }
        }
        freed
    }

    /// Whether any slot is queued now for server process `me` (a look: a fan-out copy
    /// for another server does not count).
    pub(super) fn any_queued(&self, me: u32) -> bool {
        (0..self.inner.cfg.slots as usize).any(|i| {
            // Acquire: pairs with the client's Release CAS to queued.
            let o = Owner::decode(self.slot_u64::<S_OWNER>(i).load(Ordering::Acquire));
            // Relaxed: ordered after the Acquire load above.
            let target = self.slot_u32::<S_TARGET>(i).load(Ordering::Relaxed);
            o.is(Phase::Queued) && o.server == 0 && (target == 0 || target == me)
        })
    }

    /// Wakes the servers' sleeping waits (when one says it sleeps): bump `req_seq`, then
    /// the futex call.
    pub(super) fn wake_servers(&self) {
        // SeqCst fence: orders the slot's queued store before the sleepers load, against
        // a server's sleepers increment → fence → slot scan in its `prepare`: either it
        // sees the request, or we see it sleep.
        crate::protocol::sync::fence(Ordering::SeqCst);
        if self.inner.server_sleepers.get().load(Ordering::Relaxed) != 0 {
            // Release: pairs with the Acquire load of `req_seq` before a server's sleep.
            self.inner.req_seq.get().fetch_add(1, Ordering::Release);
            crate::os::futex::wake(self.inner.req_seq.get());
        }
    }

    /// Reads the service's shared state, for inspection. A word no honest end writes is
    /// [`Error::Corrupt`].
    ///
    /// # Errors
    /// [`Error::Corrupt`], [`Error::Truncated`].
    pub fn state(&self) -> Result<ServiceState, Error> {
        // Relaxed: a snapshot for display.
        let client_pids: Vec<u32> = (0..self.inner.cfg.max_clients as usize)
            .map(|i| self.client_line(i).load(Ordering::Relaxed))
            .filter(|&p| p != 0)
            .collect();
        // Relaxed: as above.
        let server_pids: Vec<u32> = (0..self.inner.cfg.max_servers as usize)
            .map(|i| self.server_line(i).load(Ordering::Relaxed))
            .filter(|&p| p != 0)
            .collect();
        let now = crate::os::sys::monotonic_ns();
        let mut requests = Vec::new();
        for i in 0..self.inner.cfg.slots as usize {
            let slot = self.slot(i);
            // Relaxed: a snapshot for display.
            let w = slot.u64_at(S_OWNER).load(Ordering::Relaxed);
            if w == Owner::FREE {
                continue;
            }
            if !Owner::honest(w) {
                self.inner.seg.intact()?;
                return Err(Error::Corrupt {
                    what: "a service slot's owner word",
                    found: w,
                });
            }
            let o = Owner::decode(w);
            let queued_at = slot.u64_at(S_QUEUED_AT).load(Ordering::Relaxed);
            requests.push(SlotState {
                slot: i as u32,
                phase: match o.phase {
                    1 => "filling",
                    2 => "queued",
                    3 => "taken",
                    4 => "done",
                    5 => "cancelled",
                    _ => "expired",
                },
                client_pid: o.client,
                server_pid: o.server,
                age: std::time::Duration::from_nanos(now.saturating_sub(queued_at)),
            });
        }
        let sleepers = self.inner.server_sleepers.get().load(Ordering::Relaxed);
        let bad_pid = client_pids
            .iter()
            .chain(&server_pids)
            .copied()
            .find(|&p| p > proc::PID_MAX);
        for (what, value, honest) in [
            (
                "the service's server sleepers",
                sleepers,
                sleepers <= MAX_ENDS,
            ),
            ("an end line's pid", bad_pid.unwrap_or(0), bad_pid.is_none()),
        ] {
            if !honest {
                self.inner.seg.intact()?;
                return Err(Error::Corrupt {
                    what,
                    found: value.into(),
                });
            }
        }
        self.inner.seg.intact()?;
        Ok(ServiceState {
            request_max: self.inner.cfg.request_max,
            response_max: self.inner.cfg.response_max,
            slots: self.inner.cfg.slots,
            response_depth: self.inner.cfg.depth,
            client_pids,
            server_pids,
            requests,
            // Relaxed: a snapshot for display.
            served: self.inner.view.u64_at(SERVED).load(Ordering::Relaxed),
        })
    }
}

impl<M: SharedMemory> std::fmt::Debug for Service<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("max_request", &self.inner.cfg.request_max)
            .field("max_response", &self.inner.cfg.response_max)
            .field("slots", &self.inner.cfg.slots)
            .field("raw", &*self.inner.seg)
            .finish()
    }
}
