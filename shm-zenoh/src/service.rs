//! Services across hosts: a local service's servers answer remote clients.
//!
//! A [`ServiceExporter`] (on the host where the servers run) declares a Zenoh queryable
//! on the service's key and calls the local service once per query, as one of its
//! clients; a [`ServiceImporter`] (on the clients' host) creates a local service with the
//! same limits and record types, takes its requests as one of its servers, and forwards
//! each as a Zenoh query whose timeout is the request's remaining deadline. Responses,
//! streams included, come back as replies. [The wire format](crate::wire) gives the bytes.
//!
//! What a local client of an import sees:
//! * the responses of a remote server, in order, the last one marked last;
//! * `ServerError { code }` with the remote server's code;
//! * `PeerDied { pid }` when the remote server (process `pid` on the exporter's host) died
//!   holding the request, as when a local server dies;
//! * `ServerError {` [`REMOTE_REFUSED`] `}` when the exporter refused it (too large for
//!   the remote service, no slot before the deadline), [`REMOTE_UNREACHABLE`] when a
//!   request without a deadline got no answer within
//!   [`ServiceImportOptions::no_deadline_timeout`];
//! * `Timeout` at its own deadline when the link, the exporter or the remote server went
//!   quiet (a cut link, a dead host): the importer holds the request until then, never
//!   past it, and never answers late;
//! * `Closed` when the remote server dropped the request unanswered.
//!
//! A request is sent once: the bridge never re-sends a request (the remote server may
//! have acted on it even when its answer was lost).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shm_core::service::{ActiveRequest, Service, ServiceOptions};
use shm_core::{CallTimeoutError, RecvTimeoutError, SharedMemory};
use zenoh::handlers::{FifoChannel, FifoChannelHandler};
use zenoh::query::{ConsolidationMode, Query, QueryTarget, Queryable};
use zenoh::sample::Locality;
use zenoh::Wait as _;

use crate::export::random_id;
use crate::wire::{
    decode_error, decode_query, decode_reply, encode_error, encode_query, encode_reply,
    RemoteError, ServiceDescriptor,
};
use crate::BridgeError;

/// The error code for a request without a deadline that got no answer in time (see
/// [`ServiceImportOptions::no_deadline_timeout`]).
pub const REMOTE_UNREACHABLE: u32 = 0xFFFF_FF02;
/// The error code for a request the exporter refused (too large for the remote service,
/// malformed, no slot free there before its deadline).
pub const REMOTE_REFUSED: u32 = 0xFFFF_FF03;

/// How often a waiting worker looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);
/// How long past a request's deadline an importer holds a request no answer came for.
const HOLD_PAST: Duration = Duration::from_millis(200);
/// How soon a request no exporter took is sent again.
const RETRY: Duration = Duration::from_millis(100);
/// Queries waiting for a worker at once, per exporter.
const QUERIES: usize = 256;

/// How a [`ServiceExporter`] serves remote calls (builder; ends in
/// [`ServiceExporter::start`]).
#[derive(Debug, Clone)]
pub struct ServiceExportOptions {
    key: String,
    workers: usize,
    slot_wait: Duration,
}

impl ServiceExportOptions {
    /// Serve the service on the Zenoh key `key` (no wildcards).
    pub fn new(key: impl Into<String>) -> Self {
        ServiceExportOptions {
            key: key.into(),
            workers: 4,
            slot_wait: Duration::from_secs(10),
        }
    }
    /// Calls forwarded at once (default 4, at least 1): each worker is one client of
    /// the local service, so this many of its client lines are taken.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }
    /// For a request without a deadline: how long to wait for a free slot of the local
    /// service before refusing it (default 10 s).
    pub fn slot_wait(mut self, wait: Duration) -> Self {
        self.slot_wait = wait;
        self
    }
}

/// What a service bridge end did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Calls forwarded.
    pub calls: u64,
    /// Responses carried (each of a stream).
    pub responses: u64,
    /// Calls that ended in an error reply or code.
    pub errors: u64,
    /// Calls that ended at their deadline without an answer.
    pub timeouts: u64,
    /// Malformed queries or replies dropped.
    pub rejected: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    responses: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    rejected: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ServiceStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServiceStats {
            calls: g(&self.calls),
            responses: g(&self.responses),
            errors: g(&self.errors),
            timeouts: g(&self.timeouts),
            rejected: g(&self.rejected),
        }
    }
    fn bump(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

/// Worker threads, a stop flag and counters: what both ends are made of.
struct Workers {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    fn new() -> Workers {
        Workers {
            stop: Arc::default(),
            counters: Arc::default(),
            threads: Vec::new(),
        }
    }
    fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), BridgeError> {
        let t = std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| BridgeError::Zenoh(format!("cannot start a worker: {e}")))?;
        self.threads.push(t);
        Ok(())
    }
    fn finish(&mut self) -> ServiceStats {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.counters.snapshot()
    }
}

/// A running service export: a queryable on the key, workers that call the local
/// service for each query, and a liveliness token announcing the service's limits and
/// record types. Stops (and undeclares everything) when dropped.
pub struct ServiceExporter {
    id: u64,
    workers: Workers,
}

impl ServiceExporter {
    /// Starts serving `service` (its servers answer) to remote clients on `opts`' key.
    ///
    /// # Errors
    /// [`BridgeError::Shm`] when the service has no free client line for the workers
    /// (`ClientsFull`) or cannot be written (`ReadOnly`); [`BridgeError::Zenoh`] for a
    /// bad key.
    pub fn start<M>(
        session: &zenoh::Session,
        service: Service<M>,
        opts: &ServiceExportOptions,
    ) -> Result<ServiceExporter, BridgeError>
    where
        M: SharedMemory + Send + Sync + 'static,
    {
        let key = crate::check_key(&opts.key)?;
        let z = |what: &str, e: zenoh::Error| BridgeError::Zenoh(format!("{what}: {e}"));
        let (request, response) = service.records();
        let desc = ServiceDescriptor {
            exporter: random_id(),
            max_request: service.max_request(),
            max_response: service.max_response(),
            request,
            response,
        };
        let mut clients = Vec::with_capacity(opts.workers);
        for _ in 0..opts.workers {
            clients.push(service.client()?);
        }
        let queryable: Arc<Queryable<FifoChannelHandler<Query>>> = Arc::new(
            session
                .declare_queryable(key.clone())
                .complete(true)
                .allowed_origin(Locality::Remote)
                .with(FifoChannel::new(QUERIES))
                .wait()
                .map_err(|e| z("declare the service queryable", e))?,
        );
        let token = Arc::new(
            session
                .liveliness()
                .declare_token(desc.token_key(&key))
                .wait()
                .map_err(|e| z("declare the liveliness token", e))?,
        );
        let mut workers = Workers::new();
        for mut client in clients {
            let (q, stop, counters, token) = (
                queryable.clone(),
                workers.stop.clone(),
                workers.counters.clone(),
                token.clone(),
            );
            let slot_wait = opts.slot_wait;
            workers.spawn("shm-zenoh-svc-export", move || {
                let _token = token; // undeclared when the last worker ends
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Some(query)) = q.handler().recv_timeout(POLL) else {
                        continue;
                    };
                    Counters::bump(&counters.calls);
                    serve_one(&mut client, &query, slot_wait, &stop, &counters);
                }
            })?;
        }
        Ok(ServiceExporter {
            id: desc.exporter,
            workers,
        })
    }

    /// The exporter's identity (in its token).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What it did so far.
    pub fn stats(&self) -> ServiceStats {
        self.workers.counters.snapshot()
    }

    /// Stops serving (calls in progress end at once: their remote clients time out) and
    /// returns what it did.
    pub fn stop(mut self) -> ServiceStats {
        self.workers.finish()
    }
}

impl Drop for ServiceExporter {
    fn drop(&mut self) {
        self.workers.finish();
    }
}

impl std::fmt::Debug for ServiceExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceExporter")
            .field("id", &self.id)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Calls the local service for one query and replies with what its server answers.
fn serve_one<M: SharedMemory>(
    client: &mut shm_core::service::Client<M>,
    query: &Query,
    slot_wait: Duration,
    stop: &AtomicBool,
    counters: &Counters,
) {
    let reply_err = |e: RemoteError| {
        Counters::bump(&counters.errors);
        let _ = query.reply_err(encode_error(e).to_vec()).wait();
    };
    let Some((timeout_ns, idempotent)) =
        query.attachment().and_then(|a| decode_query(&a.to_bytes()))
    else {
        Counters::bump(&counters.rejected);
        return reply_err(RemoteError::Refused);
    };
    let req = query.payload().map(|p| p.to_bytes()).unwrap_or_default();
    // (A peer's number: a deadline past what an `Instant` holds is a year away.)
    let deadline = (timeout_ns > 0).then(|| crate::after(Duration::from_nanos(timeout_ns)));
    let wait = deadline.map_or(slot_wait, |d| d.saturating_duration_since(Instant::now()));
    client.set_idempotent(idempotent);
    let mut pending = match client.send_request_until(&req, deadline, wait) {
        Ok(p) => p,
        Err(CallTimeoutError::Timeout { .. }) if deadline.is_some() => {
            // Its deadline passed waiting for a slot: the remote client's query ends
            // then too; no answer is sent late.
            Counters::bump(&counters.timeouts);
            return;
        }
        Err(_) => return reply_err(RemoteError::Refused),
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            // Answered (Closed), never left silent: an importer re-sends only a query no
            // exporter took.
            return reply_err(RemoteError::Closed);
        }
        // In slices: the stop flag is looked at while a server works.
        let slice = deadline.map_or(POLL, |d| {
            d.saturating_duration_since(Instant::now()).min(POLL)
        });
        match pending.receive_timeout(slice) {
            Ok(r) => {
                Counters::bump(&counters.responses);
                let sent = query
                    .reply(query.key_expr().clone(), r.data)
                    .attachment(encode_reply(r.last).to_vec())
                    .wait();
                if r.last || sent.is_err() {
                    return;
                }
            }
            Err(CallTimeoutError::Timeout { .. }) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    Counters::bump(&counters.timeouts);
                    return;
                }
            }
            Err(CallTimeoutError::ServerError { code }) => {
                return reply_err(RemoteError::Server(code))
            }
            Err(CallTimeoutError::PeerDied { pid }) => {
                return reply_err(RemoteError::PeerDied(pid))
            }
            Err(CallTimeoutError::Closed) => return reply_err(RemoteError::Closed),
            Err(_) => return reply_err(RemoteError::Refused),
        }
    }
}

/// What to import and how to lay the local service out (builder; ends in
/// [`ServiceImporter::start`]).
#[derive(Debug, Clone)]
pub struct ServiceImportOptions {
    key: String,
    wait_exporter: Duration,
    workers: usize,
    slots: u32,
    max_clients: u32,
    no_deadline_timeout: Duration,
    max_message: u32,
}

impl ServiceImportOptions {
    /// Import the service exported on the Zenoh key `key`.
    pub fn new(key: impl Into<String>) -> Self {
        ServiceImportOptions {
            key: key.into(),
            wait_exporter: Duration::from_secs(30),
            workers: 4,
            slots: 64,
            max_clients: 16,
            no_deadline_timeout: Duration::from_secs(30),
            max_message: 4 << 20,
        }
    }
    /// The largest request or response an exporter may announce (default 4 MiB): the
    /// local service is sized from the announcement, so a larger one is refused
    /// ([`BridgeError::TooLarge`]) rather than trusted.
    pub fn max_message(mut self, bytes: u32) -> Self {
        self.max_message = bytes;
        self
    }
    /// How long [`ServiceImporter::start`] waits for an exporter (default 30 s).
    pub fn wait_exporter(mut self, wait: Duration) -> Self {
        self.wait_exporter = wait;
        self
    }
    /// Requests forwarded at once (default 4, at least 1): each worker is one server of
    /// the local service; more requests queue there.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }
    /// The local service's slots (default 64).
    pub fn slots(mut self, n: u32) -> Self {
        self.slots = n;
        self
    }
    /// The local service's client lines (default 16).
    pub fn max_clients(mut self, n: u32) -> Self {
        self.max_clients = n;
        self
    }
    /// How long a request without a deadline waits for a remote answer before its
    /// client gets `ServerError {`[`REMOTE_UNREACHABLE`]`}` (default 30 s).
    pub fn no_deadline_timeout(mut self, t: Duration) -> Self {
        self.no_deadline_timeout = t;
        self
    }
}

/// A running service import: a local service (created by
/// [`start`](ServiceImporter::start) with the exporter's limits and record types) whose
/// requests are answered by the remote servers. Stops when dropped (requests in
/// progress are dropped: their clients get `Closed`).
pub struct ServiceImporter<M: SharedMemory> {
    service: Service<M>,
    descriptor: ServiceDescriptor,
    workers: Workers,
}

impl<M> ServiceImporter<M>
where
    M: SharedMemory + Send + Sync + 'static,
{
    /// Waits for an exporter on the key, creates the local service in the memory
    /// `make(len)` returns, and starts forwarding its requests.
    ///
    /// # Errors
    /// [`BridgeError::NoExporter`]; [`BridgeError::TooLarge`] for messages past
    /// [`ServiceImportOptions::max_message`]; [`BridgeError::Memory`] from `make`;
    /// [`BridgeError::Shm`] for a service the exporter describes that cannot be made
    /// here; [`BridgeError::Zenoh`] for a bad key.
    pub fn start<F>(
        session: &zenoh::Session,
        opts: &ServiceImportOptions,
        make: F,
    ) -> Result<ServiceImporter<M>, BridgeError>
    where
        F: FnOnce(u64) -> Result<M, Box<dyn std::error::Error + Send + Sync>>,
    {
        let key = crate::check_key(&opts.key)?;
        let descriptor = wait_service(session, &key, opts.wait_exporter)?;
        let announced = descriptor.max_request.max(descriptor.max_response);
        if announced > opts.max_message {
            return Err(BridgeError::TooLarge {
                announced: announced.into(),
                limit: opts.max_message.into(),
            });
        }
        let mut sopts = ServiceOptions::new()
            .max_request(descriptor.max_request)
            .max_response(descriptor.max_response)
            .slots(opts.slots)
            .max_clients(opts.max_clients)
            .max_servers(u32::try_from(opts.workers).unwrap_or(u32::MAX).max(1));
        if let Some(s) = descriptor.request {
            sopts = sopts.request_schema(s);
        }
        if let Some(s) = descriptor.response {
            sopts = sopts.response_schema(s);
        }
        let len = sopts.segment_len()?;
        let mem = make(len).map_err(|e| BridgeError::Memory(e.to_string()))?;
        let service = Service::create(mem, &sopts)?;
        let mut workers = Workers::new();
        for _ in 0..opts.workers {
            let mut server = service.server()?;
            let (session, key, stop, counters) = (
                session.clone(),
                key.clone(),
                workers.stop.clone(),
                workers.counters.clone(),
            );
            let no_deadline = opts.no_deadline_timeout;
            workers.spawn("shm-zenoh-svc-import", move || {
                while !stop.load(Ordering::Relaxed) {
                    match server.receive_timeout(POLL) {
                        Ok(req) => {
                            Counters::bump(&counters.calls);
                            forward(&session, &key, req, no_deadline, &stop, &counters);
                        }
                        Err(RecvTimeoutError::Timeout { .. }) => {}
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            })?;
        }
        Ok(ServiceImporter {
            service,
            descriptor,
            workers,
        })
    }
}

impl<M: SharedMemory> ServiceImporter<M> {
    /// The local service.
    pub fn service(&self) -> &Service<M> {
        &self.service
    }
    /// What the exporter announced.
    pub fn descriptor(&self) -> ServiceDescriptor {
        self.descriptor
    }
    /// What it did so far.
    pub fn stats(&self) -> ServiceStats {
        self.workers.counters.snapshot()
    }
    /// Stops forwarding and returns what it did.
    pub fn stop(mut self) -> ServiceStats {
        self.workers.finish()
    }
}

impl<M: SharedMemory> Drop for ServiceImporter<M> {
    fn drop(&mut self) {
        self.workers.finish();
    }
}

impl<M: SharedMemory> std::fmt::Debug for ServiceImporter<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceImporter")
            .field("descriptor", &self.descriptor)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The first service exporter's descriptor on `key`, waiting at most `wait`.
fn wait_service(
    session: &zenoh::Session,
    key: &str,
    wait: Duration,
) -> Result<ServiceDescriptor, BridgeError> {
    let deadline = crate::after(wait);
    loop {
        if let Some(found) = crate::list::service_tokens(session, key)?
            .into_iter()
            .next()
        {
            return Ok(found.descriptor);
        }
        if Instant::now() >= deadline {
            return Err(BridgeError::NoExporter {
                key: key.to_owned(),
                waited: wait,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How a forwarded query ended.
enum Outcome {
    /// Answered (responses, an error, or closed): the request is finished.
    Finished,
    /// Ended at once with no reply at all: no exporter took it (none reachable now), so
    /// sending it again cannot run it twice.
    NobodyTook,
    /// An exporter may have taken it, and no last answer came in time.
    NoAnswer,
}

/// Forwards one local request as a Zenoh query and answers it with the replies. While
/// no exporter is reachable (a link coming back, a session re-forming after a cut) the
/// query is sent again, until the request's deadline; once one may have taken it, never.
fn forward<M: SharedMemory>(
    session: &zenoh::Session,
    key: &str,
    mut req: ActiveRequest<M>,
    no_deadline: Duration,
    stop: &AtomicBool,
    counters: &Counters,
) {
    let deadline = req.deadline();
    let end = match req.remaining() {
        Some(left) if left.is_zero() => return, // already past: never answered late
        Some(left) => crate::after(left),
        None => crate::after(no_deadline),
    };
    let data = zenoh::bytes::ZBytes::from(req.take_data());
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || stop.load(Ordering::Relaxed) || req.is_cancelled() {
            break;
        }
        let timeout_ns = if deadline.is_some() {
            u64::try_from(left.as_nanos()).unwrap_or(u64::MAX).max(1)
        } else {
            0
        };
        let replies = match session
            .get(key)
            .payload(data.clone())
            .attachment(encode_query(timeout_ns, false).to_vec())
            .consolidation(ConsolidationMode::None)
            .target(QueryTarget::BestMatching)
            .allowed_destination(Locality::Remote)
            .timeout(left)
            .with(FifoChannel::new(16))
            .wait()
        {
            Ok(r) => r,
            Err(_) => break,
        };
        let mut slot = Some(req);
        let outcome = relay(&replies, &mut slot, end, stop, counters);
        let Some(back) = slot else { return };
        req = back;
        match outcome {
            Outcome::Finished => return,
            Outcome::NoAnswer => break,
            Outcome::NobodyTook => {
                std::thread::sleep(RETRY.min(end.saturating_duration_since(Instant::now())));
            }
        }
    }
    match deadline {
        // Hold the request to its deadline: its client gets `Timeout` then, as the
        // library promises, not an early `Closed`.
        Some(d) => {
            Counters::bump(&counters.timeouts);
            // (A little past it: a client that looks exactly at its deadline must find
            // the request still open, not dropped. A client that timed out cancels.)
            let until = d.checked_add(HOLD_PAST).unwrap_or(d);
            while !stop.load(Ordering::Relaxed) && !req.is_cancelled() {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(POLL));
            }
        }
        None => {
            Counters::bump(&counters.errors);
            let _ = req.respond_error(REMOTE_UNREACHABLE);
        }
    }
}

/// Answers `req` with the replies of one query, until its last answer, the query's end,
/// or `end`.
fn relay<M: SharedMemory>(
    replies: &FifoChannelHandler<zenoh::query::Reply>,
    slot: &mut Option<ActiveRequest<M>>,
    end: Instant,
    stop: &AtomicBool,
    counters: &Counters,
) -> Outcome {
    let mut any = false;
    let Some(req) = slot.as_mut() else {
        return Outcome::Finished;
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            return Outcome::Finished; // dropped: the client sees Closed
        }
        let reply = match replies.recv_timeout(POLL) {
            Ok(Some(r)) => r,
            Ok(None) if Instant::now() < end + POLL => continue,
            Ok(None) => return Outcome::NoAnswer,
            // Every reply is in.
            Err(_) if !any && Instant::now() < end => return Outcome::NobodyTook,
            Err(_) => return Outcome::NoAnswer,
        };
        any = true;
        match reply.result() {
            Ok(sample) => {
                let last = sample
                    .attachment()
                    .and_then(|a| decode_reply(&a.to_bytes()));
                let Some(last) = last else {
                    Counters::bump(&counters.rejected);
                    continue;
                };
                let data = sample.payload().to_bytes();
                Counters::bump(&counters.responses);
                if last {
                    if let Some(req) = slot.take() {
                        let _ = req.respond_last(&data);
                    }
                    return Outcome::Finished;
                }
                if req.respond(&data).is_err() {
                    return Outcome::Finished; // cancelled by the client, or past its deadline
                }
            }
            Err(e) => {
                let code = match decode_error(&e.payload().to_bytes()) {
                    Some(RemoteError::Server(code)) => Ok(code),
                    // The client sees the far server's death as it would a local one's.
                    Some(RemoteError::PeerDied(pid)) => Err(pid),
                    Some(RemoteError::Closed) => return Outcome::Finished, // the client sees Closed
                    Some(RemoteError::Refused) => Ok(REMOTE_REFUSED),
                    // Not ours: Zenoh's own (the query timed out) or a stranger's.
                    // Either way no answer came: as when the link goes quiet.
                    None => return Outcome::NoAnswer,
                };
                Counters::bump(&counters.errors);
                if let Some(req) = slot.take() {
                    let _ = match code {
                        Ok(code) => req.respond_error(code),
                        Err(pid) => req.respond_peer_died(pid),
                    };
                }
                return Outcome::Finished;
            }
        }
    }
}
