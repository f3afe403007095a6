//! `shm-demo bridge export | import | list`: a broadcast carried to another host over
//! Zenoh (the `shm-zenoh` crate), each side runnable in its own terminal; and the
//! one-command `broadcast --via zenoh`.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_core::{Broadcast, BroadcastMode};
use shm_memfd::{MemfdOptions, Server};
use shm_posix::ShmOptions;
use shm_zenoh::{BridgeConfig, ExportOptions, Exporter, ImportOptions, ImportStats, Importer};

use crate::host::{self, Backend, Mem};
use crate::util::{free_port, Failure, Json, Result};

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
            net,
        } => export(need(backend)?, name, key, *express, net, json),
        BridgeCmd::Import {
            key,
            name,
            queue,
            wait_exporter,
            throttle,
            net,
        } => import(
            need(backend)?,
            key,
            name,
            *queue,
            Duration::from_secs(*wait_exporter),
            *throttle,
            net,
            json,
        ),
        BridgeCmd::List { seconds, net } => list(*seconds, net, json),
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

fn export(
    backend: Backend,
    name: &str,
    key: &str,
    express: bool,
    net: &Net,
    json: bool,
) -> Result<()> {
    let b = Broadcast::attach(open_local(backend, name)?)?;
    let session = net.open()?;
    let exporter =
        Exporter::start(&session, b, &ExportOptions::new(key).express(express)).map_err(zerr)?;
    let say = |line: String| {
        println!("{line}");
        let _ = std::io::stdout().flush();
    };
    if json {
        say(Json::new()
            .str("event", "exporting")
            .str("key", key)
            .num("exporter", exporter.id())
            .finish());
    } else {
        say(format!(
            "exporting {name} on key {key} (exporter {:016x}); import it with: shm-demo --backend posix bridge import --key {key} --name /NAME --connect ENDPOINT",
            exporter.id()
        ));
    }
    let mut matched = false;
    let mut last = Instant::now();
    while !exporter.is_finished() {
        crate::util::check_interrupted()?;
        std::thread::sleep(Duration::from_millis(10));
        if exporter.matched() != matched {
            matched = !matched;
            if json {
                say(Json::new()
                    .str("event", "matched")
                    .bool("matched", matched)
                    .finish());
            } else {
                say(format!(
                    "importer {}",
                    if matched { "connected" } else { "gone" }
                ));
            }
        }
        if !json && last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let s = exporter.stats();
            say(format!("sent {} messages, {} B", s.sent, s.bytes));
        }
    }
    let s = exporter.join().map_err(zerr)?;
    // A graceful close sends what Zenoh still queues (the last messages and the end of
    // the stream) before the process exits.
    close(session);
    let line = Json::new()
        .str("event", "done")
        .num("sent", s.sent)
        .num("bytes", s.bytes)
        .num("lagged", s.lagged)
        .num("evicted", s.evicted)
        .num("peak_rss_kib", peak_rss_kib())
        .finish();
    if json {
        say(line);
    } else {
        say(format!("the source closed: {line}"));
    }
    Ok(())
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

/// Creates the import's POSIX segment; a broadcast already there whose publisher is gone
/// (an importer that was killed: its subscribers hold the old segment and were told
/// `PeerDied`) is unlinked and made anew. A live one is left alone (the error says so).
fn create_replacing_dead(
    name: &str,
    len: u64,
) -> std::result::Result<shm_posix::PosixShm, shm_posix::Error> {
    let first = match ShmOptions::new(name).size(len).create() {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    let dead = ShmOptions::new(name)
        .open()
        .ok()
        .and_then(|m| Broadcast::attach(m).ok())
        .and_then(|b| b.state().ok())
        .is_some_and(|st| {
            st.publisher_pid == 0
                || shm_core::os::proc::liveness(st.publisher_pid)
                    == shm_core::os::proc::Liveness::Dead
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
        .num("rejected_schema", s.rejected_schema)
        .num("rejected_too_long", s.rejected_too_long)
        .num("rejected_regressing", s.rejected_regressing)
        .num("rejected_foreign", s.rejected_foreign)
}

#[allow(clippy::too_many_arguments)]
fn import(
    backend: Backend,
    key: &str,
    name: &str,
    queue: usize,
    wait_exporter: Duration,
    throttle: Option<f64>,
    net: &Net,
    json: bool,
) -> Result<()> {
    let session = net.open()?;
    let mut opts = ImportOptions::new(key)
        .queue(queue)
        .wait_exporter(wait_exporter)
        .evict_timeout(Duration::from_secs(10));
    if let Some(hz) = throttle {
        opts = opts.max_rate(hz);
    }
    let owned = name.to_owned();
    let importer = Importer::start(&session, &opts, move |len| {
        Ok(match backend {
            Backend::Memfd => {
                Mem::Memfd(MemfdOptions::new().name("shm-import").size(len).create()?)
            }
            _ => {
                crate::util::remember_segment(&owned);
                Mem::Posix(create_replacing_dead(&owned, len)?)
            }
        })
    })
    .map_err(zerr)?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = match backend {
        Backend::Memfd => Some(serve_memfd(
            Path::new(name),
            importer.broadcast().raw().memory(),
            stop.clone(),
        )?),
        _ => None,
    };
    let d = importer.descriptor();
    let say = |line: String| {
        println!("{line}");
        let _ = std::io::stdout().flush();
    };
    let mode = match d.mode {
        BroadcastMode::Reliable => "reliable",
        BroadcastMode::Lossy => "lossy",
    };
    if json {
        say(Json::new()
            .str("event", "importing")
            .str("key", key)
            .str("name", name)
            .str("mode", mode)
            .str("schema", d.schema.name())
            .num("max_message", d.max_message)
            .finish());
    } else {
        let sub = match backend {
            Backend::Memfd => format!("--backend memfd ... --socket {name}"),
            _ => format!("--backend posix subscribe --name {name}"),
        };
        say(format!(
            "importing key {key} into {name} ({mode}, {} messages of at most {} B); subscribe with: shm-demo {sub}",
            d.schema.name(),
            d.max_message
        ));
    }
    let mut last = Instant::now();
    let mut lost = 0;
    let result = loop {
        if crate::util::interrupted() {
            break Err(Failure::new("interrupted"));
        }
        if importer.is_finished() {
            break Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
        let s = importer.stats();
        if s.upstream_lost != lost {
            lost = s.upstream_lost;
            if json {
                say(Json::new().str("event", "upstream_lost").finish());
            } else {
                say("the exporter is gone; subscribers were told (UpstreamLost); waiting for it to come back".into());
            }
        }
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            if json {
                say(stats_json(Json::new().str("event", "progress"), &s).finish());
            } else {
                say(format!(
                    "delivered {} messages, missed {}, rejected {}",
                    s.delivered,
                    s.missed,
                    s.rejected()
                ));
            }
        }
    };
    let s = match result {
        Ok(()) => importer.join().map_err(zerr),
        Err(e) => {
            let _ = importer.stop();
            Err(e)
        }
    };
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = server {
        let _ = t.join();
    }
    if backend == Backend::Posix {
        crate::util::forget_segment(name);
    }
    let s = s?;
    say(stats_json(Json::new().str("event", "done"), &s)
        .num("peak_rss_kib", peak_rss_kib())
        .finish());
    Ok(())
}

fn list(seconds: f64, net: &Net, json: bool) -> Result<()> {
    let session = net.open()?;
    // Let the session meet its peers before asking.
    std::thread::sleep(Duration::from_millis(500));
    let window = Duration::from_secs_f64(seconds.clamp(0.0, 3600.0));
    let exports = shm_zenoh::list(&session, window).map_err(zerr)?;
    if !json {
        println!(
            "{:<30} {:>16} {:<9} {:<12} {:>12} {:>12}",
            "key", "exporter", "mode", "schema", "max_message", "rate/s"
        );
    }
    for e in &exports {
        let mode = match e.mode {
            BroadcastMode::Reliable => "reliable",
            BroadcastMode::Lossy => "lossy",
        };
        if json {
            println!(
                "{}",
                Json::new()
                    .str("key", &e.key)
                    .str("exporter", &format!("{:016x}", e.exporter))
                    .str("mode", mode)
                    .str("schema", e.schema.name())
                    .num("schema_version", e.schema.version())
                    .num("schema_size", e.schema.size())
                    .num("max_message", e.max_message)
                    .float("rate", e.rate)
                    .finish()
            );
        } else {
            println!(
                "{:<30} {:016x} {:<9} {:<12} {:>12} {:>12.1}",
                e.key,
                e.exporter,
                mode,
                e.schema.name(),
                e.max_message,
                e.rate
            );
        }
    }
    if !json && exports.is_empty() {
        println!("(no exports reachable)");
    }
    Ok(())
}

/// A child demo process: its stdout lines arrive on a channel, its stderr is kept for
/// the error message; ended with SIGTERM (its handler removes what it made) on drop.
struct Proc {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    err: std::sync::Arc<std::sync::Mutex<String>>,
    what: &'static str,
}

impl Proc {
    fn start(what: &'static str, args: &[String]) -> Result<Proc> {
        let mut child = host::spawn_demo(args)?;
        let out = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(std::result::Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let e2 = err.clone();
        let mut stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            *e2.lock().expect("not poisoned") = s;
        });
        Ok(Proc {
            child,
            lines,
            err,
            what,
        })
    }

    fn failure(&mut self, what: String) -> Failure {
        // Its stderr is complete once it has exited (give the reader a moment).
        std::thread::sleep(Duration::from_millis(50));
        let err = self.err.lock().expect("not poisoned").trim().to_owned();
        Failure::new(format!(
            "{what}{}",
            if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            }
        ))
    }

    /// The next stdout line with `"event":"<event>"` (others are skipped), within
    /// `timeout`; fails when the process ends first.
    fn wait_event(&mut self, event: &str, timeout: Duration) -> Result<String> {
        let want = format!("\"event\":\"{event}\"");
        let end = Instant::now() + timeout;
        let mut seen = String::new();
        loop {
            crate::util::check_interrupted()?;
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l.contains(&want) => return Ok(l),
                Ok(l) => seen = l,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    return Err(self.failure(format!("the {} ended before '{event}'", self.what)));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() > end => {
                    return Err(self.failure(format!(
                        "the {} said no '{event}' within {timeout:?} (last: {seen})",
                        self.what
                    )));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Whether it has exited (and how).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Its last stdout line once it exits, within `timeout`.
    fn last_line(&mut self, timeout: Duration) -> Result<String> {
        let end = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            crate::util::check_interrupted()?;
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => last = l,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    if last.is_empty() {
                        return Err(self.failure(format!("the {} printed nothing", self.what)));
                    }
                    return Ok(last);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() > end => {
                    return Err(
                        self.failure(format!("the {} did not end within {timeout:?}", self.what))
                    );
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// SIGTERM, then SIGKILL if it has not ended within 5 s; reaped.
    fn end(&mut self) {
        if self.exited().is_some() {
            return;
        }
        crate::util::terminate(self.child.id());
        let end = Instant::now() + Duration::from_secs(5);
        while self.exited().is_none() {
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.end();
    }
}

/// How long a bridge process may take to start and meet its peer.
const START: Duration = Duration::from_secs(30);

/// What `broadcast --via zenoh` measured.
pub struct ViaOutcome {
    pub lines: Vec<String>,
    pub publish_seconds: f64,
    pub import: String,
    pub export: String,
}

/// `broadcast --via zenoh`: publisher (here) → exporter process → Zenoh on loopback →
/// importer process → `subscribers` subscriber processes.
pub fn broadcast_via_zenoh(
    backend: Backend,
    b: shm_core::Broadcast<Mem>,
    subscribers: u32,
    messages: u64,
    size: u64,
) -> Result<ViaOutcome> {
    let stop = Arc::new(AtomicBool::new(false));
    let (src_name, server) = match backend {
        Backend::Memfd => {
            let p = host::socket_path();
            let t = serve_memfd(&p, b.raw().memory(), stop.clone())?;
            (p.to_string_lossy().into_owned(), Some(t))
        }
        _ => (
            b.raw().memory().posix_name().expect("posix").to_owned(),
            None,
        ),
    };
    let dst_name = match backend {
        Backend::Memfd => host::socket_path().to_string_lossy().into_owned(),
        _ => format!("/shm-demo-import-{}-{}", std::process::id(), free_port()?),
    };
    let key = format!("shm-demo/{}/{}", std::process::id(), free_port()?);
    let endpoint = format!("tcp/127.0.0.1:{}", free_port()?);
    let s = |v: &str| v.to_owned();
    let run = || -> Result<ViaOutcome> {
        let mut publisher = b.publisher()?;
        // When the network is the bottleneck the publisher mostly waits for room: let it
        // sleep instead of spinning, so that the CPU goes to the processes moving data.
        publisher.set_wait(shm_core::WaitMode::Block {
            spin: Duration::from_micros(2),
        });
        let mut exporter = Proc::start(
            "exporter",
            &[
                s("--backend"),
                s(backend.name()),
                s("--json"),
                s("bridge"),
                s("export"),
                s("--name"),
                src_name.clone(),
                s("--key"),
                key.clone(),
                s("--listen"),
                endpoint.clone(),
            ],
        )?;
        exporter.wait_event("exporting", START)?;
        let mut importer = Proc::start(
            "importer",
            &[
                s("--backend"),
                s(backend.name()),
                s("--json"),
                s("bridge"),
                s("import"),
                s("--key"),
                key.clone(),
                s("--name"),
                dst_name.clone(),
                s("--connect"),
                endpoint.clone(),
                s("--wait-exporter"),
                s("30"),
            ],
        )?;
        importer.wait_event("importing", START)?;
        exporter.wait_event("matched", START)?;
        let mut peers = Vec::new();
        for _ in 0..subscribers {
            let at = match backend {
                Backend::Memfd => [s("--socket"), dst_name.clone()],
                _ => [s("--name"), dst_name.clone()],
            };
            let mut args = vec![s("--backend"), s(backend.name()), s("peer")];
            args.extend(at);
            args.extend([
                s("--role"),
                s("subscribe"),
                s("--count"),
                messages.to_string(),
                s("--size"),
                size.to_string(),
            ]);
            peers.push(Proc::start("subscriber", &args)?);
        }
        // Every subscriber has joined the import before the first message.
        let watch = Broadcast::attach(open_local(backend, &dst_name)?)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while watch.subscriber_count() < subscribers {
            crate::util::check_interrupted()?;
            if Instant::now() > deadline {
                return Err(Failure::new(
                    "the subscribers did not join the import within 30 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut maker = crate::msg::Maker::new(size as usize);
        let start = Instant::now();
        for n in 0..messages {
            crate::util::check_interrupted()?;
            publisher.publish(maker.make(n))?;
        }
        let publish_seconds = start.elapsed().as_secs_f64();
        drop(publisher); // the close travels to the importer, which closes the import
                         // Every wait from here is bounded: the exporter ends once it read everything and
                         // put the end on the network, the importer once it published that, the
                         // subscribers once they read it. One that dies says why.
        let bound = Duration::from_secs(60)
            .max(Duration::from_secs_f64(messages as f64 * size as f64 / 1e6));
        let export = exporter.wait_event("done", bound)?;
        let import = importer.wait_event("done", bound)?;
        let mut lines = Vec::new();
        for mut p in peers {
            lines.push(p.last_line(bound)?);
        }
        Ok(ViaOutcome {
            lines,
            publish_seconds,
            import,
            export,
        })
    };
    let r = run();
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = server {
        let _ = t.join();
    }
    r
}
