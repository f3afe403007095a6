//! Loom models of the synchronisation protocols.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shm-core --release --test loom`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shm_core::protocol::seqlock;
use shm_core::protocol::sync::{AtomicU32, AtomicU64, Ordering};

/// The pid the models use for a writer that died holding the lock.
const DEAD: u32 = 99;

/// A seqlocked record of two words; a torn read shows up as two different words.
struct Cell {
    seq: AtomicU64,
    owner: AtomicU32,
    words: [AtomicU64; 2],
}

impl Cell {
    fn new() -> Self {
        Cell {
            seq: AtomicU64::new(0),
            owner: AtomicU32::new(0),
            words: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn write_words(&self, v: u64) {
        for w in &self.words {
            // Release, as `copy::store_pod` does for seqlock data.
            w.store(v, Ordering::Release);
        }
    }

    /// `SeqLock::lock` as the library does it: take the lock, or take it over from the
    /// dead writer `DEAD`, else wait.
    fn store(&self, me: u32, v: u64) {
        let s = loop {
            match seqlock::try_lock(&self.seq, &self.owner, me) {
                Ok(s) => break s,
                Err(DEAD) => {
                    if let Ok(s) = seqlock::steal(&self.seq, &self.owner, DEAD, me) {
                        break s;
                    }
                }
                Err(_) => {}
            }
            thread::yield_now();
        };
        self.write_words(v);
        seqlock::unlock(&self.seq, &self.owner, s);
    }

    fn try_load(&self) -> Option<[u64; 2]> {
        seqlock::read(&self.seq, || {
            [
                self.words[0].load(Ordering::Acquire),
                self.words[1].load(Ordering::Acquire),
            ]
        })
        .ok()
    }
}

#[test]
fn seqlock_reader_never_sees_a_torn_value() {
    loom::model(|| {
        let cell = Arc::new(Cell::new());
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || {
                cell.store(1, 1);
                cell.store(1, 2);
            })
        };
        let reader = {
            let cell = cell.clone();
            thread::spawn(move || {
                let mut last = 0;
                for _ in 0..2 {
                    if let Some([a, b]) = cell.try_load() {
                        assert_eq!(a, b, "torn read");
                        assert!(a >= last, "went back in time");
                        last = a;
                    }
                }
            })
        };
        if let Some([a, b]) = cell.try_load() {
            assert_eq!(a, b, "torn read in main");
        }
        writer.join().unwrap();
        reader.join().unwrap();
        assert_eq!(cell.try_load(), Some([2, 2]));
    });
}

#[test]
fn seqlock_two_writers_and_a_reader() {
    loom::model(|| {
        let cell = Arc::new(Cell::new());
        let writers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|v| {
                let cell = cell.clone();
                thread::spawn(move || cell.store(v as u32, v))
            })
            .collect();
        if let Some([a, b]) = cell.try_load() {
            assert_eq!(a, b, "torn read with two writers");
        }
        for w in writers {
            w.join().unwrap();
        }
        let [a, b] = cell.try_load().expect("quiescent read succeeds");
        assert_eq!(a, b);
        assert!(a == 1 || a == 2);
        assert_eq!(cell.seq.load(Ordering::Relaxed), 4);
        assert_eq!(cell.owner.load(Ordering::Relaxed), 0, "lock left held");
    });
}

#[test]
fn seqlock_steal_from_dead_writer_keeps_readers_out() {
    loom::model(|| {
        let cell = Arc::new(Cell::new());
        // A writer "died" holding the lock at 1 after writing one of two words.
        cell.owner.store(DEAD, Ordering::Relaxed);
        cell.seq.store(1, Ordering::Relaxed);
        cell.words[0].store(9, Ordering::Relaxed);
        let recoverer = {
            let cell = cell.clone();
            thread::spawn(move || cell.store(2, 5))
        };
        if let Some([a, b]) = cell.try_load() {
            assert_eq!([a, b], [5, 5], "a reader saw the dead writer's torn value");
        }
        recoverer.join().unwrap();
        assert_eq!(cell.try_load(), Some([5, 5]));
    });
}

/// The window the issue suspected: two writers both find the lock held by the dead writer
/// and both try to take it over, while a reader reads. With the owner word as the lock only
/// one thief can win at a time; the other waits for it, and the reader never accepts a mix.
#[test]
fn seqlock_two_thieves_and_a_reader() {
    loom::model(|| {
        let cell = Arc::new(Cell::new());
        cell.owner.store(DEAD, Ordering::Relaxed);
        cell.seq.store(1, Ordering::Relaxed);
        cell.words[0].store(9, Ordering::Relaxed);
        let thieves: Vec<_> = [(2u32, 20u64), (3, 30)]
            .into_iter()
            .map(|(me, v)| {
                let cell = cell.clone();
                thread::spawn(move || cell.store(me, v))
            })
            .collect();
        if let Some([a, b]) = cell.try_load() {
            assert_eq!(a, b, "torn read while two writers took over a dead lock");
            assert!(a == 20 || a == 30, "read the dead writer's value {a}");
        }
        for t in thieves {
            t.join().unwrap();
        }
        let [a, b] = cell.try_load().expect("quiescent read succeeds");
        assert_eq!(a, b);
        assert_eq!(cell.owner.load(Ordering::Relaxed), 0, "lock left held");
        assert_eq!(cell.seq.load(Ordering::Relaxed) & 1, 0);
    });
}

mod ring_model {
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;
    use shm_core::protocol::ring::{Consumer, Futex, Producer, Shared, Words, PRODUCER_CLOSED};
    use shm_core::protocol::sync::{AtomicU32, AtomicU64, Ordering};
    use std::time::Duration;

    /// A futex as the kernel gives it: the value check and the sleep are atomic with
    /// respect to a wake (both under the bucket lock). No timeouts: a lost wake-up is a
    /// deadlock, which loom reports.
    pub(crate) struct ModelFutex {
        lock: Mutex<()>,
        cv: Condvar,
    }

    impl Futex for ModelFutex {
        fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Option<Duration>) {
            let guard = self.lock.lock().unwrap();
            if word.load(Ordering::Relaxed) == expected {
                drop(self.cv.wait(guard).unwrap());
            }
        }
        fn wake(&self, _word: &AtomicU32) {
            let _guard = self.lock.lock().unwrap();
            self.cv.notify_all();
        }
    }

    pub(crate) const CAP: u64 = 64;

    /// One ring's shared words, and the futex its sides sleep on (the kernel's, modelled;
    /// or the async reactor's, in `async_park_model`).
    pub(crate) struct Ring<F = ModelFutex> {
        tail: AtomicU64,
        head: AtomicU64,
        data_seq: AtomicU32,
        space_seq: AtomicU32,
        consumer_sleeping: AtomicU32,
        producer_sleeping: AtomicU32,
        closed: AtomicU32,
        words: [AtomicU64; (CAP / 8) as usize],
        pub(crate) futex: F,
    }

    impl<F> Words for Ring<F> {
        fn load(&self, pos: u64, order: Ordering) -> u64 {
            self.words[((pos % CAP) / 8) as usize].load(order)
        }
        fn store(&self, pos: u64, v: u64, order: Ordering) {
            self.words[((pos % CAP) / 8) as usize].store(v, order)
        }
    }

    impl Ring {
        fn new() -> Self {
            Ring::with_futex(ModelFutex {
                lock: Mutex::new(()),
                cv: Condvar::new(),
            })
        }
    }

    impl<F> Ring<F> {
        pub(crate) fn with_futex(futex: F) -> Self {
            Ring {
                tail: AtomicU64::new(0),
                head: AtomicU64::new(0),
                data_seq: AtomicU32::new(0),
                space_seq: AtomicU32::new(0),
                consumer_sleeping: AtomicU32::new(0),
                producer_sleeping: AtomicU32::new(0),
                closed: AtomicU32::new(0),
                words: std::array::from_fn(|_| AtomicU64::new(0)),
                futex,
            }
        }
        pub(crate) fn shared(&self) -> Shared<'_> {
            Shared {
                tail: &self.tail,
                head: &self.head,
                data_seq: &self.data_seq,
                space_seq: &self.space_seq,
                consumer_sleeping: &self.consumer_sleeping,
                producer_sleeping: &self.producer_sleeping,
                closed: &self.closed,
            }
        }
    }

    /// Sends `values` as 24-byte messages (footprint 32, plus the 8-byte terminator, in a
    /// 64-byte ring: one message in flight at a time, and every other one wraps behind a
    /// PAD), blocking on a full ring by sleeping. Each word of a message carries `v`.
    fn produce(r: &Ring, values: &[u64]) {
        let sh = r.shared();
        let mut p = Producer::new(CAP, sh).unwrap();
        for &v in values {
            let off = loop {
                if let Some(off) = p.try_reserve(sh, r, &r.futex, 24).unwrap() {
                    break off;
                }
                if let Some(seq) = p.prepare_sleep(sh, 24).unwrap() {
                    r.futex.wait(sh.space_seq, seq, None);
                    p.done_sleeping(sh);
                }
            };
            for w in 0..3 {
                r.store(off + 8 * w, v, Ordering::Relaxed);
            }
            p.commit(sh, r, &r.futex, 24);
        }
        sh.closed.fetch_or(PRODUCER_CLOSED, Ordering::Release);
        sh.data_seq.fetch_add(1, Ordering::Release);
        r.futex.wake(sh.data_seq);
    }

    /// Receives until closed, sleeping on an empty ring.
    fn consume(r: &Ring) -> Vec<u64> {
        let sh = r.shared();
        let mut c = Consumer::new(CAP, sh).unwrap();
        let mut got = Vec::new();
        loop {
            let closed = sh.closed.load(Ordering::Acquire);
            match c.try_peek(sh, r, &r.futex).unwrap() {
                Some((off, len)) => {
                    assert_eq!(len, 24);
                    let words: Vec<u64> = (0..3)
                        .map(|w| r.load(off + 8 * w, Ordering::Relaxed))
                        .collect();
                    assert!(
                        words.iter().all(|&x| x == words[0]),
                        "torn message {words:?}"
                    );
                    got.push(words[0]);
                    c.release(sh, &r.futex, len);
                }
                None if closed & PRODUCER_CLOSED != 0 => return got,
                None => {
                    if let Some(seq) = c.prepare_sleep(sh, r).unwrap() {
                        r.futex.wait(sh.data_seq, seq, None);
                        c.done_sleeping(sh);
                    }
                }
            }
        }
    }

    #[test]
    fn ring_delivers_in_order_across_wraps_without_lost_wakeups() {
        loom::model(|| {
            let r = Arc::new(Ring::new());
            let p = {
                let r = r.clone();
                thread::spawn(move || produce(&r, &[11, 22, 33]))
            };
            let got = consume(&r);
            p.join().unwrap();
            assert_eq!(got, vec![11, 22, 33], "lost, duplicated or reordered");
        });
    }
}

mod broadcast_model {
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;
    use shm_core::protocol::broadcast::{self as protocol, Attempt, Control, Slot};
    use shm_core::protocol::sync::{AtomicU32, AtomicU64, Ordering};

    const SLOTS: u64 = 2;

    /// A futex as the kernel gives it (see `ring_model`): no timeouts, so a lost wake-up
    /// is a deadlock loom reports.
    pub(crate) struct ModelFutex {
        lock: Mutex<()>,
        cv: Condvar,
    }

    impl ModelFutex {
        fn wait(&self, word: &AtomicU32, expected: u32) {
            let guard = self.lock.lock().unwrap();
            if word.load(Ordering::Relaxed) == expected {
                drop(self.cv.wait(guard).unwrap());
            }
        }
        fn wake(&self) {
            let _guard = self.lock.lock().unwrap();
            self.cv.notify_all();
        }
    }

    struct Ring {
        tail: AtomicU64,
        data_seq: AtomicU32,
        sleepers: AtomicU32,
        space_seq: AtomicU32,
        publisher_sleeping: AtomicU32,
        members: AtomicU32,
        position: AtomicU64,
        stamps: [AtomicU64; SLOTS as usize],
        lens: [AtomicU64; SLOTS as usize],
        /// Two payload words per slot: a torn message shows up as two different words.
        words: [[AtomicU64; 2]; SLOTS as usize],
        futex: ModelFutex,
    }

    impl Ring {
        fn new() -> Self {
            Ring {
                tail: AtomicU64::new(0),
                data_seq: AtomicU32::new(0),
                sleepers: AtomicU32::new(0),
                space_seq: AtomicU32::new(0),
                publisher_sleeping: AtomicU32::new(0),
                members: AtomicU32::new(0),
                position: AtomicU64::new(0),
                stamps: std::array::from_fn(|_| AtomicU64::new(0)),
                lens: std::array::from_fn(|_| AtomicU64::new(0)),
                words: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
                futex: ModelFutex {
                    lock: Mutex::new(()),
                    cv: Condvar::new(),
                },
            }
        }
        fn control(&self) -> Control<'_> {
            Control {
                tail: &self.tail,
                data_seq: &self.data_seq,
                sleepers: &self.sleepers,
                space_seq: &self.space_seq,
                publisher_sleeping: &self.publisher_sleeping,
                members: &self.members,
            }
        }
        fn slot(&self, n: u64) -> Slot<'_> {
            let k = (n % SLOTS) as usize;
            Slot {
                stamp: &self.stamps[k],
                len: &self.lens[k],
            }
        }
        /// Publishes message `n` (payload words = `n + 100`), waking sleepers.
        fn write(&self, n: u64) {
            let slot = self.slot(n);
            protocol::begin_write(slot, n);
            for w in &self.words[(n % SLOTS) as usize] {
                // Release, as `copy::store_bytes_ordered` with Release.
                w.store(n + 100, Ordering::Release);
            }
            if protocol::end_write(self.control(), slot, n, 16, n + 1) {
                protocol::bump_data(self.control());
                self.futex.wake();
            }
        }
        /// One read attempt of message `p`.
        fn read(&self, p: u64) -> Attempt<[u64; 2]> {
            let words = &self.words[(p % SLOTS) as usize];
            protocol::try_read(self.control(), self.slot(p), p, SLOTS, 16, |_| {
                [
                    words[0].load(Ordering::Acquire),
                    words[1].load(Ordering::Acquire),
                ]
            })
        }
    }

    /// Lossy: the publisher laps a reader; whatever the reader keeps is whole and is the
    /// message it asked for; what it skips is reported as lag.
    #[test]
    fn lossy_reader_never_keeps_a_torn_or_wrong_message() {
        loom::model(|| {
            let r = Arc::new(Ring::new());
            let publisher = {
                let r = r.clone();
                thread::spawn(move || {
                    for n in 0..3 {
                        r.write(n);
                    }
                })
            };
            let mut p = 0;
            for _ in 0..3 {
                match r.read(p) {
                    Attempt::Got(v) => {
                        assert_eq!(v, [p + 100, p + 100], "torn or wrong message {p}");
                        p += 1;
                    }
                    Attempt::Lagged { resume } => {
                        assert!(resume > p);
                        p = resume;
                    }
                    Attempt::Empty => thread::yield_now(),
                    Attempt::Corrupt(l) | Attempt::BadTail(l) => panic!("corrupt {l}"),
                }
            }
            publisher.join().unwrap();
        });
    }

    /// Reliable: the publisher waits for the subscriber's position (sleeping on the futex
    /// when it must), the subscriber sleeps when there is nothing; 3 messages through 2
    /// slots arrive whole and in order, and nobody sleeps forever.
    #[test]
    fn reliable_positions_hold_and_no_wakeup_is_lost() {
        loom::model(|| {
            let r = Arc::new(Ring::new());
            let publisher = {
                let r = r.clone();
                thread::spawn(move || {
                    for n in 0..3u64 {
                        // Room: the slot's previous message was read.
                        let room =
                            |r: &Ring| n < SLOTS || r.position.load(Ordering::Acquire) > n - SLOTS;
                        while !room(&r) {
                            let c = r.control();
                            if let Some(seq) = protocol::publisher_prepare_sleep(c, || room(&r)) {
                                r.futex.wait(&r.space_seq, seq);
                                protocol::publisher_done_sleeping(c);
                            }
                        }
                        r.write(n);
                    }
                })
            };
            let mut p = 0;
            while p < 3 {
                match r.read(p) {
                    Attempt::Got(v) => {
                        assert_eq!(v, [p + 100, p + 100], "torn or overwritten message {p}");
                        if protocol::release(r.control(), &r.position, p) {
                            protocol::bump_space(r.control());
                            r.futex.wake();
                        }
                        p += 1;
                    }
                    Attempt::Empty => {
                        if let Some(seq) = protocol::prepare_sleep(r.control(), p) {
                            r.futex.wait(&r.data_seq, seq);
                            protocol::done_sleeping(r.control());
                        }
                    }
                    other => panic!("a reliable member saw {other:?} at {p}"),
                }
            }
            publisher.join().unwrap();
        });
    }
}

/// The suspicion from issue 10, settled in the model: the *previous* seqlock protocol (the
/// sequence word was the lock, and the winner stored its pid only after its CAS). A writer
/// `W` wins the CAS; before it stores its pid, a thief sees an odd sequence and the pid of
/// an earlier writer that has since died, and "steals" the lock; `W`'s unlock then makes
/// the sequence even while the thief still writes. This model must find a torn read; it
/// is `#[should_panic]`, so the suite fails if loom stops finding it. The current protocol
/// (the owner word is the lock) passes `seqlock_two_thieves_and_a_reader` above.
mod old_seqlock_protocol {
    use loom::sync::Arc;
    use loom::thread;
    use shm_core::protocol::sync::{AtomicU32, AtomicU64, Ordering};

    const DEAD: u32 = 99;

    struct Old {
        seq: AtomicU64,
        pid: AtomicU32,
        words: [AtomicU64; 2],
    }

    fn write(o: &Old, v: u64) {
        for w in &o.words {
            w.store(v, Ordering::Release);
        }
    }

    #[test]
    #[should_panic(expected = "torn")]
    fn the_old_steal_window_tears_a_read() {
        loom::model(|| {
            // A writer that unlocked and then died left its pid behind.
            let o = Arc::new(Old {
                seq: AtomicU64::new(0),
                pid: AtomicU32::new(DEAD),
                words: [AtomicU64::new(0), AtomicU64::new(0)],
            });
            let w = {
                let o = o.clone();
                thread::spawn(move || {
                    // try_lock: CAS even -> odd, then (too late) the pid.
                    if o.seq
                        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        o.pid.store(1, Ordering::Relaxed);
                        write(&o, 1);
                        o.seq.store(2, Ordering::Release);
                    }
                })
            };
            let t = {
                let o = o.clone();
                thread::spawn(move || {
                    // A writer that finds the lock held by a dead pid steals it.
                    let held = o.seq.load(Ordering::Relaxed);
                    if held & 1 == 1
                        && o.pid.load(Ordering::Relaxed) == DEAD
                        && o.seq
                            .compare_exchange(held, held + 2, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok()
                    {
                        o.pid.store(2, Ordering::Relaxed);
                        write(&o, 2);
                        o.seq.store(held + 3, Ordering::Release);
                    }
                })
            };
            // A reader, as `protocol::read` does it.
            let s1 = o.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let a = o.words[0].load(Ordering::Acquire);
                let b = o.words[1].load(Ordering::Acquire);
                let s2 = o.seq.load(Ordering::Relaxed);
                if s1 == s2 {
                    assert_eq!(a, b, "torn read accepted under the old protocol");
                }
            }
            w.join().unwrap();
            t.join().unwrap();
        });
    }
}

/// The async path's parking (`Receiver::poll_message`): set the sleeping flag, fence,
/// look again (`Consumer::prepare_sleep`), and only then register with the reactor, which
/// checks the word and keeps the waker. The producer publishes, fences, reads the flag and,
/// if set, bumps the word and wakes the reactor. A lost wake-up leaves the consumer parked
/// forever: loom reports the deadlock. The second model sets the flag after its look for
/// data and parks without looking again (the flag check and the park reordered) and must
/// deadlock.
mod async_park_model {
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;
    use shm_core::protocol::ring::{Consumer, Futex, Producer, Words};
    use shm_core::protocol::sync::{AtomicU32, Ordering};
    use std::time::Duration;

    /// The reactor: a registration is (expected value, fired); `wake` fires it when the
    /// word moved; the parked task waits for `fired`.
    struct Reactor {
        state: Mutex<Option<(u32, bool)>>,
        cv: Condvar,
    }

    impl Reactor {
        fn register(&self, word: &AtomicU32, expected: u32) {
            let mut s = self.state.lock().unwrap();
            // futex_waitv returns at once when the word already moved.
            let fired = word.load(Ordering::Relaxed) != expected;
            *s = Some((expected, fired));
        }
        /// The task waits for its waker.
        fn park(&self) {
            let mut s = self.state.lock().unwrap();
            while !matches!(*s, Some((_, true))) {
                s = self.cv.wait(s).unwrap();
            }
            *s = None;
        }
    }

    /// The publisher's `futex_wake` reaches the reactor thread, which fires a registration
    /// whose word moved.
    impl Futex for Reactor {
        fn wait(&self, _word: &AtomicU32, _expected: u32, _t: Option<Duration>) {
            unreachable!("the async consumer never futex-waits on its own thread")
        }
        fn wake(&self, _word: &AtomicU32) {
            let mut s = self.state.lock().unwrap();
            if let Some((_, fired)) = s.as_mut() {
                *fired = true;
            }
            self.cv.notify_all();
        }
    }

    use super::ring_model::{Ring, CAP};

    fn run(reordered: bool) {
        loom::model(move || {
            let r = Arc::new(Ring::with_futex(Reactor {
                state: Mutex::new(None),
                cv: Condvar::new(),
            }));
            let producer = {
                let r = r.clone();
                thread::spawn(move || {
                    let sh = r.shared();
                    let mut p = Producer::new(CAP, sh).unwrap();
                    let off = p.try_reserve(sh, &*r, &r.futex, 8).unwrap().unwrap();
                    r.store(off, 7, Ordering::Relaxed);
                    p.commit(sh, &*r, &r.futex, 8);
                })
            };
            let sh = r.shared();
            let mut c = Consumer::new(CAP, sh).unwrap();
            loop {
                if let Some((_, len)) = c.try_peek(sh, &*r, &r.futex).unwrap() {
                    c.release(sh, &r.futex, len);
                    break;
                }
                if reordered {
                    // Wrong: the look for data (above) comes before the sleeping flag,
                    // and the task parks without looking again after setting it.
                    let seq = sh.data_seq.load(Ordering::Acquire);
                    r.futex.register(sh.data_seq, seq);
                    sh.consumer_sleeping.store(1, Ordering::Relaxed);
                    r.futex.park();
                    c.done_sleeping(sh);
                } else if let Some(seq) = c.prepare_sleep(sh, &*r).unwrap() {
                    r.futex.register(sh.data_seq, seq);
                    r.futex.park();
                    c.done_sleeping(sh);
                }
            }
            producer.join().unwrap();
        });
    }

    #[test]
    fn async_park_after_the_flag_loses_no_wakeup() {
        run(false);
    }

    #[test]
    #[should_panic(expected = "deadlock")]
    fn async_park_without_a_second_look_loses_a_wakeup() {
        run(true);
    }
}
