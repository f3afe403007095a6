//! Process identity and liveness, used to tell "still busy" from "the peer died".
//!
//! Liveness is checked with `kill(pid, 0)`. Two limits apply and are part of the contract:
//! a pid can be reused by an unrelated process after the original died (then a dead
//! peer looks alive, and callers fall back to their timeout errors), and a pid from
//! another pid namespace means nothing here.
#![allow(unsafe_code)]

/// What `kill(pid, 0)` says about a pid read from shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// A process with this pid exists (it may be a reused pid).
    Alive,
    /// No process has this pid.
    Dead,
    /// The pid cannot name a single process (0, or larger than `i32::MAX`): unknown.
    Unknown,
}

/// The calling process's pid.
pub fn current_pid() -> u32 {
    std::process::id()
}

/// The calling process's effective uid.
#[doc(alias = "geteuid")]
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Pins the calling thread to `cpu` (modulo the online CPUs) when the machine has more
/// than one; latency tools put the two sides of a ping-pong on different cores.
#[doc(alias = "sched_setaffinity")]
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n < 2 {
        return;
    }
    // SAFETY: cpu_set_t is plain data, CPU_SET writes inside it, and sched_setaffinity
    // only reads the set we pass with its size. Failure leaves the affinity unchanged,
    // which only costs the caller accuracy.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % n as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Whether `pid` names a live process.
///
/// `pid` comes from shared memory that a peer may have written anything into, so values
/// that `kill` would treat as groups (0, negative) are never passed to it.
#[doc(alias = "kill")]
pub fn liveness(pid: u32) -> Liveness {
    let Ok(raw) = i32::try_from(pid) else {
        return Liveness::Unknown;
    };
    if raw <= 0 {
        return Liveness::Unknown;
    }
    // SAFETY: signal 0 only checks existence and permission; `raw` is a positive pid, so
    // this can never address a process group.
    let rc = unsafe { libc::kill(raw, 0) };
    if rc == 0 {
        return Liveness::Alive;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        // It exists but belongs to someone we may not signal.
        Some(libc::EPERM) => Liveness::Alive,
        Some(libc::ESRCH) => Liveness::Dead,
        _ => Liveness::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive_and_reaped_child_is_dead() {
        assert_eq!(liveness(current_pid()), Liveness::Alive);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(liveness(pid), Liveness::Dead);
        assert_eq!(liveness(0), Liveness::Unknown);
        assert_eq!(liveness(u32::MAX), Liveness::Unknown);
    }
}
