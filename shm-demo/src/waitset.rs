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
}

impl Args {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        let backend = ctx.require_shm("waitset needs --backend: posix, anon or memfd")?;
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
