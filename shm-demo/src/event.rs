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
    /// A pause in each notifier between two notifies, in µs: with a gap longer than the
    /// spin, the listener is asleep when each notify comes (a futex wake-up each time).
    #[arg(long, default_value_t = 0)]
    gap_us: u64,
}

impl Args {
    pub fn run(self, ctx: Ctx) -> Result<()> {
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
