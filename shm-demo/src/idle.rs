//! `shm-demo idle`: what a waiting side costs. A blocked receiver or subscriber in
//! another process (CPU time over a sleep), and parked async receivers in one runtime.

use crate::cli::Ctx;
use crate::role::{Role, RoleArgs};
use std::time::{Duration, Instant};

use shm_core::{Channel, ChannelOptions, WaitMode};

use crate::asyncio::runtime;
use crate::host::{self, Mem};
use crate::measure::cpu_time;
use crate::util::{Failure, Json, Result};

/// A broadcast subscriber waiting on an empty broadcast for `ms` milliseconds: how much
/// CPU it used.
pub fn idle_subscriber_role(mem: Mem, ms: u64) -> String {
    let run = || -> std::result::Result<(Duration, Duration), shm_core::Error> {
        let b = shm_core::Broadcast::attach(mem)?;
        let mut s = b.subscriber()?;
        let (cpu0, t0) = (cpu_time(), Instant::now());
        let mut buf = Vec::new();
        match s.recv_into_timeout(&mut buf, Duration::from_millis(ms)) {
            Err(shm_core::RecvTimeoutError::Timeout { .. }) => {
                Ok((cpu_time() - cpu0, t0.elapsed()))
            }
            Err(e) => Err(e.into()),
            Ok(_) => Err(shm_core::Error::Corrupt {
                what: "a message on an idle broadcast",
                found: 0,
            }),
        }
    };
    match run() {
        Ok((cpu, wall)) => Json::new()
            .num("pid", std::process::id())
            .num("cpu_us", cpu.as_micros())
            .num("wall_us", wall.as_micros())
            .finish(),
        Err(e) => Json::new().str("error", &e.to_string()).finish(),
    }
}

/// A receiver blocked on an empty channel for `ms` milliseconds: how much CPU it used.
pub fn idle_role(mem: Mem, ms: u64) -> String {
    let run = || -> std::result::Result<(Duration, Duration), shm_core::Error> {
        let chan = Channel::attach(mem)?;
        let mut rx = chan.receiver(0)?;
        rx.set_wait(WaitMode::default());
        let (cpu0, t0) = (cpu_time(), Instant::now());
        let outcome = match rx.recv_timeout(Duration::from_millis(ms)) {
            Err(shm_core::RecvTimeoutError::Timeout { .. }) => {
                Ok((cpu_time() - cpu0, t0.elapsed()))
            }
            Err(e) => Err(e.into()),
            Ok(_) => Err(shm_core::Error::Corrupt {
                what: "a message on an idle channel",
                found: 0,
            }),
        };
        outcome
    };
    match run() {
        Ok((cpu, wall)) => Json::new()
            .num("pid", std::process::id())
            .num("cpu_us", cpu.as_micros())
            .num("wall_us", wall.as_micros())
            .finish(),
        Err(e) => Json::new().str("error", &e.to_string()).finish(),
    }
}

/// Measures the CPU an idle blocked receiver (a channel receiver, or with `broadcast` a
/// broadcast subscriber) uses over `seconds`.
pub fn idle(backend: host::Backend, seconds: u64, broadcast: bool, json: bool) -> Result<()> {
    let ms = seconds * 1000;
    let role = RoleArgs::new(if broadcast {
        Role::IdleSubscriber
    } else {
        Role::Idle
    })
    .count(ms);
    let peer;
    // The live sender or publisher the peer waits on, held until it is done.
    let keep: Box<dyn std::any::Any>;
    if broadcast {
        let opts = shm_core::BroadcastOptions::new();
        let len = opts.segment_len()?;
        let mem = host::create(backend, len)?;
        let b = shm_core::Broadcast::create(mem, &opts)?;
        peer = host::start_peer(backend, b.raw().memory(), role, |r, m| {
            idle_subscriber_role(m, r.count)
        })?;
        keep = Box::new(b.publisher()?);
    } else {
        let mem = host::create(backend, 64 * 1024)?;
        let chan = Channel::create(mem, &ChannelOptions::new())?;
        peer = host::start_peer(backend, chan.raw().memory(), role, |r, m| {
            idle_role(m, r.count)
        })?;
        keep = Box::new(chan.sender(0)?);
    }
    let line = peer.finish()?;
    drop(keep);
    crate::util::parse_peer_line(&line)?;
    let cpu = crate::util::json_num(&line, "cpu_us").unwrap_or(0.0);
    let wall = crate::util::json_num(&line, "wall_us").unwrap_or(1.0);
    let pct = 100.0 * cpu / wall;
    if json {
        println!(
            "{}",
            Json::new()
                .str("backend", backend.name())
                .str("what", if broadcast { "broadcast" } else { "channel" })
                .float("seconds", wall / 1e6)
                .float("cpu_seconds", cpu / 1e6)
                .float("cpu_percent", pct)
                .finish()
        );
    } else {
        println!(
            "idle {}: a {} blocked for {:.1} s used {:.1} ms of CPU ({pct:.3}% of one core)",
            backend.name(),
            if broadcast {
                "broadcast subscriber"
            } else {
                "channel receiver"
            },
            wall / 1e6,
            cpu / 1e3
        );
    }
    Ok(())
}

/// Resident memory of this process, in bytes (`/proc/self/statm`).
fn resident_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * shm_core::os::mapping::page_size() as u64
}

/// What `idle --async` measured.
pub struct IdleReport {
    pub receivers: usize,
    pub seconds: f64,
    pub cpu_percent: f64,
    pub bytes_per_receiver: f64,
    pub reactor_threads: usize,
}

/// `receivers` channels (anon, 4 KiB rings), their senders held open and silent; one
/// tokio task per receiver awaiting `recv_async` on a current-thread runtime. Once all are
/// parked: the CPU the whole process uses over `seconds`, and the memory each parked
/// receiver adds (task, future, reactor entry and thread share; the channels' own pages
/// are made before the first count).
pub fn idle_receivers(receivers: usize, seconds: u64) -> Result<IdleReport> {
    let opts = shm_core::ChannelOptions::new().capacity(4096);
    let len = opts.segment_len()?;
    let mut ends = Vec::with_capacity(receivers);
    for _ in 0..receivers {
        let mem = host::create(host::Backend::Anon, len)?;
        let chan = shm_core::Channel::create(mem, &opts)?;
        let tx = chan.sender(0)?;
        let rx = chan.receiver(0)?;
        ends.push((tx, rx));
    }
    let rt = runtime();
    let before = resident_bytes();
    let (tx_all, rx_all): (Vec<_>, Vec<_>) = ends.into_iter().unzip();
    let report = rt.block_on(async move {
        let tasks: Vec<_> = rx_all
            .into_iter()
            .map(|mut rx| {
                rx.set_wait(shm_core::WaitMode::Block {
                    spin: std::time::Duration::ZERO,
                });
                tokio::spawn(async move { rx.recv_async().await.map(|m| m.len()) })
            })
            .collect();
        // Let every task run once and park.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let parked = resident_bytes();
        let (cpu0, t0) = (cpu_time(), Instant::now());
        tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
        let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
        let threads = shm_core::os::reactor::threads();
        drop(tx_all); // closes every channel: the tasks end with Closed
        for t in tasks {
            let _ = t.await;
        }
        IdleReport {
            receivers,
            seconds: wall.as_secs_f64(),
            cpu_percent: 100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
            bytes_per_receiver: parked.saturating_sub(before) as f64 / receivers.max(1) as f64,
            reactor_threads: threads,
        }
    });
    Ok(report)
}

/// `idle --async-receivers N`: runs [`idle_receivers`] and prints the report.
pub fn idle_run(receivers: usize, seconds: u64, json: bool) -> Result<()> {
    if receivers == 0 || receivers > 100_000 {
        return Err(Failure::new("--async-receivers must be 1 to 100000"));
    }
    let r = idle_receivers(receivers, seconds)?;
    if json {
        println!(
            "{}",
            crate::util::Json::new()
                .str("what", "async receivers")
                .num("receivers", r.receivers as u64)
                .float("seconds", r.seconds)
                .float("cpu_percent", r.cpu_percent)
                .float("bytes_per_receiver", r.bytes_per_receiver)
                .num("reactor_threads", r.reactor_threads as u64)
                .finish()
        );
    } else {
        println!(
            "idle async: {} receivers parked in one tokio runtime for {:.1} s: {:.3}% of one core for the whole process, {:.0} bytes per parked receiver, {} reactor threads",
            r.receivers, r.seconds, r.cpu_percent, r.bytes_per_receiver, r.reactor_threads
        );
    }
    Ok(())
}

/// CPU used by a receiver blocked on an empty channel (spins 50 µs, then sleeps on a
/// futex, waking every 20 ms to check its peer).
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  shm-demo --backend posix idle --seconds 5")]
pub struct Args {
    /// How long the receiver waits.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Measure a broadcast subscriber instead of a channel receiver.
    #[arg(long)]
    broadcast: bool,
    /// Measure N receivers parked as tokio tasks awaiting `recv_async` in one
    /// runtime (this process; anon channels): CPU, and memory per parked receiver.
    #[arg(long, value_name = "N")]
    async_receivers: Option<usize>,
}

impl Args {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        if let Some(n) = self.async_receivers {
            return idle_run(n, self.seconds, ctx.json);
        }
        let b = ctx.require_shm("idle needs a shared-memory backend: posix, anon or memfd")?;
        idle(b, self.seconds, self.broadcast, ctx.json)
    }
}
