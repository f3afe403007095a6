//! What a parked wait sleeps on and watches ([`Park`]), shared by the blocking waits of
//! the `wait` layer above and the [`reactor`](crate::os::reactor) that watches parked futures.
//! It lives in the OS layer beside the reactor, so both import it downward.

use std::time::Duration;

use crate::protocol::sync::{AtomicU32, AtomicU64};

/// The longest single sleep: a sleeper wakes at least this often to run the checks, and
/// a parked future is looked at by the reactor at least this often.
pub const SLICE: Duration = Duration::from_millis(20);

/// The most words a [`Park`] watches besides its futex word. A park asked to watch more
/// is a bug in the step that builds it, caught where the park is built (see
/// [`Park::watch_u32`]): a word silently not watched would let a parked future miss
/// what a blocking round notices.
pub const WATCH_MAX: usize = 6;

/// A word a parked wait watches, with the value it had when the wait announced itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Watched<'a> {
    U32(&'a AtomicU32, u32),
    U64(&'a AtomicU64, u64),
}

/// What an announced wait sleeps on: its futex word (or nothing, to poll), the words
/// whose change ends a parked future's wait, the peer whose death ends it, and how long
/// a blocking sleep may last.
#[derive(Debug, Clone, Copy)]
pub struct Park<'a> {
    pub(crate) futex: Option<(&'a AtomicU32, u32)>,
    pub(crate) watch: [Option<Watched<'a>>; WATCH_MAX],
    pub(crate) limit: Option<Duration>,
    pub(crate) peer: u32,
    pub(crate) periodic: bool,
}

impl<'a> Park<'a> {
    /// Sleep while `word` holds `expected` (a futex wait; woken by the other side).
    pub fn futex(word: &'a AtomicU32, expected: u32) -> Self {
        Park {
            futex: Some((word, expected)),
            watch: [None; WATCH_MAX],
            limit: None,
            peer: 0,
            periodic: false,
        }
    }

    /// Sleep with no word to wake us: the wait polls.
    pub fn poll() -> Self {
        Park {
            futex: None,
            watch: [None; WATCH_MAX],
            limit: None,
            peer: 0,
            periodic: true,
        }
    }

    /// Also end a parked future's wait when `word` no longer holds `value`.
    ///
    /// # Panics
    /// On a park already watching [`WATCH_MAX`] words: every step's park is built by
    /// the tests, so a step that names too many words fails them, never a user.
    pub fn watch_u32(self, word: &'a AtomicU32, value: u32) -> Self {
        self.add(Watched::U32(word, value))
    }

    /// [`watch_u32`](Self::watch_u32) for an 8-byte word.
    pub fn watch_u64(self, word: &'a AtomicU64, value: u64) -> Self {
        self.add(Watched::U64(word, value))
    }

    fn add(mut self, w: Watched<'a>) -> Self {
        let Some(free) = self.watch.iter_mut().find(|x| x.is_none()) else {
            panic!("a park watches at most WATCH_MAX ({WATCH_MAX}) words");
        };
        *free = Some(w);
        self
    }

    /// Sleep at most `limit` at a time (the poll interval of a polling wait).
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The process whose death ends the wait (0: none yet).
    pub fn peer(mut self, pid: u32) -> Self {
        self.peer = pid;
        self
    }

    /// Wake a parked future at every reactor tick ([`SLICE`]) whatever the words say: for
    /// a condition spread over more words than a park can watch, or one with a deadline
    /// of its own (the reliable publisher's eviction timeout).
    pub fn periodic(mut self) -> Self {
        self.periodic = true;
        self
    }

    /// Sleeps at most `limit` (and the park's own limit): on the futex word, or plainly.
    pub(crate) fn sleep(&self, limit: Duration) {
        let limit = self.limit.map_or(limit, |l| l.min(limit));
        match self.futex {
            Some((word, expected)) => crate::os::futex::wait(word, expected, Some(limit)),
            None => std::thread::sleep(limit),
        }
    }
}
