//! Beyond one host: export a local broadcast (or a request/response service) over
//! [Zenoh](https://zenoh.io) and import it on another machine, unchanged for its
//! subscribers (or clients).
//!
//! Shared memory ends at the host; Zenoh carries what crosses hosts (peer to peer, no
//! broker, its own routing, batching and reliability). This crate writes no network
//! protocol of its own: an [`Exporter`] subscribes to a local broadcast and puts each
//! message on a Zenoh key, with a 32-byte header in the sample's attachment (the
//! source's message number, the exporter's identity, the record schema's fingerprint:
//! [`wire`] documents it byte by byte); an [`Importer`] subscribes to the key and
//! republishes into a local broadcast segment (any backend) that local subscribers
//! attach to exactly as they would to a local publisher.
//!
//! * **Order and gaps.** Subscribers of an import get the exporter's messages in order,
//!   each once, under the source's own message numbers; every gap in them (a lossy drop,
//!   a reconnect, an exporter restart) is one `Lagged { missed }` with the exact count,
//!   and a local subscriber that falls behind the import's ring still counts exactly.
//! * **Recovery across cuts.** A reliable export keeps its last messages
//!   ([`ExportOptions::cache`]: by default 8,192 messages or 64 MiB). An importer that
//!   lost some (a link cut past the Zenoh lease, a reconnect) asks the exporter's cache
//!   for them with a Zenoh query ([`wire`] describes it) and publishes them in order
//!   before the live stream: its subscribers see no gap for a cut the cache covers, and
//!   past it one exact `Lagged` for what the cache no longer held. While its live
//!   exporter sends nothing for a second, an importer asks anyway (an end of stream lost
//!   in a cut, a route gone quiet): an idle stream costs one empty query a second. A
//!   channel's cache counts bytes only. A cut shorter than the
//!   lease loses nothing either way: the link holds, the exporter's put waits, and the
//!   local publisher is held back within its eviction timeout.
//! * **Services.** A [`ServiceExporter`] serves a local request/response service to
//!   remote clients (a Zenoh queryable; one worker per call in flight) and a
//!   [`ServiceImporter`] makes it local on another host: requests travel as Zenoh
//!   queries with their remaining deadline, responses (streams too) as replies; a cut
//!   link or a dead host is `Timeout` at the client's deadline, never a hang. See the
//!   [`service` module's notes](ServiceImporter).
//! * **Types.** The exporter's liveliness token carries the schema (name, version, size,
//!   alignment); an importer that expects another type fails with `SchemaMismatch`
//!   before it creates anything, and samples of another schema are dropped.
//! * **Liveness.** One liveliness token per export. When it goes (the exporter stopped,
//!   its process died, its link or host went quiet past the Zenoh lease), the import's
//!   subscribers get `UpstreamLost` once; messages resume when an exporter is back.
//!   [`list`] shows what is exported on the network.
//! * **No loops.** An import is a [relayed](shm_core::BroadcastOptions::relayed)
//!   broadcast and exporters refuse relayed broadcasts; exporters send to remote
//!   sessions only and importers take remote samples only (`Locality::Remote`).
//! * **Bounded memory.** Reliable: the exporter's put blocks when the network is slow,
//!   so the local publisher is held back by the broadcast's own rules; the exporter's
//!   cache holds at most its byte bound plus about 64 bytes per message (payloads are
//!   shared with Zenoh, not copied), the importer's recovery replies queue as its samples
//!   do; the importer's
//!   queue is bounded and, when full, holds Zenoh's delivery. Lossy: Zenoh drops and the
//!   importer's ring drops the oldest; the gaps are counted.
//! * **Hostile input.** Short, malformed, too long, regressing, foreign or mistyped
//!   samples are counted ([`ImportStats`]) and dropped, never published, never a panic.
//!
//! ```no_run
//! use std::time::Duration;
//! use shm_core::{Broadcast, BroadcastOptions};
//! use shm_zenoh::{BridgeConfig, ExportOptions, Exporter, ImportOptions, Importer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Host A: a local broadcast, exported on the key `shm/cam`.
//! let opts = BroadcastOptions::for_messages(64);
//! let mem = shm_posix::ShmOptions::new("/cam").size(opts.segment_len()?).create()?;
//! let cam = Broadcast::create(mem, &opts)?;
//! let a = BridgeConfig::new().listen("tcp/127.0.0.1:7447").open()?;
//! let exporter = Exporter::start(&a, cam.clone(), &ExportOptions::new("shm/cam"))?;
//!
//! // Host B: imported into `/cam_remote`, where local subscribers attach as usual.
//! let b = BridgeConfig::new().connect("tcp/127.0.0.1:7447").open()?;
//! let importer = Importer::start(&b, &ImportOptions::new("shm/cam"), |len| {
//!     Ok(shm_posix::ShmOptions::new("/cam_remote").size(len).create()?)
//! })?;
//! let mut sub = Broadcast::attach(shm_posix::ShmOptions::new("/cam_remote").open()?)?.subscriber()?;
//! cam.publisher()?.publish(b"frame")?;
//! let mut buf = Vec::new();
//! sub.recv_into_timeout(&mut buf, Duration::from_secs(5))?;
//! # drop((exporter, importer)); Ok(()) }
//! ```

mod channel;
mod export;
mod import;
mod list;
mod service;
mod session;
pub mod wire;

pub use channel::{export_channel, ChannelImporter};
pub use export::{
    ExportOptions, ExportStats, Exporter, CACHE_BYTES, CACHE_MESSAGES, EXPORTER_SPIN, LINGER,
    LINGER_AWAY,
};
pub use import::{ImportOptions, ImportStats, Importer};
pub use list::{list, list_services, Export, ServiceExport};
pub use service::{
    ServiceExportOptions, ServiceExporter, ServiceImportOptions, ServiceImporter, ServiceStats,
    REMOTE_REFUSED, REMOTE_UNREACHABLE,
};
pub use session::BridgeConfig;

use std::time::Duration;

/// What can go wrong in a bridge.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The local broadcast (or the memory under it) said no.
    #[error(transparent)]
    Shm(#[from] shm_core::Error),
    /// Zenoh said no: a bad key or endpoint, a session that cannot open.
    #[error("zenoh: {0}")]
    Zenoh(String),
    /// The local memory for an import could not be made.
    #[error("cannot make the import's memory: {0}")]
    Memory(String),
    /// The broadcast is an import (relayed): exporting it again would make a loop.
    #[error("this broadcast is relayed (an import): bridges never export it again, which would make a loop")]
    Relayed,
    /// The exporter announced messages larger than the importer takes
    /// ([`ImportOptions::max_message`]).
    #[error("the exporter announces messages of up to {announced} bytes; this importer takes at most {limit}")]
    TooLarge {
        /// What the exporter announced.
        announced: u64,
        /// The importer's limit.
        limit: u64,
    },
    /// No exporter appeared on the key in time.
    #[error("no exporter on key {key:?} within {waited:?}")]
    NoExporter {
        /// The key.
        key: String,
        /// How long the importer waited.
        waited: Duration,
    },
    /// A channel export already has its importer (a channel has one receiver).
    #[error(
        "the channel on key {key:?} is already imported elsewhere (a channel has one receiver)"
    )]
    Taken {
        /// The key.
        key: String,
    },
    /// A key that cannot carry an export.
    #[error("bad key {key:?}: {why}")]
    Key {
        /// The key.
        key: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// `now + wait`, or a year from now for a wait past what an `Instant` holds (a caller's
/// `Duration::MAX`): never the overflow panic.
pub(crate) fn after(wait: Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// Checks an export key: a plain key expression (no wildcards, no `@` chunks, no empty
/// chunks), which Zenoh accepts.
pub(crate) fn check_key(key: &str) -> Result<String, BridgeError> {
    let bad = |why| BridgeError::Key {
        key: key.to_owned(),
        why,
    };
    if key.is_empty() || key.split('/').any(str::is_empty) {
        return Err(bad("expected chunks separated by single '/', none empty"));
    }
    if key.contains(['*', '$', '?', '#', '@']) {
        return Err(bad(
            "expected no wildcard or '@' (a plain key such as shm/cam)",
        ));
    }
    zenoh::key_expr::KeyExpr::try_from(key.to_owned())
        .map_err(|_| bad("Zenoh does not accept it as a key expression"))?;
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_checked() {
        assert!(super::check_key("shm/cam").is_ok());
        for bad in ["", "/shm", "shm//cam", "shm/*", "shm/**", "shm/@x", "a/b/"] {
            assert!(super::check_key(bad).is_err(), "{bad}");
        }
    }
}
