//! Bounded waiting: the one primitive every wait in the workspace goes through.
//!
//! A wait loop has the shape
//!
//! ```text
//! let mut w = Waiter::new(pace, timeout);
//! loop {
//!     if let Some(x) = try_the_operation()? { return Ok(x) }
//!     w.pause(&mut sleeper)?;       // the only way round again
//! }
//! ```
//!
//! [`Waiter::pause`] is the only way such a loop goes round again, and it is where the
//! wait can end: it checks the deadline, and asks the [`Sleeper`] whether the wait must end
//! for another reason (the other side closed, its process died, the segment was truncated
//! under us). While spinning it does so at least every [`CHECK_SPINS`] rounds (the clock
//! and the cheap checks) and every [`PEER_CHECK`] of time (the liveness check, a system
//! call); once it sleeps, on every round. Nothing a caller or a peer does (a room check
//! that disagrees with itself, a close in the middle of a spin, a wake-up storm) can make
//! a loop go round without passing those checks, so every wait ends: at the deadline, at
//! the peer's close or death, or when the condition it waits for holds.
//!
//! How it waits is its [`Pace`]: spin only, spin then sleep on a futex (through the
//! sleeper), or poll (spin, yield, then sleep with a growing interval) for conditions that
//! have no futex.

use std::time::{Duration, Instant};

use crate::Error;

/// Spins between two looks at the clock (deadline and cheap checks).
pub const CHECK_SPINS: u32 = 64;
/// The longest time between two peer-liveness checks.
pub const PEER_CHECK: Duration = Duration::from_millis(1);
/// The longest single sleep: a sleeper wakes at least this often to run the checks.
pub const SLICE: Duration = Duration::from_millis(20);

const POLL_SPINS: u32 = 64;
const POLL_YIELDS: u32 = 128;

/// How a [`Waiter`] waits between two looks at its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Busy-poll; never sleeps.
    Spin,
    /// Spin for `spin`, then sleep through [`Sleeper::prepare`] / [`Sleeper::sleep`] in
    /// slices of at most [`SLICE`].
    Block {
        /// How long to spin first.
        spin: Duration,
    },
    /// Spin 64 rounds, yield 64, then sleep from 10 µs doubling up to 1 ms: for conditions
    /// nobody wakes us for.
    Poll,
}

/// What a wait checks and how it sleeps. Only [`check`](Self::check) is required.
pub trait Sleeper {
    /// Whether the wait must end now for a reason other than its deadline: `Err` ends it.
    /// `peer` asks for the expensive checks too (is the peer's process alive?); without it
    /// only cheap ones (a close flag, a truncation flag).
    fn check(&mut self, peer: bool) -> Result<(), Error>;

    /// Gets ready to sleep: `Ok(Some(token))` to sleep on `token`, `Ok(None)` if the
    /// condition may hold now (the loop looks again; the next round runs the checks
    /// again). The default sleeps without a token (polling).
    fn prepare(&mut self) -> Result<Option<u32>, Error> {
        Ok(Some(0))
    }

    /// Sleeps for at most `limit` (it may return early for any reason).
    fn sleep(&mut self, token: u32, limit: Duration) {
        let _ = token;
        std::thread::sleep(limit);
    }

    /// Undoes what `prepare` announced, after a sleep.
    fn done(&mut self) {}
}

/// A sleeper with no checks of its own, for waits bounded by their deadline alone.
#[derive(Debug, Default)]
pub struct DeadlineOnly;

impl Sleeper for DeadlineOnly {
    fn check(&mut self, _peer: bool) -> Result<(), Error> {
        Ok(())
    }
}

/// One bounded wait: its pace, its deadline, and how far it has gone.
#[derive(Debug)]
pub struct Waiter {
    pace: Pace,
    /// Read lazily: a wait that succeeds within its first spins never reads the clock
    /// (unless it has a timeout, which counts from the call).
    start: Option<Instant>,
    timeout: Option<Duration>,
    rounds: u32,
    sleeping: bool,
    /// When (since the start) the peer was last checked; the first check comes once
    /// [`PEER_CHECK`] has passed, so a short wait never makes the liveness system call.
    last_peer_check: Duration,
    poll_sleep: u32,
}

impl Waiter {
    /// A wait at `pace`, ending with [`Error::Timeout`] after `timeout` (`None`: only the
    /// sleeper's checks end it).
    pub fn new(pace: Pace, timeout: Option<Duration>) -> Self {
        Waiter {
            pace,
            start: timeout.map(|_| Instant::now()),
            timeout,
            rounds: 0,
            sleeping: false,
            last_peer_check: Duration::ZERO,
            poll_sleep: 0,
        }
    }

    /// How long since the wait began (the first call reads the clock if nothing did).
    pub fn elapsed(&mut self) -> Duration {
        self.start.get_or_insert_with(Instant::now).elapsed()
    }

    fn remaining(&mut self) -> Option<Duration> {
        let t = self.timeout?;
        Some(t.saturating_sub(self.elapsed()))
    }

    /// The deadline, then the sleeper's checks (the peer's only if one is due).
    fn checks(&mut self, s: &mut impl Sleeper) -> Result<(), Error> {
        let now = self.elapsed();
        if let Some(t) = self.timeout {
            if now >= t {
                return Err(Error::Timeout { waited: now });
            }
        }
        let peer = now.saturating_sub(self.last_peer_check) >= PEER_CHECK;
        if peer {
            self.last_peer_check = now;
        }
        s.check(peer)
    }

    /// Whether this round still spins.
    #[inline]
    fn spinning(&mut self) -> bool {
        if self.sleeping {
            return false;
        }
        let spin = match self.pace {
            Pace::Spin => true,
            Pace::Poll => self.rounds < POLL_SPINS,
            Pace::Block { spin } => {
                !self.rounds.is_multiple_of(CHECK_SPINS) || self.elapsed() < spin
            }
        };
        self.sleeping = !spin;
        spin
    }

    /// Waits a little, then returns so that the caller looks at its condition again; or
    /// ends the wait with the error that ends it (deadline, or the sleeper's checks).
    ///
    /// This is the only way a wait loop may go round again.
    #[inline]
    pub fn pause(&mut self, s: &mut impl Sleeper) -> Result<(), Error> {
        self.rounds = self.rounds.wrapping_add(1);
        if self.spinning() {
            if self.rounds.is_multiple_of(CHECK_SPINS) {
                self.checks(s)?;
                if matches!(self.pace, Pace::Block { .. }) {
                    // Let a peer that shares our core run: with more runnable processes
                    // than cores (a broadcast to several subscribers on two cores), a
                    // spinning waiter would otherwise hold the core the publisher needs.
                    std::thread::yield_now();
                    return Ok(());
                }
            }
            crate::sync::spin_hint();
            return Ok(());
        }
        self.checks(s)?;
        let limit = self.remaining().map_or(SLICE, |r| r.min(SLICE));
        match self.pace {
            Pace::Spin => unreachable!("a spinning pace never sleeps"),
            Pace::Poll => {
                if self.rounds < POLL_YIELDS {
                    std::thread::yield_now();
                } else {
                    let step = Duration::from_micros(10u64 << self.poll_sleep.min(7));
                    self.poll_sleep = self.poll_sleep.saturating_add(1);
                    if let Some(token) = s.prepare()? {
                        s.sleep(token, step.min(limit));
                        s.done();
                    }
                }
            }
            Pace::Block { .. } => {
                if let Some(token) = s.prepare()? {
                    s.sleep(token, limit);
                    s.done();
                }
            }
        }
        Ok(())
    }
}

/// The spin phase of an awaiting call: `pause` between looks, the clock read every 64
/// rounds; `again` is false once `spin` is over (then the future parks). The caller makes
/// its checks (close, corruption, truncation) on every look.
pub(crate) struct Spinner {
    spin: Duration,
    start: Option<Instant>,
    rounds: u32,
}

impl Spinner {
    pub(crate) fn new(spin: Duration) -> Self {
        Spinner {
            spin,
            start: None,
            rounds: 0,
        }
    }

    pub(crate) fn again(&mut self) -> bool {
        self.rounds = self.rounds.wrapping_add(1);
        if !self.rounds.is_multiple_of(CHECK_SPINS) {
            crate::sync::spin_hint();
            return true;
        }
        self.start.get_or_insert_with(Instant::now).elapsed() < self.spin
    }
}

/// A point in time after which a wait gives up.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    limit: Duration,
}

impl Deadline {
    /// A deadline `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Deadline {
            start: Instant::now(),
            limit,
        }
    }
    /// Whether the limit has passed.
    pub fn expired(&self) -> bool {
        self.start.elapsed() >= self.limit
    }
    /// How long since the deadline was set.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
    /// What is left, zero once expired.
    pub fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.start.elapsed())
    }
}

/// Polls `ready` until it returns `Some`, at [`Pace::Poll`], for at most `timeout`:
/// [`Error::Timeout`] after that. For waits whose only bound is time (a child to exit, a
/// lock a peer holds for a moment).
pub fn poll_until<T>(timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> Result<T, Error> {
    let mut w = Waiter::new(Pace::Poll, Some(timeout));
    loop {
        if let Some(v) = ready() {
            return Ok(v);
        }
        w.pause(&mut DeadlineOnly)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sleeper whose `prepare` always says "look again": the shape of the old bug where
    /// a disagreeing room check skipped every check. The deadline must still end it.
    struct NeverSleeps(u64);
    impl Sleeper for NeverSleeps {
        fn check(&mut self, _peer: bool) -> Result<(), Error> {
            self.0 += 1;
            Ok(())
        }
        fn prepare(&mut self) -> Result<Option<u32>, Error> {
            Ok(None)
        }
    }

    #[test]
    fn a_sleeper_that_never_sleeps_still_times_out() {
        for pace in [
            Pace::Spin,
            Pace::Poll,
            Pace::Block {
                spin: Duration::from_micros(50),
            },
        ] {
            let mut w = Waiter::new(pace, Some(Duration::from_millis(30)));
            let mut s = NeverSleeps(0);
            let err = loop {
                if let Err(e) = w.pause(&mut s) {
                    break e;
                }
            };
            assert!(matches!(err, Error::Timeout { .. }), "{pace:?}: {err}");
            assert!(s.0 > 0, "{pace:?}: the sleeper's checks never ran");
        }
    }

    #[test]
    fn a_check_error_ends_the_wait_without_a_deadline() {
        struct ClosesAfter(u32);
        impl Sleeper for ClosesAfter {
            fn check(&mut self, _peer: bool) -> Result<(), Error> {
                self.0 = self.0.saturating_sub(1);
                if self.0 == 0 {
                    Err(Error::Closed)
                } else {
                    Ok(())
                }
            }
            fn prepare(&mut self) -> Result<Option<u32>, Error> {
                Ok(None)
            }
        }
        for pace in [
            Pace::Spin,
            Pace::Poll,
            Pace::Block {
                spin: Duration::ZERO,
            },
        ] {
            let mut w = Waiter::new(pace, None);
            let mut s = ClosesAfter(5);
            let err = loop {
                if let Err(e) = w.pause(&mut s) {
                    break e;
                }
            };
            assert_eq!(err, Error::Closed, "{pace:?}");
        }
    }

    #[test]
    fn huge_and_zero_timeouts_are_fine() {
        assert!(matches!(
            poll_until(Duration::ZERO, || None::<()>),
            Err(Error::Timeout { .. })
        ));
        assert_eq!(poll_until(Duration::MAX, || Some(7)), Ok(7));
        let mut w = Waiter::new(
            Pace::Block {
                spin: Duration::MAX,
            },
            Some(Duration::MAX),
        );
        for _ in 0..1000 {
            w.pause(&mut DeadlineOnly).unwrap();
        }
    }
}
