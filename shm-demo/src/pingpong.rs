//! Round-trip latency between two processes: shared memory against Unix sockets and pipes.

use crate::cli::Ctx;
use crate::role::{Role, RoleArgs};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shm_core::{Channel, ChannelOptions, Segment};

use crate::cli::BackendArg;
use crate::host::{self, Mem};
use crate::measure::{histogram, payload, warmup, Wait};
use crate::util::{fmt_duration, Failure, Json, Result};

/// The floor's segment: one word on one cache line, bounced between the two processes
/// (odd values from the pinger, even values from the ponger).
type Lines = [u64; 8];
const WORD: usize = 0;

/// How long one side waits for the other before it calls the peer dead.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Spins until `word` holds `want`; gives up after PEER_TIMEOUT.
fn spin_until(word: &std::sync::atomic::AtomicU64, want: u64) -> bool {
    let mut spins = 0u32;
    let mut started: Option<Instant> = None;
    // Acquire: pairs with the peer's Release store of `want`.
    while word.load(std::sync::atomic::Ordering::Acquire) != want {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(65_536) {
            let s = *started.get_or_insert_with(Instant::now);
            if s.elapsed() > PEER_TIMEOUT {
                return false;
            }
        }
    }
    true
}

/// Where the floor's payload buffers start (ping at `PAYLOAD_AT`, pong after it), for
/// payloads larger than the word.
const PAYLOAD_AT: usize = 128;

/// The floor's answering side: for each ping `2i - 1`, copy the ping payload out and the
/// pong payload in (plain `memcpy`, when `size > 8`), then answer `2i`.
#[allow(unsafe_code)]
pub fn floor_pong(mem: Mem, total: u64, size: u64) -> String {
    host::pin_to_cpu(1);
    let seg = match Segment::<Lines, _>::attach(mem) {
        Ok(s) => s,
        Err(e) => return Json::new().str("error", &e.to_string()).finish(),
    };
    let Ok(word) = seg.raw().atomic_u64(WORD) else {
        return Json::new().str("error", "segment too small").finish();
    };
    let size = size as usize;
    let copies = size > 8 && seg.payload_len() >= PAYLOAD_AT + 2 * size;
    let base = seg.raw().payload_ptr();
    let mut buf = vec![0u8; size];
    for i in 1..=total {
        if !spin_until(word, 2 * i - 1) {
            return Json::new()
                .str("error", "the pinging side stopped")
                .finish();
        }
        if copies {
            // SAFETY: both buffers lie inside the payload (checked above); the pinger wrote
            // the ping before its Release store we acquired and does not touch the pong
            // until our store below.
            unsafe {
                std::ptr::copy_nonoverlapping(base.add(PAYLOAD_AT), buf.as_mut_ptr(), size);
                std::ptr::copy_nonoverlapping(buf.as_ptr(), base.add(PAYLOAD_AT + size), size);
            }
        }
        // Release: pairs with the pinger's Acquire load in `spin_until`.
        word.store(2 * i, std::sync::atomic::Ordering::Release);
    }
    Json::new().num("pid", std::process::id()).finish()
}

/// The echoing side of the channel ping-pong: receive on ring 0, copy the message out,
/// copy it back in on ring 1.
pub fn echo_role(mem: Mem, total: u64, size: u64, wait: Wait) -> String {
    host::pin_to_cpu(1);
    let run = || -> std::result::Result<(), shm_core::Error> {
        let chan = Channel::attach(mem)?;
        let mut rx = chan.receiver(0)?;
        let mut tx = chan.sender(1)?;
        rx.set_wait(wait.mode());
        tx.set_wait(wait.mode());
        if wait == Wait::Async {
            return crate::asyncio::runtime().block_on(crate::asyncio::echo(rx, tx, total, size));
        }
        let mut buf = vec![0u8; size as usize];
        for _ in 0..total {
            {
                let msg = rx.recv()?;
                msg.read(0, &mut buf)?;
            }
            let slot = tx.reserve(buf.len())?;
            slot.write(0, &buf)?;
            slot.commit();
        }
        Ok(())
    };
    match run() {
        Ok(()) => Json::new().num("pid", std::process::id()).finish(),
        Err(e) => Json::new().str("error", &e.to_string()).finish(),
    }
}

/// Ping-pong of `size`-byte messages through a two-ring channel: each side copies the
/// message in and out.
fn channel_pingpong(
    backend: host::Backend,
    round_trips: u64,
    size: u64,
    wait: Wait,
) -> Result<Histogram<u64>> {
    let total = warmup(round_trips) + round_trips;
    let cap = ((size + 16) * 4).next_power_of_two().max(4096);
    let opts = ChannelOptions::new().rings(2).capacity(cap);
    let len = opts.segment_len()?;
    let mem = host::create(backend, len.max(64 * 1024))?;
    let chan = Channel::create(mem, &opts)?;
    let role = RoleArgs::new(Role::Echo).count(total).size(size).wait(wait);
    let peer = host::start_peer(backend, chan.raw().memory(), role, |r, m| {
        echo_role(m, r.count, r.size.max(8), r.wait)
    })?;
    host::pin_to_cpu(0);
    let mut tx = chan.sender(0)?;
    let mut rx = chan.receiver(1)?;
    tx.set_wait(wait.mode());
    rx.set_wait(wait.mode());
    if wait == Wait::Async {
        let hist = crate::asyncio::runtime().block_on(crate::asyncio::ping(
            tx,
            rx,
            total,
            round_trips,
            size,
        ))?;
        crate::util::parse_peer_line(&peer.finish()?)?;
        return Ok(hist);
    }
    let mut hist = histogram();
    let mut ping = vec![7u8; size as usize];
    let mut pong = vec![0u8; size as usize];
    for i in 1..=total {
        let t = Instant::now();
        payload(&mut ping, i);
        let slot = tx.reserve(ping.len())?;
        slot.write(0, &ping)?;
        slot.commit();
        let msg = rx.recv()?;
        msg.read(0, &mut pong)?;
        drop(msg);
        if pong[..8] != ping[..8] {
            return Err(Failure::new(format!("echo {:?} for ping {i}", &pong[..8])));
        }
        if i > total - round_trips {
            let _ = hist.record(t.elapsed().as_nanos() as u64);
        }
    }
    drop((tx, rx));
    crate::util::parse_peer_line(&peer.finish()?)?;
    Ok(hist)
}

/// The hardware floor: a word on a cache line of an anonymous shared mapping, ping and
/// pong, busy-polled; for payloads over 8 bytes each side also copies the payload in and
/// out with a plain `memcpy`. No channel, no framing, no checks.
#[allow(unsafe_code)]
fn floor_pingpong(round_trips: u64, size: u64) -> Result<Histogram<u64>> {
    let backend = host::Backend::Anon;
    let total = warmup(round_trips) + round_trips;
    let len = (128 + PAYLOAD_AT as u64 + 2 * size).max(4096);
    let mem = host::create(backend, len)?;
    let seg = Segment::create(mem, &[0u64; 8])?;
    let peer = host::start_peer(
        backend,
        seg.raw().memory(),
        RoleArgs::new(Role::Floor).count(total).size(size),
        |r, m| floor_pong(m, r.count, r.size),
    )?;
    host::pin_to_cpu(0);
    let word = seg.raw().atomic_u64(WORD)?;
    let size = size as usize;
    let base = seg.raw().payload_ptr();
    let mut ping = vec![7u8; size];
    let mut pong = vec![0u8; size];
    let mut hist = histogram();
    let skip = total - round_trips;
    for i in 1..=total {
        let t = Instant::now();
        if size > 8 {
            payload(&mut ping, i);
            // SAFETY: the ping buffer lies inside the payload (`len` above); the ponger
            // reads it only after our Release store below.
            unsafe { std::ptr::copy_nonoverlapping(ping.as_ptr(), base.add(PAYLOAD_AT), size) };
        }
        // Release: pairs with the ponger's Acquire load in `spin_until`.
        word.store(2 * i - 1, std::sync::atomic::Ordering::Release);
        if !spin_until(word, 2 * i) {
            return Err(Failure::new(format!(
                "the peer stopped answering after {} round trips",
                i - 1
            )));
        }
        if size > 8 {
            // SAFETY: the pong buffer lies inside the payload; the ponger wrote it before
            // its Release store we acquired and does not touch it again this round.
            unsafe {
                std::ptr::copy_nonoverlapping(base.add(PAYLOAD_AT + size), pong.as_mut_ptr(), size)
            };
            if pong[..8] != ping[..8] {
                return Err(Failure::new(format!("floor echo mismatch at {i}")));
            }
        }
        if i > skip {
            let _ = hist.record(t.elapsed().as_nanos() as u64);
        }
    }
    crate::util::parse_peer_line(&peer.finish()?)?;
    Ok(hist)
}

fn run_paired(round_trips: u64, json: bool) -> Result<()> {
    let (ours, bare) = paired_pingpong(round_trips)?;
    let (p50, f50) = (ours.value_at_quantile(0.5), bare.value_at_quantile(0.5));
    let ratio = p50 as f64 / f50.max(1) as f64;
    if json {
        println!(
            "{}",
            Json::new()
                .str("backend", "anon")
                .str("paired", "floor")
                .num("round_trips", ours.len())
                .num("size", 8)
                .num("p50_ns", p50)
                .num("p99_ns", ours.value_at_quantile(0.99))
                .num("floor_p50_ns", f50)
                .num("floor_p99_ns", bare.value_at_quantile(0.99))
                .float("ratio_p50", ratio)
                .machine()
                .finish()
        );
    } else {
        println!(
            "pingpong anon, paired with the floor in one pair of processes: {} round trips each of 8 B, channel p50 {p50} ns, floor p50 {f50} ns: {ratio:.2}x",
            ours.len()
        );
    }
    Ok(())
}

/// Round trips per block of the paired measurement.
const BLOCK: u64 = 10_000;

/// The floor and the channel measured in the same pair of processes (`pingpong
/// --paired`): one fork, the two sides pinned to CPUs 0 and 1 once, then alternating
/// blocks of [`BLOCK`] round trips: one block bouncing the floor's word (one cache line,
/// as `--backend floor`), one block of 8-byte messages through a two-ring channel in
/// anonymous shared memory (as `--backend anon`). On a host that places the two virtual
/// CPUs differently from one run to the next (this project's AMD EPYC guest: the floor's
/// p50 moves between about 70 and 420 ns across runs), only a ratio taken within one
/// placement means anything. The first block of each kind is a warm-up. Returns the
/// channel's and the floor's histograms.
#[allow(unsafe_code)]
fn paired_pingpong(round_trips: u64) -> Result<(Histogram<u64>, Histogram<u64>)> {
    let blocks = round_trips.div_ceil(BLOCK) + 1;
    let floor_mem = host::create(host::Backend::Anon, 4096)?;
    let floor = Segment::create(floor_mem, &[0u64; 8])?;
    let opts = ChannelOptions::new().rings(2).capacity(4096);
    let len = opts.segment_len()?;
    let chan = Channel::create(
        host::create(host::Backend::Anon, len.max(64 * 1024))?,
        &opts,
    )?;
    let word = floor.raw().atomic_u64(WORD)?;
    let patience = PEER_TIMEOUT;
    // SAFETY: the demo has one thread when it forks; the child uses the two inherited
    // mappings (through the inherited handles) and its own heap, and ends by returning.
    let peer = unsafe {
        host::fork_peer(|| {
            host::pin_to_cpu(1);
            let echo = || -> std::result::Result<(), shm_core::Error> {
                let mut rx = chan.receiver(0)?;
                let mut tx = chan.sender(1)?;
                rx.set_wait(shm_core::WaitMode::Spin);
                tx.set_wait(shm_core::WaitMode::Spin);
                let mut buf = [0u8; 8];
                let mut n = 0u64;
                for _ in 0..blocks {
                    for _ in 0..BLOCK {
                        n += 1;
                        if !spin_until(word, 2 * n - 1) {
                            return Err(shm_core::Error::Timeout { waited: patience });
                        }
                        // Release: pairs with the pinger's Acquire load in `spin_until`.
                        word.store(2 * n, std::sync::atomic::Ordering::Release);
                    }
                    for _ in 0..BLOCK {
                        rx.recv()?.read(0, &mut buf)?;
                        let slot = tx.reserve(8)?;
                        slot.write(0, &buf)?;
                        slot.commit();
                    }
                }
                Ok(())
            };
            crate::util::outcome_line(echo())
        })
    }?;
    host::pin_to_cpu(0);
    let mut tx = chan.sender(0)?;
    let mut rx = chan.receiver(1)?;
    tx.set_wait(shm_core::WaitMode::Spin);
    rx.set_wait(shm_core::WaitMode::Spin);
    let (mut ours, mut bare) = (histogram(), histogram());
    let (mut ping, mut pong) = ([0u8; 8], [0u8; 8]);
    let mut n = 0u64;
    for b in 0..blocks {
        for _ in 0..BLOCK {
            n += 1;
            let t = Instant::now();
            // Release: pairs with the ponger's Acquire load in `spin_until`.
            word.store(2 * n - 1, std::sync::atomic::Ordering::Release);
            if !spin_until(word, 2 * n) {
                return Err(peer.fail(
                    Failure::new("the paired peer stopped answering the floor"),
                    Duration::ZERO,
                ));
            }
            if b > 0 {
                let _ = bare.record(t.elapsed().as_nanos() as u64);
            }
        }
        for i in 0..BLOCK {
            let t = Instant::now();
            payload(&mut ping, b * BLOCK + i);
            let slot = tx.reserve(8)?;
            slot.write(0, &ping)?;
            slot.commit();
            rx.recv_timeout(patience)?.read(0, &mut pong)?;
            if pong != ping {
                return Err(Failure::new(format!("echo {pong:?} for ping {ping:?}")));
            }
            if b > 0 {
                let _ = ours.record(t.elapsed().as_nanos() as u64);
            }
        }
    }
    crate::util::parse_peer_line(&peer.finish()?)?;
    Ok((ours, bare))
}

/// Ping-pong of 8-byte messages over two byte streams (socket pair or two pipes), with a
/// forked echo process at the other end.
fn stream_pingpong<S: Read + Write>(
    round_trips: u64,
    size: u64,
    mine: S,
    theirs: impl FnOnce() -> (Box<dyn Read>, Box<dyn Write>),
) -> Result<Histogram<u64>> {
    let total = warmup(round_trips) + round_trips;
    #[allow(unsafe_code)]
    // SAFETY: the demo has one thread when it forks; the child only reads and writes its
    // inherited fds and exits.
    let peer = unsafe {
        host::fork_peer(move || {
            host::pin_to_cpu(1);
            let (mut r, mut w) = theirs();
            let mut buf = vec![0u8; size as usize];
            let mut echo = || -> std::io::Result<()> {
                for _ in 0..total {
                    r.read_exact(&mut buf)?;
                    w.write_all(&buf)?;
                }
                Ok(())
            };
            crate::util::outcome_line(echo())
        })
    }?;
    host::pin_to_cpu(0);
    let mut s = mine;
    let mut hist = histogram();
    let mut ping = vec![7u8; size as usize];
    let mut buf = vec![0u8; size as usize];
    for i in 1..=total {
        let t = Instant::now();
        payload(&mut ping, i);
        s.write_all(&ping)
            .map_err(|e| Failure::new(format!("write: {e}")))?;
        s.read_exact(&mut buf)
            .map_err(|e| Failure::new(format!("read: {e}")))?;
        if i > total - round_trips {
            let _ = hist.record(t.elapsed().as_nanos() as u64);
        }
    }
    crate::util::parse_peer_line(&peer.finish()?)?;
    Ok(hist)
}

/// A pipe pair seen as one duplex stream.
struct PipePair(std::io::PipeReader, std::io::PipeWriter);

impl Read for PipePair {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for PipePair {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn run(
    backend: BackendArg,
    round_trips: u64,
    size: u64,
    wait: Wait,
    paired: bool,
    json: bool,
) -> Result<()> {
    if round_trips == 0 {
        return Err(Failure::new("--round-trips must be at least 1"));
    }
    if paired {
        if backend != BackendArg::Anon || size != 8 || wait != Wait::Spin {
            return Err(Failure::new(
                "--paired measures 8-byte spinning round trips on anon memory",
            )
            .hint("use: shm-demo --backend anon pingpong --paired"));
        }
        return run_paired(round_trips, json);
    }
    if !(8..=(16 << 20)).contains(&size) {
        return Err(Failure::new(format!("--size {size} is out of range"))
            .hint("payloads carry an 8-byte round number: use --size 8 to 16MiB"));
    }
    let name = format!("{backend:?}").to_lowercase();
    let hist = match backend.shm() {
        Some(b) => channel_pingpong(b, round_trips, size, wait)?,
        None if backend == BackendArg::Floor => floor_pingpong(round_trips, size)?,
        None if backend == BackendArg::Unix && wait == Wait::Async => {
            crate::asyncio::unix_pingpong(round_trips, size)?
        }
        None if backend == BackendArg::Unix => {
            let (a, b) =
                UnixStream::pair().map_err(|e| Failure::new(format!("socketpair: {e}")))?;
            stream_pingpong(round_trips, size, a, move || {
                let b2 = b.try_clone().expect("dup socket");
                (Box::new(b) as Box<dyn Read>, Box::new(b2) as Box<dyn Write>)
            })?
        }
        None => {
            let (r1, w1) = std::io::pipe().map_err(|e| Failure::new(format!("pipe: {e}")))?;
            let (r2, w2) = std::io::pipe().map_err(|e| Failure::new(format!("pipe: {e}")))?;
            stream_pingpong(round_trips, size, PipePair(r2, w1), move || {
                (
                    Box::new(r1) as Box<dyn Read>,
                    Box::new(w2) as Box<dyn Write>,
                )
            })?
        }
    };
    let q = |p: f64| hist.value_at_quantile(p);
    if json {
        println!(
            "{}",
            Json::new()
                .str("backend", &name)
                .str("wait", &format!("{wait:?}").to_lowercase())
                .num("round_trips", round_trips)
                .num("size", size)
                .num("p50_ns", q(0.5))
                .num("p90_ns", q(0.9))
                .num("p99_ns", q(0.99))
                .num("p999_ns", q(0.999))
                .num("p9999_ns", q(0.9999))
                .num("max_ns", hist.max())
                .float("mean_ns", hist.mean())
                .machine()
                .finish()
        );
    } else {
        let d = |ns: u64| fmt_duration(Duration::from_nanos(ns));
        println!(
            "pingpong {name} ({}): {round_trips} round trips of {size} B, p50 {}, p99 {}, p99.9 {}, max {}",
            format!("{wait:?}").to_lowercase(),
            d(q(0.5)),
            d(q(0.99)),
            d(q(0.999)),
            d(hist.max())
        );
    }
    Ok(())
}

/// Round-trip latency between two processes, pinned to different CPUs: p50, p99,
/// p99.9 and max, from an HdrHistogram of every round trip. posix, anon and memfd send
/// 8-byte messages through the channel; unix and pipe through the kernel; floor
/// bounces two bare words between two cache lines (the hardware floor).
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  shm-demo --backend posix pingpong --round-trips 100000 --json")]
pub struct Args {
    /// Round trips to measure (after a warm-up of a tenth as many, at least 1000).
    #[arg(long, default_value_t = 100_000)]
    round_trips: u64,
    /// How a side waits for the other: spin (busy-poll), block (spin 50 µs, then sleep
    /// on a futex) or async (both sides tokio tasks awaiting the futures; tokio's
    /// UnixStream for --backend unix). pipe and floor ignore it.
    #[arg(long, value_enum, default_value = "spin")]
    wait: Wait,
    /// Payload bytes per message, 8 to 16MiB; each side copies it in and out.
    #[arg(long, default_value = "8", value_parser = crate::util::parse_size)]
    size: u64,
    /// Measure the floor (one bouncing cache line) and the channel in the same pair of
    /// processes, alternating blocks of 10,000 round trips, and report both p50s and
    /// their ratio (`--backend anon`, 8 bytes, spin): on a host whose CPU placement
    /// changes between runs, the only ratio that means anything.
    #[arg(long)]
    paired: bool,
}

impl Args {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        let b = ctx.backend.ok_or_else(|| {
            Failure::usage("pingpong needs --backend: posix, anon, memfd, unix, pipe or floor")
        })?;
        run(
            b,
            self.round_trips,
            self.size,
            self.wait,
            self.paired,
            ctx.json,
        )
    }
}
