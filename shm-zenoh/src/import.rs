//! The importer: subscribes to a Zenoh key and republishes every valid sample into a local
//! broadcast that local subscribers attach to as they would to any publisher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shm_core::{
    Broadcast, BroadcastMode, BroadcastOptions, Error, Publisher, Schema, SharedMemory,
};
use zenoh::handlers::{FifoChannel, FifoChannelHandler, RingChannel, RingChannelHandler};
use zenoh::pubsub::Subscriber;
use zenoh::query::{ConsolidationMode, QueryTarget};
use zenoh::sample::{Locality, Sample, SampleKind};
use zenoh::Wait as _;

use crate::wire::{
    cache_key, fingerprint, Descriptor, Kind, Reject, SampleHeader, FLAG_END, TOKEN_CHUNK,
};
use crate::BridgeError;

/// How often the import thread looks at its stop flag and liveliness events while no
/// sample arrives.
const POLL: Duration = Duration::from_millis(20);
/// How long the queue must stay empty after the followed exporter's token went before
/// the subscribers are told `UpstreamLost` (its last data may still be on the way).
const LOST_GRACE: Duration = Duration::from_millis(100);

/// Liveliness events queued between Zenoh's callback and the import thread (a flood
/// beyond it makes the thread re-read the tokens instead).
const EVENTS: usize = 1024;

/// How long a reliable import's live exporter may send nothing before the import asks
/// its cache (see `Run::pull_due`).
const PULL_EVERY: Duration = Duration::from_secs(1);
/// How often a recovery looks at the live queue while it waits for replies.
const RECOVER_POLL: Duration = Duration::from_millis(2);
/// How long a recovery query waits for the exporter's cache to answer.
const RECOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// What to import and how to lay the local broadcast out (builder; ends in
/// [`Importer::start`]).
#[derive(Debug, Clone)]
pub struct ImportOptions {
    key: String,
    expect: Option<Schema>,
    wait_exporter: Duration,
    queue: usize,
    slots: Option<u64>,
    max_subscribers: u32,
    evict_timeout: Duration,
    max_rate: Option<f64>,
    max_message: u64,
    recovery: bool,
}

impl ImportOptions {
    /// Import the stream exported on the Zenoh key `key`.
    pub fn new(key: impl Into<String>) -> Self {
        ImportOptions {
            key: key.into(),
            expect: None,
            wait_exporter: Duration::from_secs(30),
            queue: 256,
            slots: None,
            max_subscribers: 64,
            evict_timeout: Duration::from_secs(1),
            max_rate: None,
            max_message: 256 << 20,
            recovery: true,
        }
    }
    /// Whether a reliable import asks its exporter's cache for what it lost (default
    /// on; see [`ExportOptions::cache`](crate::ExportOptions::cache)). Off, every loss is
    /// a `Lagged` at once, as a lossy import's always is.
    pub fn recovery(mut self, on: bool) -> Self {
        self.recovery = on;
        self
    }
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
    /// The largest message an exporter may announce (default 256 MiB): the local ring
    /// is sized from the announcement, so a larger one is refused
    /// ([`BridgeError::TooLarge`]) rather than trusted.
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }
    /// Publish at most `hz` messages per second locally (a rate limit for a slow
    /// consumer side; on a lossy stream the excess is dropped by the queue and reported
    /// as gaps, on a reliable one it holds the exporter back).
    pub fn max_rate(mut self, hz: f64) -> Self {
        self.max_rate = (hz.is_finite() && hz > 0.0).then_some(hz);
        self
    }
    /// Expect records of type `T`: an exporter of another schema is refused
    /// ([`BridgeError::Shm`]`(SchemaMismatch)`) before anything is published locally.
    pub fn record<T: shm_core::Record>(mut self) -> Self {
        self.expect = Schema::of::<T>().ok();
        self
    }
    /// Expect this schema (as [`record`](Self::record), without a Rust type).
    pub fn schema(mut self, schema: Schema) -> Self {
        self.expect = Some(schema);
        self
    }
    /// How long [`Importer::start`] waits for an exporter to appear (default 30 s).
    pub fn wait_exporter(mut self, wait: Duration) -> Self {
        self.wait_exporter = wait;
        self
    }
    /// Samples queued between Zenoh and the local publisher (default 256, at least 1).
    /// The bridge's memory bound is about `queue × (max_message + 100)` bytes on top of
    /// Zenoh's own buffers. Reliable: a full queue holds Zenoh's delivery (and so, over
    /// the reliable link, the exporter and the remote publisher) back; lossy: the oldest
    /// sample is dropped, and the gap reaches the subscribers as `Lagged`.
    pub fn queue(mut self, samples: usize) -> Self {
        self.queue = samples.max(1);
        self
    }
    /// Slots of the local broadcast (default: what
    /// [`BroadcastOptions::for_messages`] recommends for the exporter's `max_message`).
    pub fn slots(mut self, slots: u64) -> Self {
        self.slots = Some(slots);
        self
    }
    /// Subscribers the local broadcast takes at once (default 64).
    pub fn max_subscribers(mut self, n: u32) -> Self {
        self.max_subscribers = n;
        self
    }
    /// The local reliable broadcast's eviction timeout (default 1 s).
    pub fn evict_timeout(mut self, t: Duration) -> Self {
        self.evict_timeout = t;
        self
    }
}

/// What an importer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Messages published locally.
    pub delivered: u64,
    /// Payload bytes published locally.
    pub bytes: u64,
    /// Messages lost on the way (dropped by a lossy exporter or queue, or not sent
    /// while no exporter ran), reported to the subscribers as `Lagged`.
    pub missed: u64,
    /// Times the exporter disappeared (reported as `UpstreamLost`).
    pub upstream_lost: u64,
    /// Exporters followed (1 + restarts).
    pub exporters: u64,
    /// Samples dropped: no or malformed header.
    pub rejected_header: u64,
    /// Samples dropped: wrong magic or version.
    pub rejected_magic: u64,
    /// Samples dropped: wrong mode or unknown flags.
    pub rejected_mode: u64,
    /// Samples dropped: another schema.
    pub rejected_schema: u64,
    /// Samples dropped: longer than the local `max_message`.
    pub rejected_too_long: u64,
    /// Samples dropped: a number below the next expected.
    pub rejected_regressing: u64,
    /// Samples dropped: from an exporter that is not the one followed.
    pub rejected_foreign: u64,
    /// Messages lost on the way and then recovered from the exporter's cache (delivered
    /// in order, not counted in `missed`).
    pub recovered: u64,
    /// Live samples of messages a recovery had already delivered (dropped, not an
    /// error).
    pub duplicates: u64,
    /// Recovery queries sent.
    pub recoveries: u64,
}

impl ImportStats {
    /// Every sample dropped as invalid.
    pub fn rejected(&self) -> u64 {
        self.rejected_header
            + self.rejected_magic
            + self.rejected_mode
            + self.rejected_schema
            + self.rejected_too_long
            + self.rejected_regressing
            + self.rejected_foreign
    }
}

#[derive(Default)]
struct Counters {
    v: [AtomicU64; 15],
}

impl Counters {
    fn add(&self, i: usize, n: u64) {
        self.v[i].fetch_add(n, Ordering::Relaxed);
    }
    fn snapshot(&self) -> ImportStats {
        let g = |i: usize| self.v[i].load(Ordering::Relaxed);
        ImportStats {
            delivered: g(0),
            bytes: g(1),
            missed: g(2),
            upstream_lost: g(3),
            exporters: g(4),
            rejected_header: g(5),
            rejected_magic: g(6),
            rejected_mode: g(7),
            rejected_schema: g(8),
            rejected_too_long: g(9),
            rejected_regressing: g(10),
            rejected_foreign: g(11),
            recovered: g(RECOVERED),
            duplicates: g(DUPLICATES),
            recoveries: g(RECOVERIES),
        }
    }
    fn reject(&self, r: Reject) {
        self.add(
            match r {
                Reject::Header => 5,
                Reject::Magic => 6,
                Reject::Mode => 7,
                Reject::Schema => 8,
                Reject::TooLong => 9,
                Reject::Regressing => 10,
                Reject::Foreign => 11,
                Reject::Duplicate => DUPLICATES,
            },
            1,
        );
    }
}

const DELIVERED: usize = 0;
const BYTES: usize = 1;
const MISSED: usize = 2;
const LOST: usize = 3;
const EXPORTERS: usize = 4;
const RECOVERED: usize = 12;
const DUPLICATES: usize = 13;
const RECOVERIES: usize = 14;

/// A liveliness event: an exporter appeared (its descriptor) or went.
enum Event {
    Up(Descriptor),
    Down(u64),
}

/// The Zenoh subscriber and its queue: a FIFO for reliable streams (full: Zenoh's
/// delivery waits), a ring for lossy ones (full: the oldest goes).
enum Queue {
    Fifo(Subscriber<FifoChannelHandler<Sample>>),
    Ring(Subscriber<RingChannelHandler<Sample>>),
}

impl Queue {
    /// A sample if one is queued now.
    fn try_recv(&self) -> Option<Sample> {
        match self {
            Queue::Fifo(s) => s.handler().try_recv().ok().flatten(),
            Queue::Ring(s) => s.handler().try_recv().ok().flatten(),
        }
    }

    fn recv_timeout(&self, t: Duration) -> Result<Option<Sample>, BridgeError> {
        // The try first: while samples flow no deadline is computed.
        let r = match self {
            Queue::Fifo(s) => match s.handler().try_recv() {
                Ok(None) => s.handler().recv_timeout(t),
                r => r,
            },
            Queue::Ring(s) => match s.handler().try_recv() {
                Ok(None) => s.handler().recv_timeout(t),
                r => r,
            },
        };
        r.map_err(|e| BridgeError::Zenoh(format!("the subscription ended: {e}")))
    }
}

/// A running import: a local broadcast (created by [`start`](Importer::start), marked
/// [relayed](shm_core::BroadcastOptions::relayed) so that no bridge exports it again) and
/// a thread that republishes into it every valid sample from the exporter it follows.
///
/// What the local subscribers see:
/// * every message in the exporter's order, each once, numbered as in the source
///   broadcast (the import starts at the source's number with
///   [`Publisher::start_at`](shm_core::Publisher::start_at); a source that restarts its
///   numbering is shifted to go on from where the import was);
/// * `Lagged { missed }` with the exact count wherever the source's message numbers
///   jump (a lossy drop, a reconnect, an exporter restart);
/// * [`Error::UpstreamLost`] once when the exporter disappears (its liveliness token goes:
///   at once when its process dies, within the Zenoh lease —
///   [`BridgeConfig::lease`](crate::BridgeConfig::lease) — when its host or link dies);
///   then messages resume, after a `Lagged` for what was missed, when an exporter is
///   back on the key;
/// * `Closed` once the source broadcast closed and everything before was delivered
///   (then the import ends).
///
/// Invalid samples (see [the wire format](crate::wire)) are counted and dropped, never
/// published. Samples from a second exporter on the same key, while the first lives, are
/// dropped as foreign. What the bridge cannot tell apart is a peer that forges the
/// followed exporter's identity with well-formed samples: it can make the importer skip
/// ahead (reported as a gap) but never makes it publish a sample of another schema or
/// size, panic or block. Where the network is not trusted, authenticate peers with
/// Zenoh's own access control and TLS.
pub struct Importer<M: SharedMemory> {
    broadcast: Broadcast<M>,
    handle: Handle,
}

/// The running part of an import (broadcast or channel): its thread and counters.
pub(crate) struct Handle {
    descriptor: Descriptor,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<Result<(), BridgeError>>>,
}

impl Handle {
    pub(crate) fn descriptor(&self) -> Descriptor {
        self.descriptor
    }
    pub(crate) fn stats(&self) -> ImportStats {
        self.counters.snapshot()
    }
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
    pub(crate) fn stop(&mut self) -> Result<ImportStats, BridgeError> {
        self.stop.store(true, Ordering::Relaxed);
        self.finish()
    }
    pub(crate) fn finish(&mut self) -> Result<ImportStats, BridgeError> {
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| BridgeError::Zenoh("the import thread panicked".into()))??;
        }
        Ok(self.counters.snapshot())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Where an import publishes: a broadcast's publisher, a channel's sender.
pub(crate) trait Sink: Send + 'static {
    /// The local number the next message gets.
    fn next_message(&self) -> u64;
    /// Numbers the first message `n` (before anything was published).
    fn start_at(&mut self, n: u64) -> Result<(), BridgeError>;
    /// `n` messages were lost on the way.
    fn gap(&mut self, n: u64) -> Result<(), BridgeError>;
    /// The exporter went.
    fn upstream_lost(&mut self) -> Result<(), BridgeError>;
    /// Messages flow again after [`upstream_lost`](Self::upstream_lost).
    fn upstream_restored(&mut self) -> Result<(), BridgeError>;
    /// Publishes one message (waiting as the local end's rules say; `stop` ends a wait).
    fn publish(&mut self, payload: &[u8], stop: &AtomicBool) -> Result<(), BridgeError>;
}

impl<M: SharedMemory + Send + Sync + 'static> Sink for Publisher<M> {
    fn next_message(&self) -> u64 {
        Publisher::next_message(self)
    }
    fn start_at(&mut self, n: u64) -> Result<(), BridgeError> {
        Ok(Publisher::start_at(self, n)?)
    }
    fn gap(&mut self, n: u64) -> Result<(), BridgeError> {
        Ok(self.publish_gap(n)?)
    }
    fn upstream_lost(&mut self) -> Result<(), BridgeError> {
        Ok(self.publish_upstream_lost()?)
    }
    fn upstream_restored(&mut self) -> Result<(), BridgeError> {
        Ok(Publisher::upstream_restored(self)?)
    }
    fn publish(&mut self, payload: &[u8], _stop: &AtomicBool) -> Result<(), BridgeError> {
        // Reliable: waits for the slowest subscriber within the eviction timeout, so
        // the wait ends by itself.
        Ok(Publisher::publish(self, payload).map_err(shm_core::Error::from)?)
    }
}

impl<M> Importer<M>
where
    M: SharedMemory + Send + Sync + 'static,
{
    /// Waits (at most [`ImportOptions::wait_exporter`]) for an exporter on the key,
    /// checks its schema against the expected one, creates the local broadcast in the
    /// memory `make(len)` returns (`len`: the segment size needed), and starts importing.
    ///
    /// # Errors
    /// [`BridgeError::NoExporter`] when none appeared in time;
    /// [`BridgeError::Shm`]`(SchemaMismatch)` when it exports another record type
    /// (nothing was created); [`BridgeError::Memory`] from `make`;
    /// [`BridgeError::Zenoh`] for a bad key.
    pub fn start<F>(
        session: &zenoh::Session,
        opts: &ImportOptions,
        make: F,
    ) -> Result<Importer<M>, BridgeError>
    where
        F: FnOnce(u64) -> Result<M, Box<dyn std::error::Error + Send + Sync>>,
    {
        let (handle, broadcast) = start_import(session, opts, Kind::Broadcast, |first| {
            let mut bopts = BroadcastOptions::for_messages(first.max_message.max(1))
                .mode(first.mode)
                .schema(first.schema)
                .max_message(first.max_message)
                .max_subscribers(opts.max_subscribers)
                .evict_timeout(opts.evict_timeout)
                .relayed(true);
            if let Some(s) = opts.slots {
                bopts = bopts.slots(s);
            }
            let len = bopts.segment_len()?;
            let mem = make(len).map_err(|e| BridgeError::Memory(e.to_string()))?;
            let broadcast = Broadcast::create(mem, &bopts)?;
            let publisher = broadcast.publisher()?;
            Ok((publisher, broadcast))
        })?;
        Ok(Importer { broadcast, handle })
    }
}

/// Waits for an exporter of `kind` on the key, checks what it announces against `opts`,
/// makes the local end with `make` (its sink, and what the caller keeps), and starts the
/// import's thread.
pub(crate) fn start_import<S, T, F>(
    session: &zenoh::Session,
    opts: &ImportOptions,
    kind: Kind,
    make: F,
) -> Result<(Handle, T), BridgeError>
where
    S: Sink,
    F: FnOnce(&Descriptor) -> Result<(S, T), BridgeError>,
{
    let key = crate::check_key(&opts.key)?;
    let z = |what: &str, e: zenoh::Error| BridgeError::Zenoh(format!("{what}: {e}"));
    let (tx, events) = std::sync::mpsc::sync_channel::<Event>(EVENTS);
    let overflow = Arc::new(AtomicBool::new(false));
    let flag = overflow.clone();
    let tokens = session
        .liveliness()
        .declare_subscriber(format!("{key}/{TOKEN_CHUNK}/*"))
        .history(true)
        .callback(move |s: Sample| {
            // Never blocks: a full queue is flagged and re-read by the thread.
            if let Some(ev) = event_of(&s, kind) {
                if let Err(TrySendError::Full(_)) = tx.try_send(ev) {
                    flag.store(true, Ordering::Relaxed);
                }
            }
        })
        .wait()
        .map_err(|e| z("declare the liveliness subscriber", e))?;
    // The first exporter: its descriptor says what to create.
    let mut alive: HashMap<u64, Descriptor> = HashMap::new();
    let deadline = crate::after(opts.wait_exporter);
    let first = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left.min(POLL)) {
            Ok(Event::Up(d)) => {
                alive.insert(d.exporter, d);
                break d;
            }
            Ok(Event::Down(id)) => {
                alive.remove(&id);
            }
            Err(_) if left.is_zero() => {
                return Err(BridgeError::NoExporter {
                    key,
                    waited: opts.wait_exporter,
                })
            }
            Err(_) => {}
        }
    };
    if first.max_message > opts.max_message {
        return Err(BridgeError::TooLarge {
            announced: first.max_message,
            limit: opts.max_message,
        });
    }
    if let Some(expected) = opts.expect {
        if expected != first.schema {
            return Err(Error::SchemaMismatch {
                found: first.schema,
                expected,
            }
            .into());
        }
    }
    let (publisher, local) = make(&first)?;
    let sub = session
        .declare_subscriber(key.clone())
        .allowed_origin(Locality::Remote);
    let queue = match first.mode {
        BroadcastMode::Reliable => Queue::Fifo(
            sub.with(FifoChannel::new(opts.queue))
                .wait()
                .map_err(|e| z("declare the subscriber", e))?,
        ),
        BroadcastMode::Lossy => Queue::Ring(
            sub.with(RingChannel::new(opts.queue))
                .wait()
                .map_err(|e| z("declare the subscriber", e))?,
        ),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let run = Run {
        kind,
        session: session.clone(),
        key,
        publisher: Some(publisher),
        queue,
        _tokens: tokens,
        events,
        overflow,
        alive,
        mode: first.mode,
        schema: fingerprint(&first.schema),
        max_message: first.max_message,
        current: None,
        next: None,
        offset: None,
        lost_pending: None,
        lost_told: false,
        recover: opts.recovery && first.mode == BroadcastMode::Reliable,
        recover_pending: false,
        dup_floor: None,
        replies: opts.queue,
        stash: std::collections::VecDeque::new(),
        last_data: Instant::now(),
        last_pull: Instant::now(),
        pace: opts
            .max_rate
            .map(|hz| (Duration::from_secs_f64(1.0 / hz), Instant::now())),
        stop: stop.clone(),
        counters: counters.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("shm-zenoh-import".into())
        .spawn(move || run.run())
        .map_err(|e| BridgeError::Zenoh(format!("cannot start the import thread: {e}")))?;
    Ok((
        Handle {
            descriptor: first,
            stop,
            counters,
            thread: Some(thread),
        },
        local,
    ))
}

impl<M: SharedMemory> Importer<M> {
    /// The local broadcast (to serve a memfd's descriptor, or to look at its state).
    pub fn broadcast(&self) -> &Broadcast<M> {
        &self.broadcast
    }

    /// What the first exporter announced.
    pub fn descriptor(&self) -> Descriptor {
        self.handle.descriptor()
    }

    /// What it did so far.
    pub fn stats(&self) -> ImportStats {
        self.handle.stats()
    }

    /// Whether it has ended (the source closed, or an error).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits until the import ends by itself: the source closed and everything was
    /// published locally (then the local broadcast is closed too).
    ///
    /// # Errors
    /// What ended it: [`BridgeError::Shm`] (`Truncated`), [`BridgeError::Zenoh`].
    pub fn join(mut self) -> Result<ImportStats, BridgeError> {
        self.handle.finish()
    }

    /// Stops importing (the local broadcast is closed: its subscribers get `Closed`).
    ///
    /// # Errors
    /// As [`join`](Self::join), for an import that had already failed.
    pub fn stop(mut self) -> Result<ImportStats, BridgeError> {
        self.handle.stop()
    }
}

impl<M: SharedMemory> std::fmt::Debug for Importer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("descriptor", &self.descriptor())
            .field("stats", &self.stats())
            .finish()
    }
}

fn event_of(s: &Sample, kind: Kind) -> Option<Event> {
    let (_, d) = Descriptor::from_token_key(s.key_expr().as_str())?;
    if d.kind != kind {
        return None; // another kind of export on the same key: not ours to follow
    }
    Some(match s.kind() {
        SampleKind::Put => Event::Up(d),
        SampleKind::Delete => Event::Down(d.exporter),
    })
}

struct Run<S: Sink> {
    kind: Kind,
    session: zenoh::Session,
    key: String,
    publisher: Option<S>,
    queue: Queue,
    _tokens: Subscriber<()>,
    events: Receiver<Event>,
    overflow: Arc<AtomicBool>,
    alive: HashMap<u64, Descriptor>,
    mode: BroadcastMode,
    schema: u64,
    max_message: u64,
    /// The exporter followed.
    current: Option<u64>,
    /// The next source number expected from the followed exporter (None before the
    /// first message).
    next: Option<u64>,
    /// Local number minus source number (None before the first message).
    offset: Option<u64>,
    /// The followed exporter went (since when); tell the subscribers once the queue
    /// stayed drained for [`LOST_GRACE`].
    lost_pending: Option<Instant>,
    /// `UpstreamLost` was published and no message since.
    lost_told: bool,
    /// Whether lost messages are asked for from the exporter's cache.
    recover: bool,
    /// The followed exporter came back after a cut: ask for what it sent meanwhile.
    recover_pending: bool,
    /// Where the last recovery started: live samples from there up to `next` are
    /// duplicates of recovered ones.
    dup_floor: Option<u64>,
    /// Replies queued from a recovery query.
    replies: usize,
    /// Live samples set aside during a recovery, handled next.
    stash: std::collections::VecDeque<Sample>,
    /// When the last live sample came.
    last_data: Instant,
    /// When the cache was last asked without a sign of loss.
    last_pull: Instant,
    /// The rate limit: the interval, and when the next message may go.
    pace: Option<(Duration, Instant)>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl<S: Sink> Run<S> {
    fn run(mut self) -> Result<(), BridgeError> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            self.events()?;
            if let Some(sample) = self.stash.pop_front() {
                self.last_data = Instant::now();
                if self.deliver(&sample)? {
                    return Ok(());
                }
                continue;
            }
            if std::mem::take(&mut self.recover_pending) {
                if let (Some(cur), Some(next)) = (self.current, self.next) {
                    if self.recover_from(cur, next)? {
                        return Ok(()); // the end of the stream was among what it lost
                    }
                }
            }
            match self.queue.recv_timeout(POLL)? {
                // The source closed.
                Some(sample) if self.deliver(&sample)? => return Ok(()),
                Some(_) => self.last_data = Instant::now(),
                None if self
                    .lost_pending
                    .is_some_and(|since| since.elapsed() >= LOST_GRACE) =>
                {
                    // Everything the exporter sent before it went is delivered: its
                    // token's removal travels ahead of its last data (declarations have
                    // priority over data in Zenoh), so the queue must stay empty for
                    // LOST_GRACE first.
                    self.lost_pending = None;
                    if !self.lost_told {
                        self.lost_told = true;
                        self.counters.add(LOST, 1);
                        self.publisher()?.upstream_lost()?;
                    }
                }
                None => {
                    if self.pull_due() {
                        let (cur, next) = (self.current, self.next);
                        if let (Some(cur), Some(next)) = (cur, next) {
                            self.last_pull = Instant::now();
                            if self.recover_from(cur, next)? {
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
    }

    /// Whether to ask the followed exporter's cache for what may have been lost without
    /// a sign: a reliable import whose live exporter sent nothing for [`PULL_EVERY`]
    /// (the end of a stream lost in a cut, a route that went quiet) asks from the next
    /// number it expects, at most every [`PULL_EVERY`]. An idle stream costs one empty
    /// query a second.
    fn pull_due(&self) -> bool {
        self.recover
            && self.current.is_some_and(|c| self.alive.contains_key(&c))
            && self.last_data.elapsed() >= PULL_EVERY
            && self.last_pull.elapsed() >= PULL_EVERY
    }

    fn publisher(&mut self) -> Result<&mut S, BridgeError> {
        self.publisher
            .as_mut()
            .ok_or_else(|| BridgeError::Zenoh("the import has ended".into()))
    }

    /// Applies queued liveliness events (or re-reads every token after a flood).
    fn events(&mut self) -> Result<(), BridgeError> {
        if self.overflow.swap(false, Ordering::Relaxed) {
            while self.events.try_recv().is_ok() {}
            let replies = self
                .session
                .liveliness()
                .get(format!("{}/{TOKEN_CHUNK}/*", self.key))
                .timeout(Duration::from_secs(2))
                .wait()
                .map_err(|e| BridgeError::Zenoh(format!("liveliness get: {e}")))?;
            self.alive.clear();
            while let Ok(reply) = replies.recv() {
                if let Ok(s) = reply.result() {
                    if let Some(Event::Up(d)) = event_of(s, self.kind) {
                        self.alive.insert(d.exporter, d);
                    }
                }
            }
            if let Some(cur) = self.current {
                if !self.alive.contains_key(&cur) {
                    self.lost_pending.get_or_insert_with(Instant::now);
                }
            }
            return Ok(());
        }
        while let Ok(ev) = self.events.try_recv() {
            match ev {
                Event::Up(d) => {
                    if self.recover
                        && self.current == Some(d.exporter)
                        && (self.lost_pending.is_some() || self.lost_told)
                    {
                        // The followed exporter is back after a cut.
                        self.recover_pending = true;
                    }
                    self.alive.insert(d.exporter, d);
                }
                Event::Down(id) => {
                    self.alive.remove(&id);
                    if self.current == Some(id) {
                        self.lost_pending.get_or_insert_with(Instant::now);
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks one sample and publishes it (or the gap before it). Returns whether the
    /// source closed.
    fn deliver(&mut self, sample: &Sample) -> Result<bool, BridgeError> {
        let h = match self.check(sample) {
            Ok(h) => h,
            Err(r) => {
                self.counters.reject(r);
                return Ok(false);
            }
        };
        if let Some(next) = self.next {
            if self.recover && self.current == Some(h.exporter) && h.number > next {
                // Messages of the followed exporter were lost on the way (a cut past the
                // lease, a reconnect): ask its cache for them first.
                if self.recover_from(h.exporter, next)? {
                    return Ok(true);
                }
                if self.next.is_some_and(|n| h.number < n) {
                    self.counters.add(DUPLICATES, 1);
                    return Ok(false);
                }
            }
        }
        self.publish_sample(h, sample)
    }

    /// Asks the exporter's cache for every message from `from` on and publishes the
    /// replies, checked as samples are, in order (what the cache no longer held is one
    /// exact gap). Returns whether the end of the stream was among them.
    fn recover_from(&mut self, exporter: u64, from: u64) -> Result<bool, BridgeError> {
        self.counters.add(RECOVERIES, 1);
        self.dup_floor = Some(from);
        let replies = self
            .session
            .get(format!("{}?from={from}", cache_key(&self.key, exporter)))
            .consolidation(ConsolidationMode::None)
            .target(QueryTarget::All)
            .allowed_destination(Locality::Remote)
            .timeout(RECOVER_TIMEOUT)
            .with(FifoChannel::new(self.replies))
            .wait()
            .map_err(|e| BridgeError::Zenoh(format!("recovery query: {e}")))?;
        let end = Instant::now() + RECOVER_TIMEOUT + Duration::from_secs(1);
        while Instant::now() < end && !self.stop.load(Ordering::Relaxed) {
            // Live samples are set aside meanwhile (and handled after, duplicates
            // dropped): left in their full queue they would hold Zenoh's reception of
            // this link, and the replies behind them would never arrive. What is set
            // aside is bounded by what was in flight: the exporter answers the query
            // in the thread that puts.
            while let Some(live) = self.queue.try_recv() {
                self.stash.push_back(live);
            }
            let reply = match replies.recv_timeout(RECOVER_POLL) {
                Ok(Some(reply)) => reply,
                Ok(None) => continue,
                Err(_) => break, // every reply is in
            };
            let Ok(sample) = reply.result() else { continue };
            match self.check(sample) {
                Ok(h) if h.exporter == exporter => {
                    let closed = self.publish_sample(h, sample)?;
                    if h.flags & FLAG_END == 0 {
                        self.counters.add(RECOVERED, 1);
                    }
                    if closed {
                        return Ok(true);
                    }
                }
                Ok(_) => self.counters.reject(Reject::Foreign),
                Err(r) => self.counters.reject(r),
            }
        }
        Ok(false)
    }

    /// Publishes a checked sample (or the gap before it). Returns whether the source
    /// closed.
    fn publish_sample(&mut self, h: SampleHeader, sample: &Sample) -> Result<bool, BridgeError> {
        let switched = self.current != Some(h.exporter);
        if switched {
            self.current = Some(h.exporter);
            self.counters.add(EXPORTERS, 1);
        }
        let local_next = self.publisher()?.next_message();
        // Where this source number lands locally: the import keeps its source's numbers
        // (`offset` stays 0) unless a restarted source numbers from 0 again.
        let target = match self.offset {
            None => {
                // The first message: the import starts at its source's number, with
                // nothing reported missed (it joined the stream here).
                if h.number > 0 && local_next == 0 {
                    self.publisher()?.start_at(h.number)?;
                }
                self.offset = Some(0);
                h.number.max(local_next)
            }
            Some(off) => match h.number.checked_add(off) {
                Some(t) if t >= local_next => t,
                _ => {
                    // A new exporter on a source that restarted its numbering: what it
                    // published before this message was missed; local numbers go on.
                    self.offset = Some(local_next);
                    local_next.saturating_add(h.number)
                }
            },
        };
        // (`start_at` moved the local numbering: read it again.)
        let gap = target.saturating_sub(self.publisher()?.next_message());
        if self.lost_pending.is_some() {
            self.lost_pending = if self.alive.contains_key(&h.exporter) {
                None // a new exporter took over before anyone was told
            } else {
                Some(Instant::now()) // the gone exporter's last data: the grace restarts
            };
        }
        if self.lost_told {
            self.lost_told = false;
            self.publisher()?.upstream_restored()?;
        }
        if gap > 0 {
            self.counters.add(MISSED, gap);
            self.publisher()?.gap(gap)?;
        }
        if h.flags & FLAG_END != 0 {
            // Closes the local broadcast: subscribers get `Closed` after the rest.
            self.publisher = None;
            return Ok(true);
        }
        let payload = sample.payload().to_bytes();
        if let Some((every, at)) = &mut self.pace {
            let now = Instant::now();
            if *at > now {
                std::thread::sleep(*at - now);
            }
            *at = (*at).max(now) + *every;
        }
        let stop = self.stop.clone();
        self.publisher()?.publish(&payload, &stop)?;
        self.next = Some(h.number.saturating_add(1));
        self.counters.add(DELIVERED, 1);
        self.counters.add(BYTES, payload.len() as u64);
        Ok(false)
    }

    /// Whether a sample may be delivered: its header, mode, schema, length, exporter and
    /// number.
    fn check(&self, sample: &Sample) -> Result<SampleHeader, Reject> {
        let att = sample.attachment().ok_or(Reject::Header)?;
        let h = SampleHeader::decode(&att.to_bytes())?;
        if h.mode != self.mode {
            return Err(Reject::Mode);
        }
        if h.schema != self.schema {
            return Err(Reject::Schema);
        }
        let len = sample.payload().len() as u64;
        if len > self.max_message || (h.flags & FLAG_END != 0 && len > 0) {
            return Err(Reject::TooLong);
        }
        match self.current {
            Some(cur) if cur == h.exporter && self.next.is_some_and(|next| h.number < next) => {
                return Err(if self.dup_floor.is_some_and(|f| h.number >= f) {
                    Reject::Duplicate
                } else {
                    Reject::Regressing
                });
            }
            Some(cur) if cur == h.exporter => {}
            // Another exporter while the followed one lives, or one never announced.
            Some(cur) if self.alive.contains_key(&cur) => return Err(Reject::Foreign),
            _ if !self.alive.contains_key(&h.exporter) => return Err(Reject::Foreign),
            _ => {}
        }
        Ok(h)
    }
}
