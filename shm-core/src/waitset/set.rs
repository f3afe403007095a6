//! The set itself: attach, detach, and the four ways to wait.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::state::{sleep, Entry, Inner, Key, Ready, Shared, Stats};
use crate::format::error::{Error, TryWaitError, WaitError, WaitTimeoutError};
use crate::wait::{WaitMode, WaitSource, Waitable, CHECK_SPINS};

/// The most ends one set holds: `futex_waitv` takes 128 words, one is the set's own.
pub const MAX_ENDS: usize = 127;

/// Waits on many ends at once (see the [module docs](crate::waitset)).
pub struct WaitSet {
    pub(super) shared: Arc<Shared>,
    pub(super) watcher: Option<super::watcher::Watcher>,
    looker: Option<super::looker::Looker>,
}

impl Default for WaitSet {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitSet {
    /// An empty set.
    pub fn new() -> Self {
        WaitSet {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    entries: Vec::new(),
                    ends: 0,
                    pids: HashMap::new(),
                    stats: Stats::default(),
                    last_peers: None,
                    spin: match WaitMode::default() {
                        WaitMode::Block { spin } => spin,
                        WaitMode::Spin => Duration::ZERO,
                    },
                }),
                ctl: AtomicU32::new(0),
                stop: AtomicBool::new(false),
                sleepers: AtomicU32::new(0),
            }),
            watcher: None,
            looker: None,
        }
    }

    /// How the set waits: [`WaitMode::Block`]'s spin is how long it looks before it
    /// sleeps (default 50 µs); [`WaitMode::Spin`] is not offered (a set watches its ends
    /// from one thread and sleeps): it spins 1 ms, then sleeps.
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.shared.lock().spin = match mode {
            WaitMode::Block { spin } => spin,
            WaitMode::Spin => Duration::from_millis(1),
        };
    }

    fn add(&mut self, e: Entry) -> Key {
        let mut g = self.shared.lock();
        let key = match g.entries.iter().position(Option::is_none) {
            Some(i) => {
                g.entries[i] = Some(e);
                Key(i)
            }
            None => {
                g.entries.push(Some(e));
                Key(g.entries.len() - 1)
            }
        };
        drop(g);
        self.shared.poke();
        key
    }

    /// Attaches an end. The set keeps the end's segment mapped and reads the end's
    /// position; the end itself stays the caller's, to take what the set says is ready.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] past [`MAX_ENDS`] ends.
    pub fn attach(&mut self, end: &impl Waitable) -> Result<Key, Error> {
        self.attach_source(end.wait_source())
    }

    /// [`attach`](Self::attach) with a source made already ([`Waitable::wait_source`]).
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub fn attach_source(&mut self, source: WaitSource) -> Result<Key, Error> {
        {
            let mut g = self.shared.lock();
            if g.ends >= MAX_ENDS {
                return Err(Error::InvalidOption {
                    option: "wait set ends",
                    found: g.ends as u64 + 1,
                    expected: "at most 127 (futex_waitv waits on 128 words, one is the set's own)",
                });
            }
            g.ends += 1;
        }
        Ok(self.add(Entry::End {
            src: source.0,
            armed: false,
        }))
    }

    /// Attaches an interval: ready every `every` from now (a tick missed while nobody
    /// waited is one tick).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a zero interval.
    pub fn attach_interval(&mut self, every: Duration) -> Result<Key, Error> {
        if every.is_zero() {
            return Err(Error::InvalidOption {
                option: "wait set interval",
                found: 0,
                expected: "a non-zero interval",
            });
        }
        Ok(self.add(Entry::Interval {
            every,
            next: Instant::now() + every,
        }))
    }

    /// Attaches a deadline: ready from `at` on, until detached.
    pub fn attach_deadline(&mut self, at: Instant) -> Key {
        self.add(Entry::Deadline { at })
    }

    /// Detaches `key` (a key not attached is ignored). Its end is no longer watched and
    /// its segment is let go.
    pub fn detach(&mut self, key: Key) {
        let mut g = self.shared.lock();
        let Some(slot) = g.entries.get_mut(key.0) else {
            return;
        };
        if let Some(Entry::End { src, armed }) = slot.take() {
            if armed {
                src.disarm();
            }
            g.ends -= 1;
        }
        drop(g);
        self.shared.poke();
    }

    /// How the set has slept so far.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats
    }

    /// How many attachments.
    pub fn len(&self) -> usize {
        self.shared.lock().entries.iter().flatten().count()
    }

    /// Whether nothing is attached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What is ready now, without waiting. Empties [`as_fd`](Self::as_fd)'s fd and hands
    /// its watcher the turn (it makes the fd readable again if something still is).
    ///
    /// # Errors
    /// [`TryWaitError::Empty`] when nothing is.
    pub fn try_wait(&mut self) -> Result<Vec<Ready>, TryWaitError> {
        let out = self.look(true);
        if out.is_empty() {
            return Err(TryWaitError::Empty);
        }
        Ok(out)
    }

    /// What is ready now; `peers`: run the liveness checks if they are due.
    fn look(&mut self, peers: bool) -> Vec<Ready> {
        self.taking(|g| {
            let peers = peers && g.peers_due();
            g.collect(true, peers)
        })
    }

    /// Runs a look the owner takes from: empties the fd first and hands its watcher the
    /// turn after (it makes the fd readable again if something still is).
    fn taking(&mut self, look: impl FnOnce(&mut Inner) -> Vec<Ready>) -> Vec<Ready> {
        if let Some(w) = &self.watcher {
            w.clear();
        }
        let out = look(&mut self.shared.lock());
        if self.watcher.is_some() {
            self.shared.poke();
        }
        out
    }

    /// Waits until at least one attachment is ready; returns every ready one.
    ///
    /// # Errors
    /// `Failed` with [`Error::InvalidOption`] on a set with nothing attached (the wait
    /// could never end). An end's own end (a close, a peer's death) is not an error of
    /// the set: it comes as a [`Ready`] with its error.
    pub fn wait(&mut self) -> Result<Vec<Ready>, WaitError> {
        if self.is_empty() {
            return Err(WaitError::Failed(Error::InvalidOption {
                option: "wait set",
                found: 0,
                expected: "something attached (an empty set's wait could never end)",
            }));
        }
        self.wait_impl(None).map_err(Into::into)
    }

    /// [`wait`](Self::wait), at most `timeout` (an empty set just waits it out).
    ///
    /// # Errors
    /// [`WaitTimeoutError::Timeout`] when nothing was ready in time.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Vec<Ready>, WaitTimeoutError> {
        self.wait_impl(Some(timeout)).map_err(Into::into)
    }

    fn wait_impl(&mut self, timeout: Option<Duration>) -> Result<Vec<Ready>, Error> {
        let start = Instant::now();
        let spin = self.shared.lock().spin;
        // The spin: look (the liveness checks only when due) until `spin` has passed.
        // Between two full looks (every `CHECK_SPINS` rounds: closes, truncation, the
        // timers) a round only asks each end whether it has data, one load each.
        let mut rounds = 0u32;
        loop {
            let out = if rounds.is_multiple_of(CHECK_SPINS) {
                self.look(rounds == 0)
            } else {
                // Ends with an error wait for the next full look (at most 64 rounds).
                self.shared.lock().with_data()
            };
            if !out.is_empty() {
                return Ok(out);
            }
            rounds += 1;
            if rounds.is_multiple_of(CHECK_SPINS) && start.elapsed() >= spin {
                break;
            }
            if spin.is_zero() {
                break;
            }
            crate::protocol::sync::spin_hint();
        }
        loop {
            let left = match timeout {
                Some(t) => {
                    let waited = start.elapsed();
                    if waited >= t {
                        return Err(Error::Timeout { waited });
                    }
                    t - waited
                }
                None => super::state::IDLE,
            };
            self.start_looker()?;
            // Acquire: pairs with `poke`'s Release bump.
            let ctl = self.shared.ctl.load(Ordering::Acquire);
            let g = self.shared.lock();
            drop(sleep(&self.shared, g, left, ctl));
            // Woken: the ends with data first (a load or two each); the full look (timers,
            // closes, deaths, truncation) when none has any. An end with an error is
            // reported at the next full look, at the latest the next wait's first.
            let out = self.taking(|g| match g.with_data() {
                d if d.is_empty() => {
                    let peers = g.peers_due();
                    g.collect(true, peers)
                }
                d => d,
            });
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    /// Waits, and calls `f` with each ready attachment, until `f` says
    /// [`ControlFlow::Break`].
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn run(&mut self, mut f: impl FnMut(&Ready) -> ControlFlow<()>) -> Result<(), WaitError> {
        loop {
            for r in self.wait()? {
                if f(&r).is_break() {
                    return Ok(());
                }
            }
        }
    }

    fn start_looker(&mut self) -> Result<(), Error> {
        if self.looker.is_none() {
            self.looker = Some(super::looker::Looker::start(Arc::clone(&self.shared))?);
        }
        Ok(())
    }

    /// A file descriptor readable while anything in the set is ready, for event loops
    /// (see the [module docs](crate::waitset)); the first call starts its watcher
    /// thread. Call [`try_wait`](Self::try_wait) when it is readable.
    ///
    /// # Errors
    /// [`Error::System`] if the eventfd or the thread cannot be made.
    pub fn as_fd(&mut self) -> Result<BorrowedFd<'_>, Error> {
        if self.watcher.is_none() {
            self.start_looker()?;
            self.watcher = Some(super::watcher::Watcher::start(Arc::clone(&self.shared))?);
        }
        Ok(self.watcher.as_ref().expect("started above").fd())
    }
}

impl Drop for WaitSet {
    fn drop(&mut self) {
        // Release: pairs with the threads' Acquire loads of `stop`.
        self.shared.stop.store(true, Ordering::Release);
        if let Some(w) = self.watcher.take() {
            self.shared.poke();
            w.join();
        }
        if let Some(l) = self.looker.take() {
            l.join(&self.shared);
        }
        self.shared.lock().disarm();
    }
}

impl std::fmt::Debug for WaitSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitSet")
            .field("len", &self.len())
            .field("fd", &self.watcher.is_some())
            .finish()
    }
}
