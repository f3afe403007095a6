//! One thread, one wait set: N broadcasts, each fed by a publisher process, and an event
//! notified by another; every message verified, every notify accounted for.

use std::time::{Duration, Instant};

use shm_core::waitset::{Key, WaitSet};
use shm_core::{Broadcast, Event, EventOptions, TryRecvError, TryWaitError};

use crate::cli::Ctx;
use crate::host::{self, Mem};
use crate::msg::{Follow, Maker};
use crate::role::{Role, RoleArgs};
use crate::util::{Failure, Json, Result};

/// How long the set may wait for anything before the run is called stuck.
const STUCK: Duration = Duration::from_secs(10);

/// A publisher process: publishes `count` numbered, checksummed messages of `size`
/// bytes, pausing now and then (so the set sleeps between bursts), then closes.
pub fn publish_role(mem: Mem, count: u64, size: u64) -> String {
    let run = || -> std::result::Result<(), shm_core::Error> {
        let b = Broadcast::attach(mem)?;
        let mut p = b.publisher()?;
        let mut maker = Maker::new(size as usize);
        for n in 0..count {
            p.publish(maker.make(n))?;
            if n % 64 == 63 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Ok(())
    };
    crate::util::outcome_line(run())
}

/// `shm-demo --backend B waitset`: one thread waits on N subscribers and an event.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Broadcasts, each with its own publisher process (1 to 64).
    #[arg(long, default_value_t = 4)]
    subscribers: u32,
    /// Messages each publisher publishes.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Bytes per message (at least 16).
    #[arg(long, default_value = "64", value_parser = crate::util::parse_size)]
    size: u64,
    /// Notifies the event's notifier process sends (each taken before the next).
    #[arg(long, default_value_t = 100)]
    events: u64,
    /// Instead: round trips through a wait set over `--subscribers` broadcasts (a forked
    /// publisher process publishes on each in turn and waits for our answer on an
    /// event), against waiting on one subscriber alone and against the set's fd in
    /// epoll; prints each one's p50/p99 and the ratios. Forked, on anon memory.
    #[arg(long)]
    round_trips: Option<u64>,
    /// Instead: attach this many idle ends (channel receivers) and wait `--seconds`:
    /// the CPU the idle set used.
    #[arg(long)]
    idle_ends: Option<u32>,
    /// How long the idle run waits.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// The latency run: how long the waiting side (subscriber or set) spins before it
    /// sleeps, in µs (0: it sleeps at once, and the publisher pauses 300 µs before each
    /// round, untimed, so that each round is a futex wake-up).
    #[arg(long, default_value_t = 50)]
    spin_us: u64,
}

impl Args {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        let backend = ctx.require_shm("waitset needs --backend: posix, anon or memfd")?;
        if let Some(n) = self.round_trips {
            return latency(ctx, self.subscribers, n, self.spin_us);
        }
        if let Some(ends) = self.idle_ends {
            return idle(ctx, ends, self.seconds);
        }
        if !(1..=64).contains(&self.subscribers) || self.size < 16 {
            return Err(Failure::usage(
                "--subscribers must be 1 to 64 and --size at least 16",
            ));
        }
        let mut set = WaitSet::new();
        let mut subs = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..self.subscribers {
            let opts = crate::broadcast::options(self.size, false).max_subscribers(1);
            let b = crate::broadcast::create(backend, &opts)?;
            // Joined before its publisher starts: it gets every message.
            let sub = b.subscriber()?;
            let key = set.attach(&sub)?;
            let role = RoleArgs::new(Role::Publish)
                .count(self.messages)
                .size(self.size);
            peers.push(host::start_peer(
                backend,
                b.raw().memory(),
                role,
                |r, m| publish_role(m, r.count, r.size),
            )?);
            subs.push((key, sub, Follow::default(), 0u64, false));
        }
        let eopts = EventOptions::new().max_ids(64).max_notifiers(1);
        let ev = Event::create(host::create(backend, eopts.segment_len()?)?, &eopts)?;
        let mut listener = ev.listener()?;
        let lkey: Key = set.attach(&listener)?;
        let role = RoleArgs::new(Role::Notify)
            .count(self.events)
            .size(0)
            .gap_us(500);
        peers.push(host::start_peer(
            backend,
            ev.raw().memory(),
            role,
            |r, m| crate::event::notify_role(m, r.count, r.size, r.gap_us),
        )?);

        let t = Instant::now();
        let (mut events, mut wakeups) = (0u64, 0u64);
        let mut buf = Vec::new();
        let mut problem: Option<String> = None;
        let size = self.size as usize;
        while problem.is_none() && (subs.iter().any(|s| !s.4) || events < self.events) {
            crate::util::check_interrupted()?;
            let ready = match set.wait_timeout(STUCK) {
                Ok(r) => r,
                Err(e) => {
                    problem = Some(format!("the wait set: {e}"));
                    break;
                }
            };
            wakeups += 1;
            for r in ready {
                if r.key == lkey {
                    match listener.try_wait() {
                        Ok(ids) => events += ids.len() as u64,
                        Err(TryWaitError::Empty) => {}
                        Err(e) => problem = Some(format!("the listener: {e}")),
                    }
                    continue;
                }
                let Some((key, sub, follow, got, done)) = subs.iter_mut().find(|s| s.0 == r.key)
                else {
                    continue;
                };
                loop {
                    match sub.try_recv_into(&mut buf) {
                        Ok(_) => {
                            let n = sub.last_number().unwrap_or_default();
                            if let Err(p) = follow.numbered(&buf, n, size) {
                                problem = Some(p);
                                break;
                            }
                            *got += 1;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => {
                            *done = true;
                            set.detach(*key);
                            break;
                        }
                        Err(e) => {
                            problem = Some(format!("a subscriber: {e}"));
                            break;
                        }
                    }
                }
            }
        }
        let seconds = t.elapsed().as_secs_f64();
        let stats = set.stats();
        drop(set);
        for p in peers {
            crate::util::parse_peer_line(&p.finish()?)?;
        }
        let received: u64 = subs.iter().map(|s| s.3).sum();
        let want = self.messages * u64::from(self.subscribers);
        if problem.is_none() && (received != want || events != self.events) {
            problem = Some(format!(
                "{received} of {want} messages, {events} of {} notifies",
                self.events
            ));
        }
        let line = Json::new()
            .str("backend", backend.name())
            .num("subscribers", self.subscribers)
            .num("messages", received)
            .num("events", events)
            .num("wakeups", wakeups)
            .num("sleeps", stats.sleeps)
            .float("seconds", seconds)
            .float("msgs_per_s", received as f64 / seconds.max(1e-9));
        let text = |verdict: &str| {
            format!(
                "waitset ({}): one thread, one wait set over {} subscribers and an event: {received} messages verified, {events} notifies, {wakeups} wake-ups ({} sleeps) in {seconds:.2} s; {verdict}",
                backend.name(),
                self.subscribers,
                stats.sleeps,
            )
        };
        crate::util::conclude(ctx.json, line, text, problem)
    }
}

/// How the answering side waits in a latency run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// `recv` on the one subscriber that is published on.
    Direct,
    /// A wait set over every subscriber.
    Set,
    /// The wait set's fd in an epoll set, then `try_wait`.
    Fd,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Set => "set",
            Via::Fd => "fd",
        }
    }
}

/// One latency run: `ends` broadcasts; a forked process publishes message `i` on
/// broadcast `i % ends` (on broadcast 0 only for `Direct`) and times until our answer
/// on an event; this process waits `via`, takes the message, answers.
fn latency_run(ends: u32, n: u64, via: Via, spin_us: u64) -> Result<(u64, u64)> {
    let mode = shm_core::WaitMode::Block {
        spin: Duration::from_micros(spin_us),
    };
    let total = crate::measure::warmup(n) + n;
    let backend = host::Backend::Anon;
    let opts = crate::broadcast::options(8, false).max_subscribers(1);
    let mut bcs = Vec::new();
    let mut subs = Vec::new();
    let mut set = WaitSet::new();
    let mut keys = Vec::new();
    for _ in 0..ends {
        let b = crate::broadcast::create(backend, &opts)?;
        let mut sub = b.subscriber()?;
        sub.set_wait(mode);
        keys.push(set.attach(&sub)?);
        subs.push(sub);
        bcs.push(b);
    }
    let eopts = EventOptions::new().max_ids(1).max_notifiers(1);
    let ev = Event::create(host::create(backend, eopts.segment_len()?)?, &eopts)?;
    let mut answer = ev.notifier()?;
    set.set_wait(mode);
    let direct = via == Via::Direct;
    #[allow(unsafe_code)]
    // SAFETY: the demo has one thread when it forks (the wait set's fd thread is started
    // after the fork); the child uses its own ends on the inherited mappings.
    let peer = unsafe {
        host::fork_peer(move || {
            let run = || -> std::result::Result<(u64, u64), shm_core::Error> {
                let mut pubs = bcs
                    .iter()
                    .map(|b| b.publisher())
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let mut acks = ev.listener()?;
                let mut hist = crate::measure::histogram();
                for i in 0..total {
                    let k = if direct {
                        0
                    } else {
                        (i % pubs.len() as u64) as usize
                    };
                    let t = Instant::now();
                    pubs[k].publish(&i.to_le_bytes())?;
                    acks.wait_timeout(STUCK)?;
                    if i >= total - n {
                        let _ = hist.record(t.elapsed().as_nanos() as u64);
                    }
                }
                Ok((hist.value_at_quantile(0.5), hist.value_at_quantile(0.99)))
            };
            match run() {
                Ok((p50, p99)) => Json::new().num("p50_ns", p50).num("p99_ns", p99).finish(),
                Err(e) => Json::new().str("error", &e.to_string()).finish(),
            }
        })
    }?;
    let fd = if via == Via::Fd {
        use std::os::fd::AsRawFd;
        Some(Epoll::new(set.as_fd()?.as_raw_fd())?)
    } else {
        None
    };
    let mut buf = Vec::new();
    for i in 0..total {
        let k = match via {
            Via::Direct => 0,
            Via::Set => loop {
                let r = set.wait_timeout(STUCK)?;
                if let Some(r) = r.first() {
                    break keys.iter().position(|k| *k == r.key).unwrap_or(0);
                }
            },
            Via::Fd => loop {
                fd.as_ref().expect("fd mode").wait(STUCK)?;
                if let Ok(r) = set.try_wait() {
                    if let Some(r) = r.first() {
                        break keys.iter().position(|k| *k == r.key).unwrap_or(0);
                    }
                }
            },
        };
        subs[k].recv_into_timeout(&mut buf, STUCK)?;
        if buf != i.to_le_bytes() {
            return Err(Failure::new(format!("round {i}: {buf:?}")));
        }
        answer.notify(0)?;
    }
    let line = peer.finish()?;
    crate::util::parse_peer_line(&line)?;
    let num = |k| crate::util::json_num(&line, k).unwrap_or(0.0) as u64;
    Ok((num("p50_ns"), num("p99_ns")))
}

/// An epoll set with one fd in it.
struct Epoll(std::os::fd::OwnedFd);

impl Epoll {
    #[allow(unsafe_code)]
    fn new(fd: i32) -> Result<Epoll> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: epoll_create1 returns a new fd or -1.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(Failure::new("epoll_create1 failed"));
        }
        // SAFETY: a fresh fd we own.
        let ep = unsafe { std::os::fd::OwnedFd::from_raw_fd(ep) };
        let mut e = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 0,
        };
        // SAFETY: live fds, a valid event.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut e) } != 0 {
            return Err(Failure::new("epoll_ctl failed"));
        }
        Ok(Epoll(ep))
    }

    /// Waits until the fd is readable (bounded).
    #[allow(unsafe_code)]
    fn wait(&self, bound: Duration) -> Result<()> {
        use std::os::fd::AsRawFd;
        let mut out = [libc::epoll_event { events: 0, u64: 0 }];
        let ms = i32::try_from(bound.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: a live epoll fd and a buffer of one event.
        match unsafe { libc::epoll_wait(self.0.as_raw_fd(), out.as_mut_ptr(), 1, ms) } {
            1 => Ok(()),
            0 => Err(Failure::new(format!(
                "the fd was not readable within {bound:?}"
            ))),
            _ => Err(Failure::new(format!(
                "epoll_wait: {}",
                std::io::Error::last_os_error()
            ))),
        }
    }
}

/// `--round-trips`: the three ways, in one run, and the ratios.
fn latency(ctx: Ctx, ends: u32, n: u64, spin_us: u64) -> Result<()> {
    if !(1..=crate::MAX_SET_ENDS).contains(&ends) {
        return Err(Failure::usage(
            "--subscribers must be 1 to 127 for a latency run",
        ));
    }
    let mut out = Vec::new();
    for via in [Via::Direct, Via::Set, Via::Fd] {
        out.push((via, latency_run(ends, n, via, spin_us)?));
    }
    let p50 = |v: Via| out.iter().find(|x| x.0 == v).map_or(0, |x| x.1 .0) as f64;
    let set_ratio = p50(Via::Set) / p50(Via::Direct).max(1.0);
    let fd_ratio = p50(Via::Fd) / p50(Via::Set).max(1.0);
    let mut line = Json::new()
        .str("mode", "round_trip")
        .num("subscribers", ends)
        .num("round_trips", n)
        .num("spin_us", spin_us);
    for (via, (p50, p99)) in &out {
        line = line
            .num(&format!("{}_p50_ns", via.name()), p50)
            .num(&format!("{}_p99_ns", via.name()), p99);
    }
    line = line
        .float("set_vs_direct_p50", set_ratio)
        .float("fd_vs_set_p50", fd_ratio);
    let text = |verdict: &str| {
        let each: Vec<String> = out
            .iter()
            .map(|(v, (a, b))| {
                format!(
                    "{} p50 {:.1} µs p99 {:.1} µs",
                    v.name(),
                    *a as f64 / 1000.0,
                    *b as f64 / 1000.0
                )
            })
            .collect();
        format!(
            "waitset round trip over {ends} subscribers ({n} round trips each, waits spin {spin_us} µs): {}; set/direct {set_ratio:.2}x, fd/set {fd_ratio:.2}x; {verdict}",
            each.join(", ")
        )
    };
    crate::util::conclude(ctx.json, line, text, None)
}

/// `--idle-ends`: the CPU an idle set over `ends` ends uses in `seconds`.
fn idle(ctx: Ctx, ends: u32, seconds: f64) -> Result<()> {
    if !((1..=crate::MAX_SET_ENDS).contains(&ends) && seconds > 0.0 && seconds < 3600.0) {
        return Err(Failure::usage(
            "--idle-ends must be 1 to 127 and --seconds 0 to 3600",
        ));
    }
    let opts = shm_core::ChannelOptions::new().capacity(4096);
    let mut keep = Vec::new();
    let mut set = WaitSet::new();
    for _ in 0..ends {
        let chan = shm_core::Channel::create(
            host::create(host::Backend::Anon, opts.segment_len()?)?,
            &opts,
        )?;
        let rx = chan.receiver(0)?;
        let tx = chan.sender(0)?; // a live peer: nothing to report
        set.attach(&rx)?;
        keep.push((rx, tx));
    }
    let cpu0 = crate::measure::cpu_time();
    let t = Instant::now();
    let r = set.wait_timeout(Duration::from_secs_f64(seconds));
    let wall = t.elapsed().as_secs_f64();
    let cpu = (crate::measure::cpu_time() - cpu0).as_secs_f64();
    let problem = match r {
        Err(shm_core::WaitTimeoutError::Timeout { .. }) => None,
        other => Some(format!("an idle set woke with {other:?}")),
    };
    let stats = set.stats();
    let pct = 100.0 * cpu / wall.max(1e-9);
    let line = Json::new()
        .str("mode", "idle")
        .num("ends", ends)
        .float("seconds", wall)
        .float("cpu_seconds", cpu)
        .float("cpu_percent", pct)
        .num("sleeps", stats.sleeps);
    let text = |verdict: &str| {
        format!(
            "idle wait set over {ends} ends for {wall:.1} s: {cpu:.4} s of CPU ({pct:.3}% of a core), {} sleeps; {verdict}",
            stats.sleeps
        )
    };
    crate::util::conclude(ctx.json, line, text, problem)
}
