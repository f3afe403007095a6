//! Bounded waiting: spin briefly, then yield, then sleep with a growing interval.
//!
//! Every wait in the workspace is bounded by a [`Deadline`]; nothing a peer does can make
//! us spin forever.

use std::time::{Duration, Instant};

/// A spin-then-yield-then-sleep backoff for polling shared memory.
#[derive(Debug, Default)]
pub struct Backoff {
    step: u32,
}

impl Backoff {
    /// A fresh backoff that starts by spinning.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits a little, longer each call: 64 spins, then 64 yields, then sleeps from
    /// 10 µs doubling up to 1 ms.
    pub fn snooze(&mut self) {
        const SPINS: u32 = 64;
        const YIELDS: u32 = 128;
        if self.step < SPINS {
            crate::sync::spin_hint();
        } else if self.step < YIELDS {
            std::thread::yield_now();
        } else {
            let exp = (self.step - YIELDS).min(7);
            std::thread::sleep(Duration::from_micros(10u64 << exp));
        }
        self.step = self.step.saturating_add(1);
    }

    /// Back to spinning.
    pub fn reset(&mut self) {
        self.step = 0;
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
