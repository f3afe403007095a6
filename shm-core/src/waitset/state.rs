//! What the set and its fd's watcher thread share: the attachments, their readiness,
//! and the one sleep over all of them.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::format::error::Error;
use crate::os::futex::{self, FutexWaitv};
use crate::os::sys;
use crate::wait::{Source, PEER_CHECK};

/// The longest sleep of a set: the looker does the 20 ms look while it sleeps (and wakes
/// it for what it finds), so a sleep only needs an end in case the looker could not run.
pub(super) const IDLE: Duration = Duration::from_secs(5);

/// What [`WaitSet::attach`](super::WaitSet::attach) (and the interval and deadline attaches) return: names the
/// attachment in what [`WaitSet::wait`](super::WaitSet::wait) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub usize);

/// One ready attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// Which.
    pub key: Key,
    /// `None`: the end has something to take (its try operation gets it), or the interval
    /// or deadline is due. `Some(e)`: the end's wait would end with `e` (its peer closed
    /// or died, the segment was truncated); the end's own try operation reports it too.
    /// An end stays ready with it until detached, except an event listener's dead
    /// notifier, which the listener's `try_wait` reports once and forgets.
    pub error: Option<Error>,
}

pub(super) enum Entry {
    End { src: Box<dyn Source>, armed: bool },
    Interval { every: Duration, next: Instant },
    Deadline { at: Instant },
}

/// What the set and its watcher thread share.
pub(super) struct Shared {
    pub(super) inner: Mutex<Inner>,
    /// Bumped (and woken) to make a sleeping watcher look again: an owner's `try_wait`,
    /// an attach or detach, the drop.
    pub(super) ctl: AtomicU32,
    pub(super) stop: AtomicBool,
    /// Threads asleep on the set now (the owner's wait, the fd's watcher): the looker
    /// sleeps on this word while it is 0.
    pub(super) sleepers: AtomicU32,
}

pub(super) struct Inner {
    pub(super) entries: Vec<Option<Entry>>,
    pub(super) ends: usize,
    /// A pidfd per peer process watched (`None`: it could not be opened, so it is dead).
    pub(super) pids: HashMap<u32, Option<OwnedFd>>,
    pub(super) spin: Duration,
    pub(super) stats: Stats,
    /// When the liveness checks last ran (they are due every `PEER_CHECK`).
    pub(super) last_peers: Option<Instant>,
}

/// How a set has slept so far ([`WaitSet::stats`](super::WaitSet::stats)): what an operator (or a test) reads to
/// tell wake-ups from slices run out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sleeps (one `futex_waitv` each), the fd's watcher thread's included.
    pub sleeps: u64,
    /// Sleeps that ran to their end (the idle bound, a timer, the caller's timeout) with
    /// no word moved.
    pub timeouts: u64,
    /// Times the looker (see the module docs) found an end ready while the set slept and
    /// woke it: a peer's death or a truncation (neither makes a futex call), or a wake-up
    /// that never came (a hostile peer's, or a bug).
    pub late: u64,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells a sleeping watcher to look again.
    pub(super) fn poke(&self) {
        // Release: pairs with the watcher's Acquire load before it looks and sleeps.
        self.ctl.fetch_add(1, Ordering::Release);
        futex::wake_private(&self.ctl);
    }
}

impl Inner {
    /// The dead among the peers of every end (opens pidfds for new peers, drops those
    /// no end names any more, and polls them all in one call).
    fn dead_peers(&mut self) -> Vec<u32> {
        let peers: std::collections::HashSet<u32> = self.peer_pids().into_iter().collect();
        self.pids.retain(|p, _| peers.contains(p));
        for &p in &peers {
            self.pids
                .entry(p)
                .or_insert_with(|| sys::pidfd_open(p).ok());
        }
        let (open, mut dead): (Vec<_>, Vec<_>) = self.pids.iter().partition(|(_, fd)| fd.is_some());
        let fds: Vec<BorrowedFd<'_>> = open
            .iter()
            .map(|(_, fd)| fd.as_ref().expect("partitioned").as_fd())
            .collect();
        let readable = sys::readable_now(&fds);
        let mut out: Vec<u32> = dead.drain(..).map(|(&p, _)| p).collect();
        out.extend(
            open.iter()
                .zip(readable)
                .filter(|(_, r)| *r)
                .map(|((&p, _), _)| p),
        );
        out
    }

    /// The ends with data now (one load or two each): the spin's look between full ones.
    pub(super) fn with_data(&self) -> Vec<Ready> {
        let mut out = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(Entry::End { src, .. }) = e {
                if src.has_data() {
                    out.push(Ready {
                        key: Key(i),
                        error: None,
                    });
                }
            }
        }
        out
    }

    /// The peer processes the ends name now (0s left out; repeats possible).
    pub(super) fn peer_pids(&self) -> Vec<u32> {
        let mut peers = Vec::new();
        for e in self.entries.iter().flatten() {
            if let Entry::End { src, .. } = e {
                src.peers(&mut peers);
            }
        }
        peers.retain(|&p| p != 0);
        peers
    }

    /// Every ready attachment now. `consume`: the caller takes them (an interval moves to
    /// its next tick); the watcher only looks.
    /// `peers`: run the liveness checks (the spin skips them).
    pub(super) fn collect(&mut self, consume: bool, peers: bool) -> Vec<Ready> {
        let dead = if peers { self.dead_peers() } else { Vec::new() };
        let is_dead = |p: u32| dead.contains(&p);
        let now = Instant::now();
        let mut out = Vec::new();
        for (i, e) in self.entries.iter_mut().enumerate() {
            let Some(e) = e else { continue };
            let key = Key(i);
            match e {
                Entry::End { src, .. } => match src.ready(&is_dead) {
                    Ok(false) => {}
                    Ok(true) => out.push(Ready { key, error: None }),
                    Err(err) => out.push(Ready {
                        key,
                        error: Some(err),
                    }),
                },
                Entry::Interval { every, next } => {
                    if now >= *next {
                        if consume {
                            // The next tick after now (missed ticks are one).
                            while *next <= now {
                                *next += *every;
                            }
                        }
                        out.push(Ready { key, error: None });
                    }
                }
                Entry::Deadline { at } => {
                    if now >= *at {
                        out.push(Ready { key, error: None });
                    }
                }
            }
        }
        out
    }

    /// Whether the liveness checks are due (every `PEER_CHECK`): the spin and the wake-ups
    /// skip them in between (the looker runs them every slice while the set sleeps).
    pub(super) fn peers_due(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last_peers
            .is_some_and(|t| now.duration_since(t) < PEER_CHECK)
        {
            return false;
        }
        self.last_peers = Some(now);
        true
    }

    /// How long a sleep may last: the idle bound, and no later than the next timer.
    fn limit(&self, cap: Duration) -> Duration {
        let now = Instant::now();
        let mut limit = cap.min(IDLE);
        for e in self.entries.iter().flatten() {
            let due = match e {
                Entry::End { src, .. } => src.limit(),
                Entry::Interval { next, .. } => Some(next.saturating_duration_since(now)),
                Entry::Deadline { at } => Some(at.saturating_duration_since(now)),
            };
            if let Some(d) = due {
                limit = limit.min(d);
            }
        }
        limit
    }

    /// Announces a sleep on every end: the words to sleep on, or `None` when one is
    /// ready now (everything announced is taken back).
    fn arm(&mut self) -> Option<Vec<FutexWaitv>> {
        let mut words = Vec::with_capacity(self.ends + 1);
        let mut ready = false;
        for e in self.entries.iter_mut().flatten() {
            if let Entry::End { src, armed } = e {
                match src.arm() {
                    Some((word, value)) => {
                        *armed = true;
                        words.push(FutexWaitv::shared(word.get().as_ptr() as usize, value));
                    }
                    None => {
                        ready = true;
                        break;
                    }
                }
            }
        }
        if ready {
            self.disarm();
            return None;
        }
        Some(words)
    }

    pub(super) fn disarm(&mut self) {
        for e in self.entries.iter_mut().flatten() {
            if let Entry::End { src, armed } = e {
                if std::mem::take(armed) {
                    src.disarm();
                }
            }
        }
    }
}

/// Sleeps on every end of the set (and the set's own word) for at most `cap`: the lock
/// is let go for the sleep and taken again. Returns the guard. (The set's one `unsafe`
/// block: the words' addresses are live because the set holds their segments.)
#[allow(unsafe_code)]
pub(super) fn sleep<'a>(
    shared: &'a Shared,
    mut g: MutexGuard<'a, Inner>,
    cap: Duration,
    ctl: u32,
) -> MutexGuard<'a, Inner> {
    let limit = g.limit(cap);
    if limit.is_zero() {
        return g;
    }
    let Some(mut words) = g.arm() else { return g };
    words.push(FutexWaitv::private(&shared.ctl, ctl));
    drop(g);
    // Relaxed: a count the looker reads to know whether to look; the wake makes a parked
    // looker read it again.
    if shared.sleepers.fetch_add(1, Ordering::Relaxed) == 0 {
        futex::wake_private(&shared.sleepers);
    }
    // SAFETY: every shared word lies in the mapping of a source the set holds; a source
    // detached meanwhile was disarmed and dropped, and a word of memory unmapped under a
    // sleeping futex_waitv only ends or prolongs that sleep (the kernel keyed the wait
    // when it began); the private word lives in `shared`, which outlives the call.
    let timed_out = unsafe { futex::wait_any_for(&words, limit) };
    shared.sleepers.fetch_sub(1, Ordering::Relaxed);
    let mut g = shared.lock();
    g.disarm();
    g.stats.sleeps += 1;
    g.stats.timeouts += u64::from(timed_out);
    g
}
