//! What the measuring commands share: how a side waits, the latency histogram, the
//! round payloads, warm-up counts, CPU time and the consumer's report line.

use std::time::Duration;

use hdrhistogram::Histogram;
use shm_core::WaitMode;

use crate::util::Json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Wait {
    /// Busy-poll: lowest latency, one core per side.
    Spin,
    /// Spin briefly (50 µs), then sleep on a futex until woken.
    Block,
    /// Both sides are tokio tasks awaiting the futures (spin 50 µs, then park with the
    /// reactor); `--backend unix` uses tokio's `UnixStream`.
    Async,
}

impl Wait {
    pub fn mode(self) -> WaitMode {
        match self {
            Wait::Spin => WaitMode::Spin,
            Wait::Block | Wait::Async => WaitMode::default(),
        }
    }
}

pub fn warmup(round_trips: u64) -> u64 {
    (round_trips / 10).max(1000)
}

/// The ping payload number `i` of `size` bytes: `i` in its first 8 bytes.
pub fn payload(buf: &mut [u8], i: u64) {
    buf[..8].copy_from_slice(&i.to_ne_bytes());
}

/// CPU time (user + system) this process has used.
#[allow(unsafe_code)]
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

pub fn report(received: u64, verified: bool, seconds: f64, error: Option<String>) -> String {
    let mut j = Json::new()
        .num("pid", std::process::id())
        .num("received", received)
        .bool("verified", verified)
        .float("seconds", seconds);
    if let Some(e) = error {
        j = j.str("problem", &e);
    }
    j.finish()
}
