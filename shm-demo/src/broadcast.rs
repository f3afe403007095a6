//! One publisher to N subscriber processes: every subscriber verifies order and checksums
//! and reports its delivered rate; over a broadcast segment (reliable or lossy) or over N
//! Unix sockets (what users would otherwise write). The publisher is pinned to CPU 0 and
//! the subscribers share CPU 1 (on a machine with two cores, N + 1 processes share two).

use crate::cli::Ctx;
use crate::role::{Role, RoleArgs};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use shm_core::{Broadcast, BroadcastMode, BroadcastOptions};

use crate::cli::BackendArg;
use crate::host::{self, Mem};
use crate::msg::{verify, Maker, MIN_SIZE};
use crate::util::{Failure, Json, Result};

/// How long the publisher waits for its subscribers to join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

fn line(
    received: u64,
    missed: u64,
    verified: bool,
    seconds: f64,
    problem: Option<String>,
) -> String {
    let mut j = Json::new()
        .num("pid", std::process::id())
        .num("received", received)
        .num("missed", missed)
        .bool("verified", verified)
        .float("seconds", seconds);
    if let Some(p) = problem {
        j = j.str("problem", &p);
    }
    j.finish()
}

/// A subscriber process: joins, then receives until the publisher closes, verifying each
/// message; counts what a lossy broadcast made it miss.
pub fn subscribe_role(mem: Mem, messages: u64, size: u64) -> String {
    // The publisher has CPU 0 to itself; subscribers share the other core(s).
    host::pin_to_cpu(1);
    let run = || -> std::result::Result<String, shm_core::Error> {
        let b = Broadcast::attach(mem)?;
        let mut s = b.subscriber()?;
        let mut buf = Vec::with_capacity(size as usize);
        let (mut received, mut missed) = (0u64, 0u64);
        let mut follow = crate::msg::Follow::default();
        let mut start = None;
        let mut problem = None;
        loop {
            match s.recv_into(&mut buf) {
                Ok(_) => {
                    let n = s.last_number().unwrap_or_default();
                    start.get_or_insert_with(Instant::now);
                    if let Err(p) = follow.numbered(&buf, n, size as usize) {
                        problem = Some(p);
                        break;
                    }
                    received += 1;
                }
                Err(shm_core::RecvError::Lagged { missed: m }) => {
                    missed += m;
                    follow.missed(m);
                }
                Err(shm_core::RecvError::Closed) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let seconds = start.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let whole = received + missed == messages;
        let reliable = b.mode() == BroadcastMode::Reliable;
        if problem.is_none() && !whole {
            problem = Some(format!(
                "{received} received + {missed} missed of {messages}"
            ));
        }
        if problem.is_none() && reliable && missed > 0 {
            problem = Some(format!("a reliable subscriber missed {missed} message(s)"));
        }
        let verified = problem.is_none();
        Ok(line(received, missed, verified, seconds, problem))
    };
    match run() {
        Ok(l) => l,
        Err(e) => Json::new().str("error", &e.to_string()).finish(),
    }
}

/// Subscriber reports, and the publisher's own time.
struct Outcome {
    lines: Vec<String>,
    publish_seconds: f64,
}

/// The demo's broadcast options for `size`-byte messages: the ring the library recommends
/// for this message size on this machine, lossy or reliable, a 10 s eviction timeout.
pub fn options(size: u64, lossy: bool) -> BroadcastOptions {
    let mode = if lossy {
        BroadcastMode::Lossy
    } else {
        BroadcastMode::Reliable
    };
    BroadcastOptions::for_messages(size)
        .mode(mode)
        .evict_timeout(Duration::from_secs(10))
}

/// A broadcast made with `opts` in new memory of `backend`.
pub fn create(backend: host::Backend, opts: &BroadcastOptions) -> Result<Broadcast<Mem>> {
    let len = opts.segment_len()?;
    let mem = host::create(backend, len)?;
    Broadcast::create(mem, opts).map_err(crate::errors::core)
}

/// How the publisher publishes.
#[derive(Clone, Copy, Debug)]
pub struct Publishing {
    /// Lossy (never waits) rather than reliable.
    pub lossy: bool,
    /// Each message written in place into its slot (`reserve`, `write`, `commit`) rather
    /// than copied in by `publish`.
    pub zero_copy: bool,
}

fn shm_broadcast(
    backend: host::Backend,
    subscribers: u32,
    messages: u64,
    size: u64,
    how: Publishing,
) -> Result<Outcome> {
    let b = create(
        backend,
        &options(size, how.lossy).max_subscribers(subscribers.max(1)),
    )?;
    let role = RoleArgs::new(Role::Subscribe).count(messages).size(size);
    let mut peers = Vec::new();
    for _ in 0..subscribers {
        peers.push(host::start_peer(
            backend,
            b.raw().memory(),
            role,
            |r, m| subscribe_role(m, r.count, r.size),
        )?);
    }
    let t = Instant::now();
    while b.subscriber_count() < subscribers {
        if t.elapsed() > JOIN_TIMEOUT {
            return Err(Failure::new(format!(
                "only {} of {subscribers} subscribers joined within {JOIN_TIMEOUT:?}",
                b.subscriber_count()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    host::pin_to_cpu(0);
    let mut p = b.publisher()?;
    let mut maker = Maker::new(size as usize);
    let t = Instant::now();
    for n in 0..messages {
        let m = maker.make(n);
        if how.zero_copy {
            // The maker's bytes are the producer's work, written straight into the slot.
            let slot = p.reserve(m.len())?;
            slot.write(0, m).map_err(crate::errors::core)?;
            slot.commit();
        } else {
            p.publish(m)?;
        }
    }
    let publish_seconds = t.elapsed().as_secs_f64();
    drop(p);
    let lines = peers
        .into_iter()
        .map(|peer| peer.finish())
        .collect::<Result<Vec<_>>>()?;
    Ok(Outcome {
        lines,
        publish_seconds,
    })
}

/// The same over N Unix socket pairs: the publisher writes every message to every
/// socket; each forked subscriber reads and verifies.
fn unix_broadcast(subscribers: u32, messages: u64, size: u64) -> Result<Outcome> {
    let mut socks = Vec::new();
    let mut children = Vec::new();
    for _ in 0..subscribers {
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| Failure::new(format!("socketpair: {e}")))?;
        #[allow(unsafe_code)]
        // SAFETY: the demo has one thread when it forks; the child only reads its socket,
        // uses its own heap and writes its report.
        let peer = unsafe {
            host::fork_peer(|| {
                host::pin_to_cpu(1);
                let mut theirs = &theirs;
                let mut buf = vec![0u8; size as usize];
                let mut start = None;
                let mut out = String::new();
                for n in 0..messages {
                    if let Err(e) = theirs.read_exact(&mut buf) {
                        out = line(n, 0, false, 0.0, Some(e.to_string()));
                        break;
                    }
                    start.get_or_insert_with(Instant::now);
                    if let Err(p) = verify(&buf, n, size as usize) {
                        out = line(n, 0, false, 0.0, Some(p));
                        break;
                    }
                }
                if out.is_empty() {
                    let secs = start.map_or(0.0, |t: Instant| t.elapsed().as_secs_f64());
                    out = line(messages, 0, true, secs, None);
                }
                out
            })
        }?;
        drop(theirs);
        socks.push(ours);
        children.push(peer);
    }
    host::pin_to_cpu(0);
    let mut maker = Maker::new(size as usize);
    let t = Instant::now();
    for n in 0..messages {
        let m = maker.make(n);
        for s in &mut socks {
            s.write_all(m)
                .map_err(|e| Failure::new(format!("write: {e}")))?;
        }
    }
    let publish_seconds = t.elapsed().as_secs_f64();
    drop(socks);
    let mut lines = Vec::new();
    for peer in children {
        lines.push(peer.finish()?);
    }
    Ok(Outcome {
        lines,
        publish_seconds,
    })
}

pub fn run(
    backend: BackendArg,
    subscribers: u32,
    messages: u64,
    size: u64,
    how: Publishing,
    via_zenoh: bool,
    json: bool,
) -> Result<()> {
    let lossy = how.lossy;
    if size < MIN_SIZE {
        return Err(Failure::new(format!("--size {size} is too small"))
            .hint("messages carry an 8-byte sequence number: use --size 8 or more"));
    }
    if size > 16 << 20 {
        return Err(Failure::new(format!("--size {size} is too large")).hint("at most 16MiB"));
    }
    if !(1..=64).contains(&subscribers) || messages == 0 {
        return Err(Failure::new(
            "--subscribers must be 1 to 64 and --messages at least 1",
        ));
    }
    if how.zero_copy && via_zenoh {
        return Err(Failure::new(
            "--zero-copy publishes locally: not with --via zenoh",
        ));
    }
    let name = format!("{backend:?}").to_lowercase();
    let mut import = None;
    let outcome = match backend.shm() {
        Some(b @ (host::Backend::Posix | host::Backend::Memfd)) if via_zenoh => {
            let bc = create(b, &options(size, lossy))?;
            let o = crate::bridge::broadcast_via_zenoh(b, bc, subscribers, messages, size)?;
            import = Some((o.import, o.export));
            Outcome {
                lines: o.lines,
                publish_seconds: o.publish_seconds,
            }
        }
        _ if via_zenoh => return Err(Failure::new("--via zenoh runs on posix or memfd")),
        None if how.zero_copy => {
            return Err(Failure::new(
                "--zero-copy publishes into a broadcast segment: posix, anon or memfd",
            ))
        }
        Some(b) => shm_broadcast(b, subscribers, messages, size, how)?,
        None if backend == BackendArg::Unix && !lossy && !how.zero_copy => {
            unix_broadcast(subscribers, messages, size)?
        }
        None => {
            return Err(Failure::new(
                "broadcast runs on posix, anon, memfd, or unix (reliable only)",
            ))
        }
    };
    let mut slowest = f64::INFINITY;
    let (mut missed, mut verified) = (0u64, true);
    let mut problems = Vec::new();
    for l in &outcome.lines {
        crate::util::parse_peer_line(l)?;
        let num = |k| crate::util::json_num(l, k).unwrap_or(0.0);
        let received = num("received");
        let secs = num("seconds");
        let rate = if secs > 0.0 { received / secs } else { 0.0 };
        slowest = slowest.min(rate);
        missed += num("missed") as u64;
        if !l.contains("\"verified\":true") {
            verified = false;
            problems.push(
                l.split("\"problem\":\"")
                    .nth(1)
                    .unwrap_or("unknown")
                    .trim_end_matches("\"}")
                    .to_owned(),
            );
        }
    }
    let publisher_rate = if outcome.publish_seconds > 0.0 {
        messages as f64 / outcome.publish_seconds
    } else {
        0.0
    };
    let mode = if lossy { "lossy" } else { "reliable" };
    let via = if via_zenoh { "zenoh" } else { "local" };
    if json {
        let mut j = Json::new().str("backend", &name).str("via", via);
        if let Some((i, e)) = &import {
            j = j.raw("import", i).raw("export", e);
        }
        println!(
            "{}",
            j.str("mode", mode)
                .bool("zero_copy", how.zero_copy)
                .num("subscribers", subscribers)
                .num("messages", messages)
                .num("size", size)
                .float("msgs_per_s", slowest)
                .float("gib_per_s", slowest * size as f64 / f64::from(1u32 << 30))
                .float("publisher_msgs_per_s", publisher_rate)
                .num("missed", missed)
                .bool("verified", verified)
                .machine()
                .finish()
        );
    } else {
        if let Some((i, e)) = &import {
            println!("exporter: {e}\nimporter: {i}");
        }
        println!(
            "broadcast {name} ({mode}, via {via}): {messages} messages of {size} B to {subscribers} subscriber(s): slowest subscriber {slowest:.0} msgs/s, publisher {publisher_rate:.0} msgs/s, missed {missed}, {}",
            if verified { "all verified" } else { "NOT verified" }
        );
    }
    if !verified {
        return Err(Failure::new(format!(
            "broadcast {name}: {}",
            problems.join("; ")
        )));
    }
    Ok(())
}

/// How a broadcast reaches its subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Straight from the shared segment.
    Local,
    /// Through an exporter, Zenoh on loopback and an importer.
    Zenoh,
}

/// One publisher to N subscriber processes: each subscriber verifies order and
/// checksums and reports its rate (reliable: no gap; --lossy: counts what it missed);
/// --backend unix writes every message to N Unix sockets instead.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  shm-demo --backend posix broadcast --subscribers 4 --messages 100000 --size 64 --json"
)]
pub struct Args {
    /// Subscriber processes (1 to 64).
    #[arg(long, default_value_t = 2)]
    subscribers: u32,
    /// Messages to publish.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Bytes per message (at least 8).
    #[arg(long, default_value = "64", value_parser = crate::util::parse_size)]
    size: u64,
    /// The publisher never waits; slow subscribers are told what they missed.
    #[arg(long)]
    lossy: bool,
    /// Write each message in place into its slot (`reserve`, `write`, `commit`) instead
    /// of `publish` copying it in (posix, anon, memfd; local).
    #[arg(long)]
    zero_copy: bool,
    /// `zenoh`: publisher -> exporter process -> Zenoh (127.0.0.1) -> importer
    /// process -> subscriber processes (posix or memfd).
    #[arg(long, value_enum, default_value = "local")]
    via: Via,
}

impl Args {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        use BackendArg::*;
        let b = ctx.require_one_of(
            &[Posix, Anon, Memfd, Unix],
            "broadcast needs --backend: posix, anon, memfd or unix",
        )?;
        run(
            b,
            self.subscribers,
            self.messages,
            self.size,
            Publishing {
                lossy: self.lossy,
                zero_copy: self.zero_copy,
            },
            self.via == Via::Zenoh,
            ctx.json,
        )
    }
}
