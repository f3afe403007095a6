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
