//! Bounded waiting: the one primitive every wait in the workspace goes through, and the
//! drivers that run each endpoint's one step function.
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
//!
//! ## One step function per endpoint
//!
//! Each endpoint operation (a channel send or receive, a broadcast publish or receive) is
//! written once, as a `Step`: `look` (one attempt), `check` (the round's checks),
//! `prepare` (announce a sleep and say what to [`Park`] on) and `done`. Three drivers run
//! it: `try_once` (one look, then the cheap checks), `block` (a [`Waiter`] loop) and
//! `poll_step` (a future's poll: spin, then park with the
//! [`reactor`](crate::os::reactor)). The parked future is watched by the reactor for
//! everything a blocking round would notice: its futex word, the words the step names in
//! its [`Park`] (the peer's holder word, the close word, the word its condition reads), the
//! peer's death, and truncation; and at least every [`SLICE`] the reactor looks again,
//! so a future cannot depend only on its futex word or on a peer that existed when it
//! parked.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::format::error::Error;
use crate::os::park::{Park, SLICE};

/// Spins between two looks at the clock (deadline and cheap checks).
pub const CHECK_SPINS: u32 = 64;
/// The longest time between two peer-liveness checks.
pub const PEER_CHECK: Duration = Duration::from_millis(1);

const POLL_SPINS: u32 = 64;
const POLL_YIELDS: u32 = 128;

/// How long an awaiting call spins before it parks when its end is in
/// [`WaitMode::Spin`] (a future must not spin without end: it holds an executor thread).
pub const ASYNC_SPIN: Duration = Duration::from_micros(50);

/// How an endpoint waits for the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// Busy-poll; never sleeps. Lowest latency, one core per waiting side.
    Spin,
    /// Spin for `spin`, then sleep on a futex until woken. A broadcast's ends yield the
    /// CPU now and then while they spin (their peers often share it); a channel's do not
    /// (on a loaded machine a yield hands the CPU to another process for a whole slice).
    Block {
        /// How long to spin before sleeping (zero: sleep at the first wait).
        spin: Duration,
    },
}

impl WaitMode {
    /// How long an awaiting call spins before it parks (a future must not spin without
    /// end: it holds an executor thread).
    pub(crate) fn async_spin(self) -> Duration {
        match self {
            WaitMode::Block { spin } => spin,
            WaitMode::Spin => ASYNC_SPIN,
        }
    }

    /// The pace of a wait whose one peer runs on another CPU (a channel's ends).
    pub(crate) fn pace(self) -> Pace {
        match self {
            WaitMode::Spin => Pace::Spin,
            WaitMode::Block { spin } => Pace::Block {
                spin,
                yields: false,
            },
        }
    }

    /// The pace of a wait whose peers may share our CPU (a broadcast's ends): the spin
    /// yields (see [`Pace::Block`]).
    pub(crate) fn pace_shared(self) -> Pace {
        match self {
            WaitMode::Spin => Pace::Spin,
            WaitMode::Block { spin } => Pace::Block { spin, yields: true },
        }
    }
}

impl Default for WaitMode {
    fn default() -> Self {
        WaitMode::Block {
            spin: Duration::from_micros(50),
        }
    }
}

/// How a [`Waiter`] waits between two looks at its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Busy-poll; never sleeps.
    Spin,
    /// Spin for `spin`, then sleep through [`Sleeper::prepare`] in slices of at most
    /// [`SLICE`].
    Block {
        /// How long to spin first.
        spin: Duration,
        /// Whether the spin yields the CPU every [`CHECK_SPINS`] rounds: for waits whose
        /// peers are likely to share our CPU (a broadcast's subscribers, usually more
        /// processes than cores), where a yield lets a co-subscriber with work to do run.
        /// A channel's wait does not: its one peer runs elsewhere or gets the CPU when we
        /// sleep, and a yield on a loaded machine hands the CPU to an unrelated process
        /// for a whole time slice (measured: 1 MiB streams under two busy-loop processes
        /// fell to 0.7 GiB/s, below a Unix socket; BENCHMARKS.md section 11).
        yields: bool,
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

    /// Gets ready to sleep: `Ok(Some(park))` to sleep on it, `Ok(None)` if the condition
    /// may hold now (the loop looks again; the next round runs the checks again). After a
    /// `Some`, [`done`](Self::done) is called once the sleep is over. The default sleeps
    /// without a word (polling).
    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        Ok(Some(Park::poll()))
    }

    /// Undoes what `prepare` announced, after a sleep.
    fn done(&mut self) {}
}

/// The process an endpoint belongs to: its pid and the fork generation it was made
/// under. In a forked child every operation of the end is [`Error::Forked`] and its drop
/// changes nothing shared (see [`crate::os::proc::fork_generation`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pid: u32,
    fork: u64,
}

impl Owner {
    /// The calling process, now.
    pub(crate) fn current() -> Self {
        Owner {
            pid: crate::os::proc::current_pid(),
            fork: crate::os::proc::fork_generation(),
        }
    }

    /// The owner's pid (read once: a `getpid` per operation showed in profiles).
    pub(crate) fn pid(self) -> u32 {
        self.pid
    }

    /// Whether this is a forked child of the owner. One relaxed load.
    #[inline]
    pub(crate) fn forked(self) -> bool {
        crate::os::proc::forked_since(self.fork)
    }

    /// [`Error::Forked`] in a forked child of the owner.
    #[inline]
    pub(crate) fn check(self) -> Result<(), Error> {
        if self.forked() {
            return Err(Error::Forked { parent: self.pid });
        }
        Ok(())
    }
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
    fn checks(&mut self, s: &mut (impl Sleeper + ?Sized)) -> Result<(), Error> {
        let now = self.elapsed();
        let peer = now.saturating_sub(self.last_peer_check) >= PEER_CHECK;
        if peer {
            self.last_peer_check = now;
        }
        if let Some(t) = self.timeout {
            if now >= t {
                // A wait that slept through to its deadline still runs the checks that
                // are due, so a caller looping on short timeouts is told of a dead peer
                // (or a broken ring) rather than timing out for ever.
                s.check(peer)?;
                return Err(Error::Timeout { waited: now });
            }
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
            // A zero spin sleeps at once (the caller asked for no spin at all).
            Pace::Block { spin, .. } => {
                !spin.is_zero()
                    && (!self.rounds.is_multiple_of(CHECK_SPINS) || self.elapsed() < spin)
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
    pub fn pause(&mut self, s: &mut (impl Sleeper + ?Sized)) -> Result<(), Error> {
        self.rounds = self.rounds.wrapping_add(1);
        if self.spinning() {
            if self.rounds.is_multiple_of(CHECK_SPINS) {
                self.checks(s)?;
                if matches!(self.pace, Pace::Block { yields: true, .. }) {
                    // Let a peer that shares our core run: with more runnable processes
                    // than cores (a broadcast to several subscribers on two cores), a
                    // spinning waiter would otherwise hold the core the publisher needs.
                    std::thread::yield_now();
                    return Ok(());
                }
            }
            crate::protocol::sync::spin_hint();
            return Ok(());
        }
        self.checks(s)?;
        let limit = self.remaining().map_or(SLICE, |r| r.min(SLICE));
        let limit = match self.pace {
            Pace::Spin => unreachable!("a spinning pace never sleeps"),
            Pace::Poll if self.rounds < POLL_YIELDS => {
                std::thread::yield_now();
                return Ok(());
            }
            Pace::Poll => {
                let step = Duration::from_micros(10u64 << self.poll_sleep.min(7));
                self.poll_sleep = self.poll_sleep.saturating_add(1);
                step.min(limit)
            }
            Pace::Block { .. } => limit,
        };
        if let Some(park) = s.prepare()? {
            park.sleep(limit);
            s.done();
        }
        Ok(())
    }
}

/// One endpoint operation, written once: the try, blocking and async calls all run it
/// (through [`try_once`], [`block`] and [`poll_step`]), so no path can skip a check
/// another path makes.
pub(crate) trait Step: Sleeper {
    /// What the operation yields.
    type Out;
    /// One attempt: `Ok(Some(out))` when the operation is done, `Ok(None)` to wait,
    /// `Err` for an end (a close once everything was read, corruption, eviction).
    fn look(&mut self) -> Result<Option<Self::Out>, Error>;
}

/// The try call: one look; if it must wait, the round's checks, then `would_wait`
/// (`Empty` or `Full`). The cheap checks run every time; the peer's liveness (a system
/// call) when [`PEER_CHECK`] has passed since the last one, read off the clock every
/// [`CHECK_SPINS`] tries that would wait: a caller polling a try sees its peer's death as
/// a blocking wait would, and a wait set that reports an end ready with its peer's death
/// is matched by the end's own try.
///
/// Inlined into each try call with the step's look, so the common outcome (done at the
/// first look) costs the look alone; the round that would wait is out of line.
#[inline(always)]
pub(crate) fn try_once<S: Step + ?Sized>(
    s: &mut S,
    parked: &mut Parked,
    would_wait: Error,
) -> Result<S::Out, Error> {
    if let Some(x) = s.look()? {
        return Ok(x);
    }
    would_wait_round(s, parked, would_wait)
}

/// [`try_once`]'s round when the look found nothing: the checks, then `would_wait`.
#[cold]
#[inline(never)]
fn would_wait_round<S: Step + ?Sized>(
    s: &mut S,
    parked: &mut Parked,
    would_wait: Error,
) -> Result<S::Out, Error> {
    let peer = parked.peer_check_due();
    s.check(peer)?;
    Err(would_wait)
}

/// The blocking call: look, then [`Waiter::pause`], until done or ended.
#[inline]
pub(crate) fn block<S: Step + ?Sized>(
    s: &mut S,
    pace: Pace,
    timeout: Option<Duration>,
) -> Result<S::Out, Error> {
    // The first look before any waiting state exists: the common case, where the
    // message or the room is there already, costs one look.
    if let Some(x) = s.look()? {
        return Ok(x);
    }
    let mut w = Waiter::new(pace, timeout);
    loop {
        w.pause(s)?;
        if let Some(x) = s.look()? {
            return Ok(x);
        }
    }
}

/// A future's parked state, kept in its endpoint: the reactor registration, and whether
/// the step announced a sleep that [`Sleeper::done`] must take back.
#[derive(Default)]
pub(crate) struct Parked {
    registration: Option<crate::os::reactor::Registration>,
    announced: bool,
    /// Tries that would have waited since the clock was last read.
    tries: u32,
    /// When the try calls' next liveness check is due (`None`: at the next try).
    next_peer_check: Option<Instant>,
}

impl Parked {
    /// Whether a try that would wait runs the peer's liveness check now (see
    /// [`try_once`]).
    fn peer_check_due(&mut self) -> bool {
        self.tries = self.tries.wrapping_add(1);
        if self.next_peer_check.is_some() && !self.tries.is_multiple_of(CHECK_SPINS) {
            return false;
        }
        let now = Instant::now();
        if self.next_peer_check.is_some_and(|t| now < t) {
            return false;
        }
        self.next_peer_check = Some(now + PEER_CHECK);
        true
    }

    /// Leaves the reactor and takes back the announcement: at every poll, and when the
    /// future or the endpoint is dropped.
    pub(crate) fn release(&mut self, s: &mut (impl Sleeper + ?Sized)) {
        self.registration = None;
        if std::mem::take(&mut self.announced) {
            s.done();
        }
    }
}

/// The async call's poll: take back the last park, look (spinning for `spin`, with the
/// cheap checks every [`CHECK_SPINS`] looks), then the full checks (peer included), then
/// announce and park with the reactor. A future polled again after a wake-up runs the
/// same code from the top.
pub(crate) fn poll_step<S: Step + ?Sized>(
    s: &mut S,
    parked: &mut Parked,
    spin: Duration,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Out, Error>> {
    parked.release(s);
    let mut rounds: u32 = 0;
    let mut start: Option<Instant> = None;
    loop {
        match s.look() {
            Err(e) => return Poll::Ready(Err(e)),
            Ok(Some(x)) => return Poll::Ready(Ok(x)),
            Ok(None) => {}
        }
        rounds = rounds.wrapping_add(1);
        if rounds.is_multiple_of(CHECK_SPINS) {
            if let Err(e) = s.check(false) {
                return Poll::Ready(Err(e));
            }
            if start.get_or_insert_with(Instant::now).elapsed() >= spin {
                break;
            }
        } else if spin.is_zero() {
            break;
        } else {
            crate::protocol::sync::spin_hint();
        }
    }
    if let Err(e) = s.check(true) {
        return Poll::Ready(Err(e));
    }
    match s.prepare() {
        Err(e) => Poll::Ready(Err(e)),
        Ok(None) => {
            // The condition may hold now: look again at the next poll.
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        Ok(Some(park)) => {
            let reg = crate::os::reactor::register(&park, cx.waker());
            parked.registration = Some(reg);
            parked.announced = true;
            Poll::Pending
        }
    }
}

/// What a [`WaitSet`](crate::waitset::WaitSet) watches of one end: made by the end's
/// [`Waitable::wait_source`], it shares the end's segment (so it keeps the mapping alive)
/// and reads the end's position through a process-local copy the end keeps up to date.
pub struct WaitSource(pub(crate) Box<dyn Source>);

impl std::fmt::Debug for WaitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitSource")
    }
}

/// An end a [`WaitSet`](crate::waitset::WaitSet) can wait on: a channel
/// [`Receiver`](crate::Receiver), a broadcast [`Subscriber`](crate::Subscriber), an event
/// [`Listener`](crate::Listener).
pub trait Waitable {
    /// What a wait set watches of this end.
    fn wait_source(&self) -> WaitSource;
}

/// One end as a wait set sees it. Every method only reads shared words (and the end's
/// local position), except `arm`/`disarm`, which announce a sleep the way the end's own
/// wait does.
pub(crate) trait Source: Send {
    /// Whether the end's try operation would get something now: `Ok(true)` for data (or
    /// ids), `Err(e)` when it would end with `e` (a close, a peer's death, a truncation:
    /// the set reports the end ready with it). `dead` says whether a pid is a dead
    /// process (the set watches pidfds). Changes nothing.
    fn ready(&self, dead: &dyn Fn(u32) -> bool) -> Result<bool, Error>;
    /// Whether the end has data (or ids) now: `ready`'s first question alone, a load or
    /// two, for a spinning set's rounds between full looks.
    fn has_data(&self) -> bool;
    /// Announces a sleep as the end's own wait does: `Some((word, value))` to sleep on,
    /// or `None` when the end is ready now (nothing announced).
    fn arm(&self) -> Option<(crate::format::view::Word32, u32)>;
    /// Takes back what `arm` announced.
    fn disarm(&self);
    /// The processes whose death ends the end's wait.
    fn peers(&self, out: &mut Vec<u32>);
    /// The longest sleep (an end no one wakes, such as a read-only subscriber, polls).
    fn limit(&self) -> Option<Duration> {
        None
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
        fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
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
                yields: true,
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
            fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
                Ok(None)
            }
        }
        for pace in [
            Pace::Spin,
            Pace::Poll,
            Pace::Block {
                spin: Duration::ZERO,
                yields: false,
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
                yields: true,
            },
            Some(Duration::MAX),
        );
        for _ in 0..1000 {
            w.pause(&mut DeadlineOnly).unwrap();
        }
    }
}
