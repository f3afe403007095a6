//! Process identity and liveness, used to tell "still busy" from "the peer died".
//!
//! Liveness is checked through a pidfd (`pidfd_open` + `poll`): a process that has
//! exited is dead even while nobody has reaped it yet (a zombie, for which `kill(pid, 0)`
//! still succeeds: the commonest way a peer dies is as the unreaped child of the process
//! waiting for it). Where pidfds are not available the check falls back to `kill(pid, 0)`
//! plus the state in `/proc/PID/stat`. Two limits apply and are part of the contract: a
//! pid can be reused by an unrelated process after the original died (then a dead peer
//! looks alive, and callers fall back to their timeout errors), and a pid from another
//! pid namespace means nothing here.
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

/// The CPUs online (`sysconf(_SC_NPROCESSORS_ONLN)`, which reads
/// `/sys/devices/system/cpu/online`), whatever the calling thread's affinity; `None` if
/// the system does not say.
pub fn online_cpus() -> Option<usize> {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// The largest pid Linux can hand out (`PID_MAX_LIMIT` on 64-bit: 2^22). A pid word
/// above it names no process, whatever wrote it.
pub const PID_MAX: u32 = 1 << 22;

/// Whether `pid` names a live process.
///
/// `pid` comes from shared memory that a peer may have written anything into, so values
/// that `kill` would treat as groups (0, negative) are never passed to it. 0 means "no
/// process" and is [`Liveness::Unknown`]; a value above [`PID_MAX`] can name no process
/// and is [`Liveness::Dead`] (so a forged pid word cannot lock a role for good). A process
/// that has exited but was not yet reaped (a zombie) is dead.
#[doc(alias = "kill")]
#[doc(alias = "pidfd_open")]
pub fn liveness(pid: u32) -> Liveness {
    if pid == 0 {
        return Liveness::Unknown;
    }
    if pid > PID_MAX {
        return Liveness::Dead;
    }
    let raw = pid as i32; // <= 2^22: fits
                          // SAFETY: pidfd_open takes a pid and flags and returns a new fd (close-on-exec by
                          // definition) or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    if fd >= 0 {
        // SAFETY: a fresh fd returned to us just now, owned by nothing else.
        let fd =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        let mut p = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout: never blocks.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        // A pidfd is readable once its process has exited (zombie included).
        return if n > 0 && p.revents & libc::POLLIN != 0 {
            Liveness::Dead
        } else {
            Liveness::Alive
        };
    }
    if std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return Liveness::Dead;
    }
    // EINVAL (a thread id, not a process) or ENOSYS (no pidfds): fall back.
    // SAFETY: signal 0 only checks existence and permission; `raw` is a positive pid, so
    // this can never address a process group.
    let rc = unsafe { libc::kill(raw, 0) };
    if rc == 0 {
        return if is_zombie(pid) {
            Liveness::Dead
        } else {
            Liveness::Alive
        };
    }
    match std::io::Error::last_os_error().raw_os_error() {
        // It exists but belongs to someone we may not signal.
        Some(libc::EPERM) => Liveness::Alive,
        Some(libc::ESRCH) => Liveness::Dead,
        _ => Liveness::Unknown,
    }
}

/// Takes a role word (a channel end's holder, a broadcast's publisher): a
/// compare-and-swap from 0 (nobody holds it) or from the pid of a dead process, to `me`,
/// retried up to `tries` times when it loses to a concurrent change. Our own pid there
/// means another endpoint of this process holds it: taken. `Err(holder)` when taken.
///
/// The one claim every endpoint makes, so that all agree on what "free" means.
pub fn claim_role(word: &std::sync::atomic::AtomicU32, me: u32, tries: u32) -> Result<(), u32> {
    use std::sync::atomic::Ordering;
    // Acquire (here and on the CAS failure path): pairs with the Release store of 0 by
    // which a previous holder let the role go, after its last use of the shared state.
    let mut current = word.load(Ordering::Acquire);
    for _ in 0..tries {
        let free = current == 0 || (current != me && liveness(current) == Liveness::Dead);
        if !free {
            break;
        }
        // AcqRel: Acquire as above; Release so that the other side, loading our pid
        // with Acquire, sees the shared state as we found it.
        match word.compare_exchange(current, me, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(now) => current = now,
        }
    }
    Err(current)
}

/// Whether `pid`, read from shared memory, names a live peer: the one test every count
/// of peers and every staleness proof asks (the waits ask [`liveness`] the same way).
/// 0, impossible pids (above [`PID_MAX`]), exited processes and unreaped zombies are not
/// live.
pub fn is_live(pid: u32) -> bool {
    liveness(pid) == Liveness::Alive
}

/// How many times this process was forked into the caller (0 in the original process;
/// the child of a `fork` sees one more than its parent had at the fork). Endpoints
/// remember the value they were made under and refuse to act in a forked child with
/// [`Error::Forked`](crate::format::error::Error::Forked): the parent still holds them,
/// and two processes driving one end would corrupt the stream.
///
/// The first call registers a `pthread_atfork` child handler (once per process); an
/// endpoint calls it when it is made, so every fork after that is counted. Reading it is
/// one relaxed load.
#[inline]
pub fn fork_generation() -> u64 {
    use std::sync::atomic::Ordering;
    // Relaxed: a flag that only says whether to try registering; the registration itself
    // is ordered by `pthread_atfork`'s own lock.
    if FORK_HOOK.load(Ordering::Relaxed) != HOOKED {
        register_fork_hook();
    }
    // Relaxed: the child handler ran in this very thread before `fork` returned in the
    // child, so program order makes the increment visible; nothing else is ordered by it.
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// Registers the `pthread_atfork` child handler once. Never waits: a `Once` would, and a
/// process forked while another thread was inside it would wait for ever in the child
/// (the thread does not exist there). A thread that finds the registration under way
/// goes on; a child forked meanwhile counts forks from its own start.
#[cold]
fn register_fork_hook() {
    use std::sync::atomic::Ordering;
    // Relaxed: only one thread may go from UNHOOKED to REGISTERING; nothing else is
    // published through the flag.
    if FORK_HOOK
        .compare_exchange(UNHOOKED, REGISTERING, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    // SAFETY: `pthread_atfork` only records the function pointers; `forked_child` is
    // async-signal-safe (one atomic add), as a child handler must be.
    unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    // Relaxed: as above.
    FORK_HOOK.store(HOOKED, Ordering::Relaxed);
}

const UNHOOKED: u8 = 0;
const REGISTERING: u8 = 1;
const HOOKED: u8 = 2;

/// Whether this process is a forked child of the one in which `generation` was read by
/// [`fork_generation`]. One relaxed load.
#[inline]
pub fn forked_since(generation: u64) -> bool {
    // Relaxed: see `fork_generation`.
    FORK_GENERATION.load(std::sync::atomic::Ordering::Relaxed) != generation
}

static FORK_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static FORK_HOOK: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(UNHOOKED);

extern "C" fn forked_child() {
    // Relaxed: only this (single-threaded, freshly forked) process reads it, later in
    // program order.
    FORK_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `/proc/PID/stat` says the process has exited (state `Z` or `X`).
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold anything.
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|s| s == "Z" || s == "X")
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
        assert_eq!(liveness(u32::MAX), Liveness::Dead);
        assert_eq!(liveness(1 << 31), Liveness::Dead);
        assert_eq!(liveness(PID_MAX + 1), Liveness::Dead);
    }

    #[test]
    fn an_unreaped_child_is_dead() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert_eq!(liveness(pid), Liveness::Alive);
        child.kill().unwrap();
        // Not reaped: a zombie. kill(pid, 0) still succeeds; liveness must say Dead.
        let mut seen = Liveness::Alive;
        for _ in 0..1000 {
            seen = liveness(pid);
            if seen == Liveness::Dead {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(seen, Liveness::Dead);
        assert!(is_zombie(pid));
        child.wait().unwrap();
        assert_eq!(liveness(pid), Liveness::Dead);
    }
}
