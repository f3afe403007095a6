//! Channels across hosts: a local channel's messages carried to one receiver on another
//! host, with back-pressure end to end.
//!
//! The exporter is the local channel's receiver (of one ring); the importer creates a
//! channel on its host and is its sender. The stream is a reliable export on the
//! [wire](crate::wire) (descriptor kind `1`): numbered, cached for recovery across cuts,
//! put with `CongestionControl::Block`. What holds the local sender back when the far
//! receiver is slow: the far ring fills, the importer's send waits, its bounded queue
//! fills, Zenoh's delivery and then the link stop, the exporter's put waits and it stops
//! reading the local ring, which fills, and the local sender waits within its own
//! timeouts. The exporter takes nothing from the local ring while no importer matches the
//! key, so messages sent before the far side is there wait in the ring, not on the wire.
//!
//! One importer per channel export: a second one is refused ([`BridgeError::Taken`]).
//! What the far receiver cannot be told: a gap (a cut longer than the exporter's cache
//! loses messages; the importer counts them in [`ImportStats::missed`]) and the sender's
//! death (the far channel closes, as when the sender closes).

use shm_core::{Channel, ChannelOptions, Error, Receiver, Sender, SharedMemory, TryRecvError};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use zenoh::Wait as _;

use crate::export::{random_id, Next, Source, POLL};
use crate::import::{start_import, Handle, Sink};
use crate::wire::{Descriptor, Kind, TOKEN_CHUNK};
use crate::{BridgeError, ExportOptions, Exporter, ImportOptions, ImportStats};

/// The key chunk after `@shm` under which a channel's importer declares its token.
const RX_CHUNK: &str = "rx";

struct ChannelSource<M: SharedMemory> {
    rx: Receiver<M>,
    /// The number of the next message read.
    next: u64,
}

impl<M: SharedMemory + Send + Sync + 'static> Source for ChannelSource<M> {
    fn needs_match(&self) -> bool {
        true
    }
    fn next(&mut self, buf: &mut Vec<u8>) -> Result<Next, BridgeError> {
        let r = match self.rx.try_recv_into(buf) {
            Err(TryRecvError::Empty) => self.rx.recv_into_timeout(buf, POLL).map_err(Error::from),
            r => r.map_err(Error::from),
        };
        match r {
            Ok(_) => {
                self.next += 1;
                Ok(Next::Message(self.next - 1))
            }
            Err(Error::Timeout { .. } | Error::Empty) => Ok(Next::Idle),
            // The far channel closes either way (it cannot be told a death).
            Err(Error::Closed | Error::PeerDied { .. }) => Ok(Next::Closed(self.next)),
            Err(e) => Err(e.into()),
        }
    }
}

/// Exports a local channel: the export is the receiving end of `ring` (so no other
/// receiver may hold it), and one [`ChannelImporter`] on another host its far end.
///
/// Back-pressure holds end to end: the far ring fills, the importer's send waits, its
/// bounded queue fills, Zenoh's delivery and then the link stop, the exporter's put
/// waits and it stops reading the local ring, which fills, and the local sender waits
/// within its own timeouts. The exporter takes nothing from the local ring while no
/// importer matches the key. A second importer is refused ([`BridgeError::Taken`]). What
/// the far receiver cannot be told: a gap (a cut longer than the cache; the importer
/// counts it in [`ImportStats::missed`]) and the sender's death (the far channel closes,
/// as when the sender closes).
///
/// Its recovery cache ([`ExportOptions::cache`]) counts bytes only unless a message
/// bound is set: with back-pressure through the link, what is in flight when a cut
/// closes the session is whatever Zenoh's queues and the sockets held (measured on
/// loopback: about 85,000 eight-byte messages), and a cut the cache covers loses nothing.
///
/// # Errors
/// [`BridgeError::Shm`] when the receiving end cannot be taken (`RoleTaken`,
/// `NoSuchRing`, `ReadOnly`); [`BridgeError::Zenoh`] for a bad key.
pub fn export_channel<M>(
    session: &zenoh::Session,
    channel: &Channel<M>,
    ring: u32,
    opts: &ExportOptions,
) -> Result<Exporter, BridgeError>
where
    M: SharedMemory + Send + Sync + 'static,
{
    let mut rx = channel.receiver(ring)?;
    rx.set_wait(opts.wait_mode());
    let desc = Descriptor {
        kind: Kind::Channel,
        exporter: random_id(),
        mode: shm_core::BroadcastMode::Reliable,
        max_message: channel.max_message(),
        schema: channel.schema(),
    };
    let source = ChannelSource { rx, next: 0 };
    Exporter::start_source(session, source, desc, opts)
}

struct ChannelSink<M: SharedMemory> {
    tx: Sender<M>,
    next: u64,
}

impl<M: SharedMemory + Send + Sync + 'static> Sink for ChannelSink<M> {
    fn next_message(&self) -> u64 {
        self.next
    }
    fn start_at(&mut self, n: u64) -> Result<(), BridgeError> {
        self.next = n;
        Ok(())
    }
    fn gap(&mut self, n: u64) -> Result<(), BridgeError> {
        self.next = self.next.saturating_add(n); // counted by the import; not sayable
        Ok(())
    }
    fn upstream_lost(&mut self) -> Result<(), BridgeError> {
        Ok(())
    }
    fn upstream_restored(&mut self) -> Result<(), BridgeError> {
        Ok(())
    }
    fn publish(&mut self, payload: &[u8], stop: &AtomicBool) -> Result<(), BridgeError> {
        // The try first: while the far ring has room no deadline is computed.
        match self.tx.try_send(payload) {
            Ok(()) => {
                self.next += 1;
                return Ok(());
            }
            Err(shm_core::TrySendError::Full) => {}
            Err(e) => return Err(Error::from(e).into()),
        }
        // Waits while the far ring is full (back-pressure), in slices, so that a stop
        // ends the wait.
        loop {
            match self.tx.send_timeout(payload, POLL) {
                Ok(()) => {
                    self.next += 1;
                    return Ok(());
                }
                Err(shm_core::SendTimeoutError::Timeout { .. }) => {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(()); // the import is stopping: its channel closes
                    }
                }
                Err(e) => return Err(Error::from(e).into()),
            }
        }
    }
}

/// A running channel import: a local channel (created by
/// [`start`](ChannelImporter::start)) whose sending end is the import; its receiver gets
/// the remote channel's messages in order, each once. See [`export_channel`](crate::export_channel).
pub struct ChannelImporter<M: SharedMemory> {
    channel: Channel<M>,
    handle: Handle,
    _token: zenoh::liveliness::LivelinessToken,
}

impl<M> ChannelImporter<M>
where
    M: SharedMemory + Send + Sync + 'static,
{
    /// Waits for a channel exporter on the key, creates the local channel (ring capacity
    /// `capacity`, or by default what [`ChannelOptions::for_messages`] gives for the
    /// announced largest message) in the memory `make(len)` returns, and starts.
    ///
    /// # Errors
    /// [`BridgeError::Taken`] when another importer already takes this channel;
    /// [`BridgeError::NoExporter`]; [`BridgeError::TooLarge`] when the announced message
    /// exceeds [`ImportOptions::max_message`] or does not fit `capacity`;
    /// [`BridgeError::Shm`]`(SchemaMismatch)` for another record type;
    /// [`BridgeError::Memory`] from `make`.
    pub fn start<F>(
        session: &zenoh::Session,
        opts: &ImportOptions,
        capacity: Option<u64>,
        make: F,
    ) -> Result<ChannelImporter<M>, BridgeError>
    where
        F: FnOnce(u64) -> Result<M, Box<dyn std::error::Error + Send + Sync>>,
    {
        let key = crate::check_key(opts.key())?;
        let z = |what: &str, e: zenoh::Error| BridgeError::Zenoh(format!("{what}: {e}"));
        let taken = session
            .liveliness()
            .get(format!("{key}/{TOKEN_CHUNK}/{RX_CHUNK}/*"))
            .timeout(Duration::from_secs(1))
            .wait()
            .map_err(|e| z("liveliness get", e))?;
        if taken.recv().is_ok() {
            return Err(BridgeError::Taken { key });
        }
        let token = session
            .liveliness()
            .declare_token(format!(
                "{key}/{TOKEN_CHUNK}/{RX_CHUNK}/{:016x}",
                random_id()
            ))
            .wait()
            .map_err(|e| z("declare the importer's token", e))?;
        let (handle, channel) = start_import(session, opts, Kind::Channel, |first| {
            let copts = match capacity {
                Some(c) => ChannelOptions::new().capacity(c),
                None => ChannelOptions::for_messages(first.max_message.max(1)),
            }
            .schema(first.schema);
            let len = copts.segment_len()?;
            let mem = make(len).map_err(|e| BridgeError::Memory(e.to_string()))?;
            let channel = Channel::create(mem, &copts)?;
            if channel.max_message() < first.max_message {
                return Err(BridgeError::TooLarge {
                    announced: first.max_message,
                    limit: channel.max_message(),
                });
            }
            let tx = channel.sender(0)?;
            Ok((ChannelSink { tx, next: 0 }, channel))
        })?;
        Ok(ChannelImporter {
            channel,
            handle,
            _token: token,
        })
    }
}

impl<M: SharedMemory> ChannelImporter<M> {
    /// The local channel (its receiver is ring 0's).
    pub fn channel(&self) -> &Channel<M> {
        &self.channel
    }
    /// What the exporter announced.
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
    /// Waits until the import ends by itself: the remote channel closed and every
    /// message was sent on locally (then the local channel closes too).
    ///
    /// # Errors
    /// What ended it: [`BridgeError::Shm`], [`BridgeError::Zenoh`].
    pub fn join(mut self) -> Result<ImportStats, BridgeError> {
        self.handle.finish()
    }
    /// Stops importing (the local channel closes).
    ///
    /// # Errors
    /// As [`join`](Self::join), for an import that had already failed.
    pub fn stop(mut self) -> Result<ImportStats, BridgeError> {
        self.handle.stop()
    }
}

impl<M: SharedMemory> std::fmt::Debug for ChannelImporter<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelImporter")
            .field("descriptor", &self.descriptor())
            .field("stats", &self.stats())
            .finish()
    }
}
