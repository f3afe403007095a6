//! Events between processes: N notifier processes and a listener (this process) that
//! sleeps between notifies; every notify accounted for, and the time from a notify to
//! the listener's take, as each notifier sees it.

use std::time::{Duration, Instant};

use shm_core::{Event, EventOptions, WaitMode};

use crate::cli::Ctx;
use crate::host::{self, Mem};
use crate::measure::histogram;
use crate::role::{Role, RoleArgs};
use crate::util::{json_num, Failure, Json, Result};

/// How long a notifier waits for the listener to take an id before it gives up.
const TAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A notifier process: notifies its id `count` times, each time waiting until the
/// listener took it (so no two notifies merge), and times each notify → take; pauses
/// `gap_us` between two notifies (so a listener that sleeps is asleep when one comes).
pub fn notify_role(mem: Mem, count: u64, id: u64, gap_us: u64) -> String {
    let run = || -> std::result::Result<String, String> {
        let ev = Event::attach(mem).map_err(|e| e.to_string())?;
        let mut n = ev.notifier().map_err(|e| e.to_string())?;
        let mut hist = histogram();
        for i in 0..count {
            if gap_us > 0 {
                std::thread::sleep(Duration::from_micros(gap_us));
            }
            let t = Instant::now();
            n.notify(id).map_err(|e| format!("notify {i}: {e}"))?;
            let mut spins = 0u32;
            while ev.is_pending(id) {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(256) {
                    if t.elapsed() > TAKE_TIMEOUT {
                        return Err(format!(
                            "notify {i} of id {id} was not taken in {TAKE_TIMEOUT:?}"
                        ));
                    }
                    std::thread::yield_now();
                }
                std::hint::spin_loop();
            }
            let _ = hist.record(t.elapsed().as_nanos() as u64);
        }
        Ok(Json::new()
            .num("pid", std::process::id())
            .num("id", id)
            .num("notified", count)
            .num("p50_ns", hist.value_at_quantile(0.5))
            .num("p99_ns", hist.value_at_quantile(0.99))
            .finish())
    };
    run().unwrap_or_else(|e| Json::new().str("error", &e).finish())
}

/// `shm-demo --backend B event`: notifier processes and a sleeping listener.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Notifier processes (1 to 64); notifier `j` notifies id `j`.
    #[arg(long, default_value_t = 1)]
    notifiers: u32,
    /// Notifies in all (shared out among the notifiers).
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// How long the listener spins before it sleeps, in µs (default 50, as every end).
    #[arg(long, default_value_t = 50)]
    spin_us: u64,
    /// A pause in each notifier between two notifies (with `--round-trips`: before each
    /// round, untimed), in µs: with a gap longer than the spin, the listener is asleep
    /// when each notify comes (a futex wake-up each time).
    #[arg(long, default_value_t = 0)]
    gap_us: u64,
    /// Instead: this many round trips between two processes over two events (each side
    /// notifies, then waits for the other's notify; `--spin-us` for both). With
    /// `--backend floor`, the same over a bare futex word (each side sleeping in
    /// FUTEX_WAIT at every turn): the kernel's wake-up round trip. Forked, on anon memory.
    #[arg(long)]
    round_trips: Option<u64>,
}

impl Args {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        if let Some(n) = self.round_trips {
            let floor = ctx.backend == Some(crate::cli::BackendArg::Floor);
            if !floor && ctx.shm().is_none() {
                return Err(Failure::usage(
                    "event --round-trips needs --backend: posix, anon, memfd (all run forked on anon memory) or floor",
                ));
            }
            return round_trips(ctx, n, self.spin_us, self.gap_us, floor);
        }
        let backend = ctx.require_shm("event needs --backend: posix, anon or memfd")?;
        if !(1..=64).contains(&self.notifiers) {
            return Err(Failure::usage("--notifiers must be 1 to 64"));
        }
        let n = u64::from(self.notifiers);
        let opts = EventOptions::new()
            .max_ids(64)
            .max_notifiers(self.notifiers);
        let mem = host::create(backend, opts.segment_len()?)?;
        let ev = Event::create(mem, &opts)?;
        let mut listener = ev.listener()?;
        listener.set_wait(WaitMode::Block {
            spin: Duration::from_micros(self.spin_us),
        });
        let share = |j: u64| self.events / n + u64::from(j < self.events % n);
        let mut peers = Vec::new();
        for j in 0..n {
            let role = RoleArgs::new(Role::Notify)
                .count(share(j))
                .size(j)
                .gap_us(self.gap_us);
            peers.push(host::start_peer(
                backend,
                ev.raw().memory(),
                role,
                |r, m| notify_role(m, r.count, r.size, r.gap_us),
            )?);
        }
        let mut got = vec![0u64; n as usize];
        let t = Instant::now();
        let mut problem = None;
        while got.iter().sum::<u64>() < self.events {
            crate::util::check_interrupted()?;
            match listener.wait_timeout(TAKE_TIMEOUT) {
                Ok(ids) => {
                    for id in &ids {
                        match got.get_mut(id as usize) {
                            Some(c) => *c += 1,
                            None => problem = Some(format!("id {id}: no notifier has it")),
                        }
                    }
                }
                Err(e) => {
                    problem = Some(format!("the listener: {e}"));
                    break;
                }
            }
        }
        let seconds = t.elapsed().as_secs_f64();
        let lines = peers
            .into_iter()
            .map(|p| p.finish())
            .collect::<Result<Vec<_>>>()?;
        for l in &lines {
            crate::util::parse_peer_line(l)?;
        }
        let accounted = (0..n).all(|j| got[j as usize] == share(j));
        if problem.is_none() && !accounted {
            problem = Some(format!(
                "taken per notifier {got:?}, notified {:?}",
                (0..n).map(share).collect::<Vec<_>>()
            ));
        }
        // The worst notifier's figures (each notifier measured its own notifies).
        let worst = |k: &str| {
            lines
                .iter()
                .filter_map(|l| json_num(l, k))
                .fold(0.0f64, f64::max)
        };
        let (p50, p99) = (worst("p50_ns"), worst("p99_ns"));
        let line = Json::new()
            .str("backend", backend.name())
            .num("events", got.iter().sum::<u64>())
            .num("notifiers", n)
            .num("spin_us", self.spin_us)
            .num("gap_us", self.gap_us)
            .num("p50_ns", p50 as u64)
            .num("p99_ns", p99 as u64)
            .float("seconds", seconds)
            .raw("per_notifier", &format!("[{}]", lines.join(",")));
        let listener_waits = format!(
            "spins {} µs, then sleeps; notifies {}",
            self.spin_us,
            if self.gap_us == 0 {
                "back to back".to_owned()
            } else {
                format!("{} µs apart", self.gap_us)
            }
        );
        let text = |verdict: &str| {
            format!(
                "event ({}): {} notifies from {n} notifier process(es), {} taken by a listener that {listener_waits}; notify -> take p50 {:.1} µs, p99 {:.1} µs (worst notifier); {verdict}",
                backend.name(),
                self.events,
                got.iter().sum::<u64>(),
                p50 / 1000.0,
                p99 / 1000.0,
            )
        };
        crate::util::conclude(ctx.json, line, text, problem)
    }
}

/// Round trips between two forked processes: over two events (`floor`: a bare futex
/// word), each side sleeping (or spinning `spin_us` first). Prints p50/p99.
fn round_trips(ctx: Ctx, n: u64, spin_us: u64, gap_us: u64, floor: bool) -> Result<()> {
    let total = crate::measure::warmup(n) + n;
    let gap = Duration::from_micros(gap_us);
    let hist = if floor {
        futex_round_trips(total, n, gap)?
    } else {
        event_round_trips(total, n, spin_us, gap)?
    };
    let (p50, p99) = (hist.value_at_quantile(0.5), hist.value_at_quantile(0.99));
    let what = if floor {
        "a bare futex word, both sides in FUTEX_WAIT".to_owned()
    } else {
        format!("two events, each side spinning {spin_us} µs then sleeping")
    };
    let line = Json::new()
        .str("backend", if floor { "floor" } else { "anon" })
        .str("mode", "round_trip")
        .num("round_trips", n)
        .num("spin_us", if floor { 0 } else { spin_us })
        .num("gap_us", gap_us)
        .num("p50_ns", p50)
        .num("p99_ns", p99);
    let text = |verdict: &str| {
        format!(
            "event round trip ({what}): {n} round trips, p50 {:.1} µs, p99 {:.1} µs; {verdict}",
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0
        )
    };
    crate::util::conclude(ctx.json, line, text, None)
}

fn event_round_trips(
    total: u64,
    n: u64,
    spin_us: u64,
    gap: Duration,
) -> Result<hdrhistogram::Histogram<u64>> {
    let opts = EventOptions::new().max_ids(1).max_notifiers(1);
    let len = opts.segment_len()?;
    let ping = Event::create(host::create(host::Backend::Anon, len)?, &opts)?;
    let pong = Event::create(host::create(host::Backend::Anon, len)?, &opts)?;
    let mode = WaitMode::Block {
        spin: Duration::from_micros(spin_us),
    };
    let mut back = pong.listener()?;
    back.set_wait(mode);
    let (ping2, pong2) = (ping.clone(), pong.clone());
    #[allow(unsafe_code)]
    // SAFETY: the demo has one thread when it forks; the child uses the inherited
    // mappings through its own ends and its own heap, then reports.
    let peer = unsafe {
        host::fork_peer(move || {
            let run = || -> std::result::Result<(), shm_core::Error> {
                let mut l = ping2.listener()?;
                l.set_wait(mode);
                let mut answer = pong2.notifier()?;
                for _ in 0..total {
                    l.wait_timeout(TAKE_TIMEOUT)?;
                    answer.notify(0)?;
                }
                Ok(())
            };
            crate::util::outcome_line(run())
        })
    }?;
    let mut go = ping.notifier()?;
    let mut hist = histogram();
    for i in 0..total {
        pause(gap);
        let t = Instant::now();
        go.notify(0)?;
        back.wait_timeout(TAKE_TIMEOUT)?;
        if i >= total - n {
            let _ = hist.record(t.elapsed().as_nanos() as u64);
        }
    }
    crate::util::parse_peer_line(&peer.finish()?)?;
    Ok(hist)
}

/// The kernel's floor: one word, each side FUTEX_WAITs for its turn and FUTEX_WAKEs the
/// other (no spin, no library).
fn futex_round_trips(total: u64, n: u64, gap: Duration) -> Result<hdrhistogram::Histogram<u64>> {
    let mem = host::create(host::Backend::Anon, 4096)?;
    let seg = shm_core::Segment::create(mem, &[0u64; 8])?;
    let word = seg.raw().atomic_u64(0)?;
    let addr = word as *const std::sync::atomic::AtomicU64 as usize;
    #[allow(unsafe_code)]
    // SAFETY: as in `event_round_trips`; the child only touches the inherited word.
    let peer = unsafe {
        host::fork_peer(move || {
            for i in 0..total {
                if !turn(addr, 2 * i + 1) {
                    return Json::new().str("error", "the other side stopped").finish();
                }
                set(addr, 2 * i + 2);
            }
            Json::new().num("pid", std::process::id()).finish()
        })
    }?;
    let mut hist = histogram();
    for i in 0..total {
        pause(gap);
        let t = Instant::now();
        set(addr, 2 * i + 1);
        if !turn(addr, 2 * i + 2) {
            return Err(Failure::new("the futex peer stopped"));
        }
        if i >= total - n {
            let _ = hist.record(t.elapsed().as_nanos() as u64);
        }
    }
    crate::util::parse_peer_line(&peer.finish()?)?;
    drop(seg);
    Ok(hist)
}

/// The untimed pause before a round (`--gap-us`): long enough, the other side is asleep
/// when the round begins.
fn pause(gap: Duration) {
    if !gap.is_zero() {
        std::thread::sleep(gap);
    }
}

/// The low 4 bytes of the 8-byte word at `addr` (little-endian: the futex word).
#[allow(unsafe_code)]
fn low(addr: usize) -> &'static std::sync::atomic::AtomicU32 {
    // SAFETY: `addr` is an 8-aligned word of a mapping that lives until the process's
    // round trips are over (the segment is dropped after them); its first 4 bytes are
    // a 4-aligned u32 on this little-endian machine.
    unsafe { &*(addr as *const std::sync::atomic::AtomicU32) }
}

/// Stores `v` and wakes the other side.
#[allow(unsafe_code)]
fn set(addr: usize, v: u64) {
    let w = low(addr);
    // Release: pairs with the other side's Acquire load in `turn`.
    w.store(v as u32, std::sync::atomic::Ordering::Release);
    // SAFETY: FUTEX_WAKE on a live, 4-aligned shared word; only the address is used.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            w.as_ptr(),
            libc::FUTEX_WAKE,
            1,
            0usize,
            0usize,
            0u32,
        )
    };
}

/// Sleeps in FUTEX_WAIT until the word holds `want` (false after `TAKE_TIMEOUT`).
#[allow(unsafe_code)]
fn turn(addr: usize, want: u64) -> bool {
    let w = low(addr);
    let want = want as u32;
    let start = Instant::now();
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 20_000_000,
    };
    loop {
        // Acquire: pairs with the other side's Release store in `set`.
        let now = w.load(std::sync::atomic::Ordering::Acquire);
        if now == want {
            return true;
        }
        if start.elapsed() > TAKE_TIMEOUT {
            return false;
        }
        // SAFETY: FUTEX_WAIT on a live, 4-aligned shared word with a bounded timeout.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                w.as_ptr(),
                libc::FUTEX_WAIT,
                now,
                &ts as *const libc::timespec,
                0usize,
                0u32,
            )
        };
    }
}
