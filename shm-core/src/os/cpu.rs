//! What the machine is: its CPU model, its cores and its cache sizes (from sysfs), so that
//! rings can be sized to what the caches hold and every figure can say where it was
//! measured.

use std::sync::OnceLock;

/// The data cache sizes of CPU 0, in bytes (`None` where sysfs does not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caches {
    /// Level 1 data cache.
    pub l1d: Option<u64>,
    /// Level 2 (per core on current x86-64 parts).
    pub l2: Option<u64>,
    /// Level 3 (shared by a group of cores).
    pub l3: Option<u64>,
}

/// Parses sysfs's `32K`, `512K`, `32768K`, `1M`.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// The caches of CPU 0, read once from `/sys/devices/system/cpu/cpu0/cache/index*`.
pub fn caches() -> Caches {
    static CACHES: OnceLock<Caches> = OnceLock::new();
    *CACHES.get_or_init(|| {
        let mut c = Caches {
            l1d: None,
            l2: None,
            l3: None,
        };
        for i in 0..8 {
            let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
            let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
            let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
            else {
                continue;
            };
            let size = parse_size(&size);
            match (level.trim(), kind.trim()) {
                ("1", "Data") => c.l1d = size,
                ("2", "Data" | "Unified") => c.l2 = size,
                ("3", "Data" | "Unified") => c.l3 = size,
                _ => {}
            }
        }
        c
    })
}

/// The CPU model (`model name` in `/proc/cpuinfo`), or `"unknown"`.
pub fn model() -> String {
    static MODEL: OnceLock<String> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, v)| v.trim().to_owned())
                })
                .unwrap_or_else(|| "unknown".to_owned())
        })
        .clone()
}

/// The CPUs online, whatever this thread's affinity (a benchmark pinned to one CPU still
/// reports the machine's count); the CPUs this process may run on where the system does
/// not say.
pub fn cores() -> usize {
    crate::os::proc::online_cpus()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The ring a stream of `size`-byte messages should use, in bytes (a power of two).
///
/// The rule: about twice the per-core L2 cache (1 MiB when sysfs does not say), and
/// never fewer than two messages in flight. What decides the speed of a stream between
/// two cores is how much is in flight: a ring that outgrows the caches makes every
/// message a trip to L3 or memory for both sides, a ring too small for two messages
/// makes the sides take turns. Measured on an AMD EPYC (2 vCPU, 512 KiB L2 per core,
/// 32 MiB L3; BENCHMARKS.md section 9): 1 MiB messages ran 1.04x to 1.41x faster through
/// the 4 MiB ring this rule gives than through a 16 MiB one, in each of three rounds.
pub fn stream_ring_bytes(size: u64) -> u64 {
    let target = caches().l2.unwrap_or(1 << 20).saturating_mul(2);
    // Two messages, each with its 8-byte header padded to 8, and the ring's spare word.
    let two = size.saturating_add(16).saturating_mul(2).saturating_add(8);
    target
        .max(two)
        .clamp(64 << 10, 1 << 40)
        .checked_next_power_of_two()
        .unwrap_or(1 << 40)
}

/// Pins the calling thread to `cpu` (modulo the online CPUs) when the machine has more
/// than one; latency tools put the two sides of a ping-pong on different cores.
#[doc(alias = "sched_setaffinity")]
#[allow(unsafe_code)]
pub fn pin_to_cpu(cpu: usize) {
    let n = crate::os::proc::online_cpus().unwrap_or(1);
    if n < 2 {
        return;
    }
    // SAFETY: cpu_set_t is plain data, CPU_SET writes inside it, and sched_setaffinity
    // only reads the set we pass with its size. Failure leaves the affinity unchanged,
    // which only costs the caller accuracy.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % n, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_rings_hold_two_messages() {
        assert_eq!(parse_size("32K"), Some(32 << 10));
        assert_eq!(parse_size("32768K\n"), Some(32 << 20));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("x"), None);
        for size in [0u64, 8, 64, 4096, 1 << 20, 16 << 20, 1 << 30] {
            let r = stream_ring_bytes(size);
            assert!(r.is_power_of_two(), "{size}: {r}");
            assert!(r >= 2 * (size + 16), "{size}: {r}");
            assert!(r >= 64 << 10);
        }
        assert!(!model().is_empty());
        // A thread pinned to one CPU still counts the machine's.
        let before = cores();
        let pinned = std::thread::spawn(|| {
            crate::os::cpu::pin_to_cpu(0);
            (
                cores(),
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )
        })
        .join()
        .unwrap();
        assert_eq!(pinned.0, before);
        if before >= 2 {
            assert_eq!(pinned.1, 1, "the thread was pinned to one CPU");
        }
        assert!(cores() >= 1);
    }
}
