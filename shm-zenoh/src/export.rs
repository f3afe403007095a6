//! The exporter: a subscriber of a local broadcast that puts every message on a Zenoh key.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::collections::VecDeque;

use shm_core::{Broadcast, BroadcastMode, Error, SharedMemory, Subscriber, TryRecvError};
use zenoh::bytes::ZBytes;
use zenoh::handlers::{FifoChannel, FifoChannelHandler};
use zenoh::qos::CongestionControl;
use zenoh::query::{Query, Queryable};
use zenoh::sample::Locality;
use zenoh::Wait as _;

use crate::wire::{cache_key, fingerprint, Descriptor, Kind, SampleHeader, FLAG_END};
use crate::BridgeError;

/// The default recovery cache of a reliable export: the last 8,192 messages...
pub const CACHE_MESSAGES: usize = 8192;
/// ...and at most 64 MiB of their payloads (whichever bound is reached first).
pub const CACHE_BYTES: u64 = 64 << 20;
/// Messages between two looks at the recovery queries while a stream flows.
const QUERY_EVERY: u32 = 64;
/// Recovery queries waiting for the exporter at once (more are refused by Zenoh's
/// queue and retried by their importer on its next gap).
const QUERIES: usize = 16;

/// How often a waiting exporter looks at its stop flag.
pub(crate) const POLL: Duration = Duration::from_millis(20);
/// After the end of the stream, how long the export waits at most for every importer to
/// receive it and leave before it lets the session go (see [`Exporter::join`]).
pub const LINGER: Duration = Duration::from_secs(5);
/// After the end of the stream, how long a reliable export with a cache waits at most for
/// an importer that followed it and is away (a link cut) to come back and recover the end.
pub const LINGER_AWAY: Duration = Duration::from_secs(30);

/// How an exporter puts messages on the network (builder; ends in
/// [`Exporter::start`]).
#[derive(Debug, Clone)]
pub struct ExportOptions {
    key: String,
    express: bool,
    wait: shm_core::WaitMode,
    /// `None`: the default ([`CACHE_MESSAGES`] for a broadcast; a channel's cache
    /// counts bytes only, see [`export_channel`](crate::export_channel)).
    cache_messages: Option<usize>,
    cache_bytes: u64,
}

impl ExportOptions {
    /// Export on the Zenoh key expression `key` (no wildcards: `shm/cam`).
    pub fn new(key: impl Into<String>) -> Self {
        ExportOptions {
            key: key.into(),
            express: false,
            wait: shm_core::WaitMode::Block {
                spin: EXPORTER_SPIN,
            },
            cache_messages: None,
            cache_bytes: CACHE_BYTES,
        }
    }
    /// The recovery cache's byte bound alone (the message bound stays the default).
    pub fn cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }
    pub(crate) fn wait_mode(&self) -> shm_core::WaitMode {
        self.wait
    }
    /// The recovery cache of a reliable export: the last `messages` messages sent, at
    /// most `bytes` of payload (default [`CACHE_MESSAGES`] and [`CACHE_BYTES`]: at
    /// 1,000 messages a second, eight seconds of stream). An importer that lost messages
    /// (a link cut past the Zenoh lease, a reconnect) asks for them with a Zenoh query
    /// and gets, in order, whatever is still cached; only what fell out of the cache
    /// reaches its subscribers as `Lagged`. `cache(0, 0)` turns it off. Lossy exports
    /// keep no cache (their gaps are the point).
    ///
    /// The exporter's memory is bounded by `bytes` plus about 64 bytes per message:
    /// the cached payloads are the very buffers handed to Zenoh, shared, not copied.
    pub fn cache(mut self, messages: usize, bytes: u64) -> Self {
        self.cache_messages = Some(messages);
        self.cache_bytes = bytes;
        self
    }
    /// Zenoh's `express`: send each message at once instead of batching (lower latency,
    /// lower throughput for small messages).
    pub fn express(mut self, on: bool) -> Self {
        self.express = on;
        self
    }
    /// How the exporter waits for the local broadcast's next message. The default
    /// spins [`EXPORTER_SPIN`] and then sleeps, leaving the CPU to Zenoh; a
    /// latency-critical export on a machine with cores to spare may spin longer
    /// (`WaitMode::Spin` holds a core), saving one wake-up per message.
    pub fn wait(mut self, mode: shm_core::WaitMode) -> Self {
        self.wait = mode;
        self
    }
}

/// What an exporter did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Messages put on the network.
    pub sent: u64,
    /// Payload bytes put on the network.
    pub bytes: u64,
    /// Messages the local lossy broadcast overwrote before the exporter read them.
    pub lagged: u64,
    /// Times the local reliable publisher evicted the exporter (it rejoined).
    pub evicted: u64,
    /// Recovery queries answered (an importer asking for what it lost).
    pub queries: u64,
    /// Messages sent again from the cache in answer to them.
    pub resent: u64,
    /// Puts that failed (a link closing under them); cached all the same.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    bytes: AtomicU64,
    lagged: AtomicU64,
    evicted: AtomicU64,
    queries: AtomicU64,
    resent: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ExportStats {
        ExportStats {
            sent: self.sent.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            lagged: self.lagged.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            queries: self.queries.load(Ordering::Relaxed),
            resent: self.resent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// A running export: a thread that subscribes to a local broadcast and puts each message
/// on a Zenoh key, with the [wire format](crate::wire) header, while a liveliness token
/// announces it.
///
/// Reliable broadcasts are put with `CongestionControl::Block`: when the network is
/// slower than the publisher, the put waits, the exporter stops reading, and the local
/// publisher is held back by the reliable broadcast's own rules (a stuck exporter is
/// evicted like any subscriber after the broadcast's eviction timeout; it rejoins and
/// the importers report the gap exactly). Lossy broadcasts are put with
/// `CongestionControl::Drop`: the publisher never waits, and what is dropped shows as
/// gaps in the message numbers, which importers count exactly. Either way the exporter
/// holds one message at a time (plus what Zenoh queues: its transmission queue is
/// bounded), so its memory stays bounded however fast the publisher goes.
///
/// A [relayed](shm_core::BroadcastOptions::relayed) broadcast (an import) is refused:
/// an import is never exported again, so bridges make no loops. The Zenoh publisher also
/// sends to remote sessions only (`Locality::Remote`).
pub struct Exporter {
    matched: Arc<AtomicBool>,
    id: u64,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<Result<(), BridgeError>>>,
}

/// A random 64-bit identity (never 0).
pub(crate) fn random_id() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: `b` is a valid, writable 8-byte buffer for the call's duration.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    let mut id = u64::from_ne_bytes(b);
    if n != 8 {
        // No entropy call: time and pid are unique enough for an identity.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        id = t ^ (u64::from(std::process::id()) << 40);
    }
    id.max(1)
}

impl Exporter {
    /// Starts exporting `broadcast` on `opts`' key through `session`.
    ///
    /// Joins the broadcast at once (as a writable subscriber for a reliable broadcast;
    /// a lossy one may be read-only), so every message published after `start` returns
    /// is exported.
    ///
    /// # Errors
    /// [`BridgeError::Relayed`] for an import, [`BridgeError::Shm`] when the broadcast
    /// cannot be joined (`ReadOnly` for a reliable broadcast mapped read-only,
    /// `SubscribersFull`), [`BridgeError::Zenoh`] for a bad key.
    pub fn start<M>(
        session: &zenoh::Session,
        broadcast: Broadcast<M>,
        opts: &ExportOptions,
    ) -> Result<Exporter, BridgeError>
    where
        M: SharedMemory + Send + Sync + 'static,
    {
        if broadcast.relayed() {
            return Err(BridgeError::Relayed);
        }
        let desc = Descriptor {
            kind: Kind::Broadcast,
            exporter: random_id(),
            mode: broadcast.mode(),
            max_message: broadcast.max_message(),
            schema: broadcast.schema(),
        };
        let sub = join(&broadcast, opts.wait)?;
        let source = BroadcastSource {
            broadcast,
            sub,
            wait: opts.wait,
        };
        Exporter::start_source(session, source, desc, opts)
    }

    /// Starts exporting what `source` yields, announced by `desc`.
    pub(crate) fn start_source<S: Source>(
        session: &zenoh::Session,
        source: S,
        desc: Descriptor,
        opts: &ExportOptions,
    ) -> Result<Exporter, BridgeError> {
        let key = crate::check_key(&opts.key)?;
        let (mode, id) = (desc.mode, desc.exporter);
        let z = |what: &str, e: zenoh::Error| BridgeError::Zenoh(format!("{what}: {e}"));
        let publisher = session
            .declare_publisher(key.clone())
            .congestion_control(match mode {
                BroadcastMode::Reliable => CongestionControl::Block,
                BroadcastMode::Lossy => CongestionControl::Drop,
            })
            .express(opts.express)
            .allowed_destination(Locality::Remote)
            .wait()
            .map_err(|e| z("declare the publisher", e))?;
        let matched = Arc::new(AtomicBool::new(false));
        let m2 = matched.clone();
        let listener = publisher
            .matching_listener()
            .callback(move |st: zenoh::matching::MatchingStatus| {
                m2.store(st.matching(), Ordering::Relaxed);
            })
            .wait()
            .map_err(|e| z("declare the matching listener", e))?;
        let default_messages = match desc.kind {
            Kind::Broadcast => CACHE_MESSAGES,
            Kind::Channel => usize::MAX,
        };
        let (cache_messages, cache_bytes) = match mode {
            BroadcastMode::Reliable => (
                opts.cache_messages.unwrap_or(default_messages),
                opts.cache_bytes,
            ),
            BroadcastMode::Lossy => (0, 0),
        };
        let queryable = if cache_messages > 0 && cache_bytes > 0 {
            Some(
                session
                    .declare_queryable(cache_key(&key, id))
                    .allowed_origin(Locality::Remote)
                    .with(FifoChannel::new(QUERIES))
                    .wait()
                    .map_err(|e| z("declare the recovery queryable", e))?,
            )
        } else {
            None
        };
        let token = session
            .liveliness()
            .declare_token(desc.token_key(&key))
            .wait()
            .map_err(|e| z("declare the liveliness token", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let run = Run {
            matched: matched.clone(),
            session: session.clone(),
            source,
            publisher,
            header: SampleHeader {
                mode,
                flags: 0,
                exporter: id,
                number: 0,
                schema: fingerprint(&desc.schema),
            },
            stop: stop.clone(),
            counters: counters.clone(),
            cache: Cache {
                entries: VecDeque::new(),
                bytes: 0,
                max_messages: cache_messages,
                max_bytes: cache_bytes,
            },
            queryable,
            ever_matched: false,
        };
        let thread = std::thread::Builder::new()
            .name("shm-zenoh-export".into())
            .spawn(move || {
                let r = run.run();
                drop(listener);
                drop(token);
                r
            })
            .map_err(|e| BridgeError::Zenoh(format!("cannot start the export thread: {e}")))?;
        Ok(Exporter {
            matched,
            id,
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// The exporter's identity (in every sample and in its token).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether a remote subscriber (an importer) matches the key now.
    pub fn matched(&self) -> bool {
        self.matched.load(Ordering::Relaxed)
    }

    /// Waits at most `timeout` for a remote subscriber on the key; returns whether one
    /// came. Messages exported while none matches go nowhere (Zenoh drops them at the
    /// source), so a program that must not lose the first messages waits for this first.
    pub fn wait_matched(&self, timeout: Duration) -> bool {
        let deadline = crate::after(timeout);
        while !self.matched() {
            if std::time::Instant::now() >= deadline || self.is_finished() {
                return self.matched();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// What it did so far.
    pub fn stats(&self) -> ExportStats {
        self.counters.snapshot()
    }

    /// Whether it has ended (the source closed, or an error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits until the export ends by itself: the source broadcast closed (then the
    /// end of stream was put on the network) or failed.
    ///
    /// After the end of the stream the export lingers (at most [`LINGER`]) until every
    /// importer has received it and left. Close the session gracefully
    /// (`session.close()`) before the process exits all the same, so that anything still
    /// queued goes out.
    ///
    /// # Errors
    /// What ended it: [`BridgeError::Shm`] (`PeerDied` when the local publisher died,
    /// `Truncated`), [`BridgeError::Zenoh`].
    pub fn join(mut self) -> Result<ExportStats, BridgeError> {
        self.finish()
    }

    /// Stops the export (its token goes, importers tell their subscribers) and returns
    /// what it did.
    ///
    /// # Errors
    /// As [`join`](Self::join), for an export that had already failed.
    pub fn stop(mut self) -> Result<ExportStats, BridgeError> {
        self.stop.store(true, Ordering::Relaxed);
        self.finish()
    }

    fn finish(&mut self) -> Result<ExportStats, BridgeError> {
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| BridgeError::Zenoh("the export thread panicked".into()))??;
        }
        Ok(self.counters.snapshot())
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.finish();
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("id", &self.id)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Joins the broadcast: a line of its own when the mapping is writable (needed for a
/// reliable broadcast), a read-only lossy subscriber otherwise.
fn join<M: SharedMemory>(
    b: &Broadcast<M>,
    wait: shm_core::WaitMode,
) -> Result<Subscriber<M>, BridgeError> {
    let mut s = b.subscriber()?;
    s.set_wait(wait);
    Ok(s)
}

/// How long the exporter spins on an empty broadcast before it sleeps, by default: the
/// CPU is better spent by Zenoh's threads than by the exporter spinning (the wake-up
/// costs the publisher one futex call only while the exporter sleeps).
pub const EXPORTER_SPIN: Duration = Duration::from_micros(2);

/// What the exporter read next from its local source.
pub(crate) enum Next {
    /// A message (in the buffer) and its number.
    Message(u64),
    /// None within the poll interval.
    Idle,
    /// The source dropped this many messages before the exporter read them.
    Lagged(u64),
    /// The local publisher evicted the exporter, which rejoined at the tail.
    Evicted,
    /// The source closed; the end's number (messages it published).
    Closed(u64),
}

/// A local stream an exporter reads: a broadcast's subscriber, a channel's receiver.
pub(crate) trait Source: Send + 'static {
    /// Whether nothing may be read while no importer matches (a channel: its messages
    /// wait in the ring rather than go nowhere).
    fn needs_match(&self) -> bool {
        false
    }
    /// The next message into `buf`, waiting at most [`POLL`].
    fn next(&mut self, buf: &mut Vec<u8>) -> Result<Next, BridgeError>;
}

struct BroadcastSource<M: SharedMemory> {
    broadcast: Broadcast<M>,
    sub: Subscriber<M>,
    wait: shm_core::WaitMode,
}

impl<M: SharedMemory + Send + Sync + 'static> Source for BroadcastSource<M> {
    fn next(&mut self, buf: &mut Vec<u8>) -> Result<Next, BridgeError> {
        // The try first: while messages flow no deadline is computed.
        let r = match self.sub.try_recv_into(buf) {
            Err(TryRecvError::Empty) => self.sub.recv_into_timeout(buf, POLL).map_err(Error::from),
            r => r.map_err(Error::from),
        };
        match r {
            Ok(_) => Ok(Next::Message(
                self.sub.last_number().expect("a message was received"),
            )),
            Err(Error::Timeout { .. } | Error::Empty) => Ok(Next::Idle),
            Err(Error::Lagged { missed }) => Ok(Next::Lagged(missed)),
            Err(Error::Evicted { .. }) => {
                // Too slow for the reliable publisher (the network held us back):
                // rejoin at the tail; importers see the gap in the numbers.
                self.sub = join(&self.broadcast, self.wait)?;
                Ok(Next::Evicted)
            }
            Err(Error::Closed) => Ok(Next::Closed(self.sub.next_message())),
            Err(e) => Err(e.into()),
        }
    }
}

struct Run<S: Source> {
    /// Whether an importer matches the key (the matching listener's view).
    matched: Arc<AtomicBool>,
    session: zenoh::Session,
    source: S,
    publisher: zenoh::pubsub::Publisher<'static>,
    header: SampleHeader,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    cache: Cache,
    /// Recovery queries (reliable exports with a cache).
    queryable: Option<Queryable<FifoChannelHandler<Query>>>,
    /// Whether an importer ever matched the key.
    ever_matched: bool,
}

/// The last messages sent, for importers that lost them: oldest first, numbers
/// increasing.
struct Cache {
    entries: VecDeque<(u64, u8, ZBytes)>,
    bytes: u64,
    max_messages: usize,
    max_bytes: u64,
}

impl Cache {
    fn push(&mut self, number: u64, flags: u8, payload: &ZBytes) {
        if self.max_messages == 0 {
            return;
        }
        self.bytes += payload.len() as u64;
        self.entries.push_back((number, flags, payload.clone()));
        while self.entries.len() > self.max_messages || self.bytes > self.max_bytes {
            match self.entries.pop_front() {
                Some((_, _, p)) => self.bytes -= p.len() as u64,
                None => break,
            }
        }
    }
}

impl<S: Source> Run<S> {
    /// Answers the recovery queries waiting: every cached message numbered `from` or
    /// later, in order, each with its header as when it was first sent. A query without
    /// a readable `from` gets nothing.
    fn serve_queries(&mut self) {
        let Some(q) = &self.queryable else { return };
        while let Ok(Some(query)) = q.handler().try_recv() {
            self.counters.queries.fetch_add(1, Ordering::Relaxed);
            let Some(from) = query
                .parameters()
                .get("from")
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            let first = self.cache.entries.partition_point(|(n, _, _)| *n < from);
            for (number, flags, payload) in self.cache.entries.range(first..) {
                let mut h = self.header;
                h.number = *number;
                h.flags = *flags;
                let r = query
                    .reply(query.key_expr().clone(), payload.clone())
                    .attachment(h.encode().to_vec())
                    .wait();
                if r.is_err() {
                    break; // the querier went; nothing to answer
                }
                self.counters.resent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn put(&mut self, number: u64, flags: u8, payload: Vec<u8>) -> Result<(), BridgeError> {
        let mut h = self.header;
        h.number = number;
        h.flags = flags;
        let len = payload.len() as u64;
        let payload = ZBytes::from(payload);
        self.cache.push(number, flags, &payload);
        let att = h.encode().to_vec();
        let r = if flags & FLAG_END != 0 {
            // The end of the stream is never dropped, even on a lossy export.
            self.session
                .put(self.publisher.key_expr().clone(), payload)
                .attachment(att)
                .congestion_control(CongestionControl::Block)
                .allowed_destination(Locality::Remote)
                .wait()
        } else {
            self.publisher.put(payload).attachment(att).wait()
        };
        if let Err(e) = r {
            // A link closing under a blocked put (a cut past the lease) fails it: the
            // message is cached, and an importer that comes back recovers it. Only a
            // closed session of our own ends the export.
            if self.session.is_closed() {
                return Err(BridgeError::Zenoh(format!("put: {e}")));
            }
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// After the end of the stream was put: a put returns once Zenoh has queued the
    /// message, so wait (at most [`LINGER`], or until stopped) until no importer matches
    /// any more (each one ends its import at the end of the stream and undeclares its
    /// subscriber). Until then the token stays and the session stays open: an importer
    /// does not see the exporter go before its last messages, and the process does not
    /// close the session under them (seen in 2 of 16 runs of the demo's bridge tests
    /// without it: an importer got 97,258 of 100,000 messages and never the end).
    ///
    /// An importer that followed the stream but is away when it ends (no importer
    /// matched when the end was put, as in a cut: it went into the cache only) is waited
    /// for, at most [`LINGER_AWAY`] and
    /// only by a reliable export with a cache, so that it can recover the end.
    fn linger(&mut self, matched_at_end: bool) {
        let away_until = std::time::Instant::now() + LINGER_AWAY;
        while self.ever_matched
            && !matched_at_end
            && self.queryable.is_some()
            && !self.matched.load(Ordering::Relaxed)
            && !self.stop.load(Ordering::Relaxed)
            && std::time::Instant::now() < away_until
        {
            self.serve_queries();
            std::thread::sleep(Duration::from_millis(5));
        }
        let deadline = std::time::Instant::now() + LINGER;
        while self.matched.load(Ordering::Relaxed)
            && !self.stop.load(Ordering::Relaxed)
            && std::time::Instant::now() < deadline
        {
            self.serve_queries();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn run(mut self) -> Result<(), BridgeError> {
        let mut turns = 0u32;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            // Recovery queries are looked at every QUERY_EVERY messages and whenever
            // the source is idle: not on every message (a look costs a lock).
            turns += 1;
            if turns >= QUERY_EVERY {
                turns = 0;
                self.serve_queries();
            }
            let matched = self.matched.load(Ordering::Relaxed);
            self.ever_matched |= matched;
            if self.source.needs_match() && !matched {
                self.serve_queries();
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            // A fresh buffer per message, of the message's own length (the receive sizes
            // it): Zenoh takes it without a copy, and the cache holds no more than the
            // bytes it counts (a buffer of the largest message's capacity held a page or
            // more per small message: 426 MB for 100,000 cached 64-byte messages).
            let mut buf = Vec::new();
            match self.source.next(&mut buf)? {
                Next::Message(n) => self.put(n, 0, buf)?,
                Next::Idle => self.serve_queries(),
                Next::Lagged(missed) => {
                    self.counters.lagged.fetch_add(missed, Ordering::Relaxed);
                }
                Next::Evicted => {
                    self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                }
                Next::Closed(end) => {
                    let matched_at_end = self.matched.load(Ordering::Relaxed);
                    self.put(end, FLAG_END, Vec::new())?;
                    self.linger(matched_at_end);
                    return Ok(());
                }
            }
        }
    }
}
