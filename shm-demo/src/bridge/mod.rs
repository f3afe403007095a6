//! `shm-demo bridge export | import | list`: a broadcast carried to another host over
//! Zenoh (the `shm-zenoh` crate), each side runnable in its own terminal; and the
//! one-command `broadcast --via zenoh`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_core::{Broadcast, BroadcastMode};
use shm_memfd::{MemfdOptions, Server};
use shm_posix::ShmOptions;
use shm_zenoh::{BridgeConfig, ExportOptions, Exporter, ImportOptions, ImportStats, Importer};

use crate::host::{self, Backend, Mem};
use crate::util::{free_port, Failure, Json, Result};

mod export;
mod import;
mod list;
mod service;
mod via;

pub use via::broadcast_via_zenoh;

/// Where a bridge joins the Zenoh network.
#[derive(clap::Args, Debug, Clone)]
pub struct Net {
    /// Listen on a Zenoh endpoint (tcp/127.0.0.1:7447); repeatable.
    #[arg(long)]
    listen: Vec<String>,
    /// Connect to a Zenoh endpoint (tcp/HOST:7447); repeatable. Retried until it answers.
    #[arg(long)]
    connect: Vec<String>,
    /// Zenoh link lease in milliseconds: how late a dead link or host is noticed.
    #[arg(long)]
    lease_ms: Option<u64>,
}

impl Net {
    fn open(&self) -> Result<zenoh::Session> {
        let mut c = BridgeConfig::new();
        for e in &self.listen {
            c = c.listen(e);
        }
        for e in &self.connect {
            c = c.connect(e);
        }
        if let Some(ms) = self.lease_ms {
            c = c.lease(Duration::from_millis(ms));
        }
        c.open().map_err(zerr)
    }
}

/// The `bridge` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BridgeCmd {
    /// Export a local broadcast (a POSIX name, or a memfd server's socket) on a Zenoh key.
    #[command(
        after_help = "Example:\n  shm-demo --backend posix bridge export --name /cam --key shm/cam --listen tcp/127.0.0.1:7447"
    )]
    Export {
        /// The local broadcast: a POSIX segment name, or (memfd) the server's socket.
        #[arg(long)]
        name: String,
        /// The Zenoh key to put on.
        #[arg(long)]
        key: String,
        /// Send each message at once (lower latency) instead of batching.
        #[arg(long)]
        express: bool,
        /// The local segment is a channel (`send --name`): the export becomes its receiver
        /// and one importer elsewhere its far end, with back-pressure end to end.
        #[arg(long)]
        channel: bool,
        /// Reliable exports: messages kept for importers that lost some across a cut
        /// (0 turns the cache off; default 8192 for a broadcast, unbounded for a
        /// channel, whose cache counts bytes).
        #[arg(long)]
        cache_messages: Option<usize>,
        /// Reliable exports: at most this many MiB of cached payload.
        #[arg(long, default_value_t = shm_zenoh::CACHE_BYTES >> 20)]
        cache_mib: u64,
        #[command(flatten)]
        net: Net,
    },
    /// Import a Zenoh key into a local broadcast (a POSIX name, or a memfd served on a
    /// socket) that local subscribers attach to as to any publisher.
    #[command(
        after_help = "Example:\n  shm-demo --backend posix bridge import --key shm/cam --name /cam_remote --connect tcp/127.0.0.1:7447"
    )]
    Import {
        /// The Zenoh key.
        #[arg(long)]
        key: String,
        /// The local broadcast to create: a POSIX name, or (memfd) the socket to serve it on.
        #[arg(long)]
        name: String,
        /// Samples queued between Zenoh and the local publisher.
        #[arg(long, default_value_t = 256)]
        queue: usize,
        /// Seconds to wait for an exporter to appear.
        #[arg(long, default_value_t = 60)]
        wait_exporter: u64,
        /// Publish at most this many messages per second locally (a throttled importer,
        /// for trying lossy streams).
        #[arg(long)]
        throttle: Option<f64>,
        /// Do not ask the exporter's cache for messages lost across a cut (every loss is
        /// a `Lagged` at once).
        #[arg(long)]
        no_recovery: bool,
        /// Import a channel export (`export --channel`) into a local channel whose one
        /// receiver gets its messages (`receive --name`).
        #[arg(long)]
        channel: bool,
        #[command(flatten)]
        net: Net,
    },
    /// Serve a named posix service to clients on other hosts: its servers answer
    /// requests that arrive as Zenoh queries on the key.
    #[command(
        after_help = "Example:\n  shm-demo --backend posix bridge export-service --name /calc --key shm/calc --listen tcp/0.0.0.0:7447"
    )]
    ExportService {
        /// The local service (a POSIX name).
        #[arg(long)]
        name: String,
        /// The Zenoh key.
        #[arg(long)]
        key: String,
        /// Calls forwarded at once (each one client of the local service).
        #[arg(long, default_value_t = 4)]
        workers: usize,
        #[command(flatten)]
        net: Net,
    },
    /// Make a remote service local: a POSIX service whose requests are answered by the
    /// servers behind an `export-service` on another host.
    #[command(
        after_help = "Example:\n  shm-demo --backend posix bridge import-service --key shm/calc --name /calc_remote --connect tcp/HOST:7447"
    )]
    ImportService {
        /// The Zenoh key.
        #[arg(long)]
        key: String,
        /// The local service to create (a POSIX name).
        #[arg(long)]
        name: String,
        /// Seconds to wait for an exporter to appear.
        #[arg(long, default_value_t = 60)]
        wait_exporter: u64,
        /// Requests forwarded at once (each one server of the local service).
        #[arg(long, default_value_t = 4)]
        workers: usize,
        #[command(flatten)]
        net: Net,
    },
    /// Measure plain Zenoh against the bridge in one run (throughput and round trips);
    /// the bridge's own throughput is `broadcast --via zenoh --subscribers 1`.
    #[command(
        after_help = "Example:\n  shm-demo bridge bench --what raw --messages 100000 --size 64\n  shm-demo bridge bench --what rtt-bridge --messages 2000 --size 64"
    )]
    Bench {
        #[arg(long, value_enum)]
        what: crate::zbench::What,
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        #[arg(long, default_value = "64", value_parser = crate::util::parse_size)]
        size: u64,
        /// rtt-bridge: how long exporters and subscribers spin before they sleep, in µs
        /// (default: the library's defaults, which leave the CPU to Zenoh).
        #[arg(long)]
        spin_us: Option<u64>,
    },
    /// Internal: the second process of `bridge bench`.
    #[command(hide = true)]
    BenchPeer {
        #[arg(long, value_enum)]
        role: crate::zbench::Role,
        #[arg(long)]
        listen: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        messages: u64,
        #[arg(long)]
        size: u64,
        #[arg(long)]
        spin_us: String,
    },
    /// List the exports reachable on the network: key, mode, schema, rate.
    #[command(after_help = "Example:\n  shm-demo bridge list --connect tcp/127.0.0.1:7447")]
    List {
        /// Seconds to measure each export's rate.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        #[command(flatten)]
        net: Net,
    },
}

/// Closes a session gracefully (its queued messages go out first), within 10 s.
fn close(session: zenoh::Session) {
    use zenoh::Wait as _;
    let _ = session.close().wait(); // Zenoh bounds it (10 s by default)
}

fn zerr(e: shm_zenoh::BridgeError) -> Failure {
    match e {
        shm_zenoh::BridgeError::Shm(e) => crate::errors::core(e),
        e => Failure::new(e.to_string()),
    }
}

/// Runs a `bridge` subcommand.
pub fn run(backend: Option<Backend>, cmd: &BridgeCmd, json: bool) -> Result<()> {
    match cmd {
        BridgeCmd::Export {
            name,
            key,
            express,
            channel,
            cache_messages,
            cache_mib,
            net,
        } => {
            let bytes = cache_mib.saturating_mul(1 << 20);
            let opts = ExportOptions::new(key).express(*express);
            let opts = match cache_messages {
                Some(m) => opts.cache(*m, bytes),
                None => opts.cache_bytes(bytes),
            };
            export::run(need(backend)?, name, *channel, &opts, key, net, json)
        }
        BridgeCmd::Import {
            key,
            name,
            queue,
            wait_exporter,
            throttle,
            no_recovery,
            channel,
            net,
        } => {
            let mut opts = ImportOptions::new(key)
                .queue(*queue)
                .wait_exporter(Duration::from_secs(*wait_exporter))
                .evict_timeout(Duration::from_secs(10))
                .recovery(!*no_recovery);
            if let Some(hz) = throttle {
                opts = opts.max_rate(*hz);
            }
            if *channel {
                need_posix(backend)?;
                import::run_channel(key, name, &opts, net, json)
            } else {
                import::run(need(backend)?, key, name, &opts, net, json)
            }
        }
        BridgeCmd::List { seconds, net } => list::run(*seconds, net, json),
        BridgeCmd::ExportService {
            name,
            key,
            workers,
            net,
        } => {
            need_posix(backend)?;
            service::export(name, key, *workers, net, json)
        }
        BridgeCmd::ImportService {
            key,
            name,
            wait_exporter,
            workers,
            net,
        } => {
            need_posix(backend)?;
            service::import(
                key,
                name,
                Duration::from_secs(*wait_exporter),
                *workers,
                net,
                json,
            )
        }
        BridgeCmd::Bench {
            what,
            messages,
            size,
            spin_us,
        } => crate::zbench::run(*what, *messages, *size, *spin_us),
        BridgeCmd::BenchPeer {
            role,
            listen,
            key,
            messages,
            size,
            spin_us,
        } => crate::zbench::peer(*role, listen, key, *messages, *size, spin_us.parse().ok()),
    }
}

fn need_posix(backend: Option<Backend>) -> Result<()> {
    match backend {
        Some(Backend::Posix) => Ok(()),
        _ => Err(Failure::new(
            "bridge export-service, import-service and import --channel need --backend posix",
        )
        .hint("a service is found by its POSIX name")),
    }
}

fn need(backend: Option<Backend>) -> Result<Backend> {
    match backend {
        Some(b @ (Backend::Posix | Backend::Memfd)) => Ok(b),
        _ => Err(
            Failure::new("bridge export and import need --backend posix or memfd")
                .hint("anon memory has no name another process could find"),
        ),
    }
}

/// Opens the broadcast at `name` (a POSIX name, or a memfd server's socket).
fn open_local(backend: Backend, name: &str) -> Result<Mem> {
    host::open(&match backend {
        Backend::Memfd => host::Endpoint::Socket(PathBuf::from(name)),
        _ => host::Endpoint::Name(name.to_owned()),
    })
}

/// Serves a memfd's descriptor to every process that connects to `path`, until `stop`.
pub fn serve_memfd(
    path: &Path,
    mem: &Mem,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    crate::util::remember_path(path);
    let server = Server::bind(path)?;
    let fd = mem
        .memfd_fd()
        .ok_or_else(|| Failure::new("not a memfd"))?
        .try_clone_to_owned()
        .map_err(|e| Failure::new(format!("dup: {e}")))?;
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("memfd-server".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if server
                    .serve_one_timeout(&fd, Duration::from_millis(50))
                    .is_err()
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            drop(server);
            crate::util::forget_path(&path);
        })
        .map_err(|e| Failure::new(format!("thread: {e}")))
}

/// Creates an import's POSIX segment. One already there whose writer is gone (an
/// importer that was killed: its readers hold the old segment and were told) is unlinked
/// and made anew; `writer` reads the writer's pid from the old segment (`None`: it is
/// not one we could read, left alone). A live one is left alone (the error says so).
fn create_replacing_dead(
    name: &str,
    len: u64,
    writer: impl FnOnce(shm_posix::PosixShm) -> Option<u32>,
) -> std::result::Result<shm_posix::PosixShm, shm_posix::Error> {
    let first = match ShmOptions::new(name).size(len).create() {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    let dead = ShmOptions::new(name)
        .open()
        .ok()
        .and_then(writer)
        .is_some_and(|pid| {
            pid == 0 || shm_core::os::proc::liveness(pid) == shm_core::os::proc::Liveness::Dead
        });
    if !dead {
        return Err(first);
    }
    shm_posix::unlink(name)?;
    ShmOptions::new(name).size(len).create()
}

/// This process's peak resident memory (VmHWM), in KiB (0 if unknown).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| {
            st.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn stats_json(j: Json, s: &ImportStats) -> Json {
    j.num("delivered", s.delivered)
        .num("bytes", s.bytes)
        .num("missed", s.missed)
        .num("upstream_lost", s.upstream_lost)
        .num("exporters", s.exporters)
        .num("rejected", s.rejected())
        .num("rejected_header", s.rejected_header)
        .num("rejected_magic", s.rejected_magic)
        // Every counter `rejected` sums is listed (the mode's was left out: the sum was
        // more than the listed parts).
        .num("rejected_mode", s.rejected_mode)
        .num("rejected_schema", s.rejected_schema)
        .num("rejected_too_long", s.rejected_too_long)
        .num("rejected_regressing", s.rejected_regressing)
        .num("rejected_foreign", s.rejected_foreign)
        .num("recovered", s.recovered)
        .num("duplicates", s.duplicates)
        .num("recoveries", s.recoveries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rejected` is the sum of the `rejected_*` counters the line lists (issue 29, item
    /// 15: the mode's counter was missing, so 17 rejected showed 14 in the parts).
    #[test]
    fn rejected_is_the_sum_of_the_listed_counters() {
        let s = ImportStats {
            rejected_header: 1,
            rejected_magic: 2,
            rejected_mode: 3,
            rejected_schema: 4,
            rejected_too_long: 5,
            rejected_regressing: 6,
            rejected_foreign: 7,
            ..Default::default()
        };
        let line = stats_json(Json::new(), &s).finish();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let parts: u64 = v
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("rejected_"))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum();
        assert_eq!(v["rejected"].as_u64(), Some(parts));
        assert_eq!(parts, 28);
    }
}
