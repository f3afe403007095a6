//! Loom models of the synchronisation protocols.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shm-core --release --test loom`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shm_core::protocol::seqlock;
use shm_core::sync::{AtomicU64, Ordering};

/// A seqlocked record of two words; a torn read shows up as two different words.
struct Cell {
    seq: AtomicU64,
    words: [AtomicU64; 2],
}

impl Cell {
    fn new() -> Self {
        Cell {
            seq: AtomicU64::new(0),
            words: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn store(&self, v: u64) {
        let s = loop {
            match seqlock::try_lock(&self.seq) {
                Ok(s) => break s,
                Err(_) => thread::yield_now(),
            }
        };
        for w in &self.words {
            // Release, as `copy::store_pod` does for seqlock data.
            w.store(v, Ordering::Release);
        }
        seqlock::unlock(&self.seq, s);
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
                cell.store(1);
                cell.store(2);
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
                thread::spawn(move || cell.store(v))
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
    });
}

#[test]
fn seqlock_steal_from_dead_writer_keeps_readers_out() {
    loom::model(|| {
        let cell = Arc::new(Cell::new());
        // A writer "died" holding the lock at 1 after writing one of two words.
        cell.seq.store(1, Ordering::Relaxed);
        cell.words[0].store(9, Ordering::Relaxed);
        let recoverer = {
            let cell = cell.clone();
            thread::spawn(move || {
                let s = seqlock::steal(&cell.seq, 1).expect("steal");
                for w in &cell.words {
                    w.store(5, Ordering::Release);
                }
                seqlock::unlock(&cell.seq, s);
            })
        };
        if let Some([a, b]) = cell.try_load() {
            assert_eq!([a, b], [5, 5], "a reader saw the dead writer's torn value");
        }
        recoverer.join().unwrap();
        assert_eq!(cell.try_load(), Some([5, 5]));
    });
}
