//! # shm-anon: anonymous shared memory across `fork`
//!
//! An [`AnonShm`] is a `MAP_SHARED | MAP_ANONYMOUS` mapping: it has no name and no fd, and
//! the only processes that can see it are children forked after it was made. (memmap2's
//! `map_anon` is `MAP_PRIVATE`, whose pages a child gets a copy of; that is not shared
//! memory.) [`fork`] runs a closure in a child that shares the region and returns a
//! [`Child`] to wait on.
//!
//! ```
//! use shm_anon::AnonShm;
//! use shm_core::Segment;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let seg = Segment::create(AnonShm::create(4096)?, &[0u64; 3])?;
//! // SAFETY: the closure only does atomic stores into the region and returns.
//! let mut child = unsafe { shm_anon::fork(|| { let _ = seg.write(&[100, 876, 8021]); 0 }) }?;
//! assert!(child.wait()?.success());
//! assert_eq!(seg.read()?, [100, 876, 8021]);
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use shm_core::os::mapping::Mapping;
use shm_core::os::sys::cvt;
use shm_core::wait::{DeadlineOnly, Pace, Waiter};
use shm_core::SharedMemory;

/// The exit status of a forked child whose parent died before the child could arm
/// `PR_SET_PDEATHSIG`.
pub const EXIT_PARENT_GONE: i32 = 125;
/// The exit status of a forked child whose closure panicked.
pub const EXIT_PANICKED: i32 = 101;

/// A `MAP_SHARED | MAP_ANONYMOUS` region, shared with children forked after it was made.
#[derive(Debug)]
pub struct AnonShm {
    map: Mapping,
    owner: bool,
}

impl AnonShm {
    /// Maps `len` zeroed bytes. Untouched pages cost no memory.
    pub fn create(len: usize) -> io::Result<AnonShm> {
        Ok(AnonShm {
            map: Mapping::anonymous_shared(len)?,
            owner: true,
        })
    }

    /// A second, non-owning mapping of the same pages (`mremap` with an old size of 0),
    /// as an independent view of the region.
    pub fn alias(&self) -> io::Result<AnonShm> {
        Ok(AnonShm {
            map: self.map.alias()?,
            owner: false,
        })
    }

    /// How many of the region's pages are resident.
    pub fn resident_pages(&self) -> io::Result<usize> {
        self.map.resident_pages()
    }
}

// SAFETY: the mapping is page aligned, `len` bytes long, readable and writable, lives as
// long as `self` and does not move with it; we never make references into it. An
// anonymous mapping has no file behind it, so no peer can shrink it.
#[allow(unsafe_code)]
unsafe impl SharedMemory for AnonShm {
    fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn backend(&self) -> &'static str {
        "anon"
    }
    fn is_owner(&self) -> bool {
        self.owner
    }
    fn truncated(&self) -> Option<u64> {
        None // no file behind it: nothing to truncate
    }
    fn writable(&self) -> bool {
        true
    }
}

/// Runs `f` in a forked child process; the child exits with the value `f` returns.
///
/// The child:
/// * sees every `MAP_SHARED` region of the parent (an [`AnonShm`] made before the fork);
/// * is killed (`SIGKILL`, via `PR_SET_PDEATHSIG`) when the parent *thread* that called
///   `fork` exits, and exits with [`EXIT_PARENT_GONE`] at once if the parent died before
///   that was armed, so it never waits forever on a dead parent;
/// * exits with `_exit`: no destructors, atexit handlers or stdio flushes run in it, so
///   buffered output of the parent is not written twice;
/// * exits with [`EXIT_PANICKED`] if `f` panics.
///
/// # Safety
///
/// After `fork` in a process with more than one thread, the child has only the forking
/// thread, and any lock another thread held at that moment (in the allocator, stdio, a
/// `Mutex`) stays locked forever in the child. So if the process may have other threads,
/// `f` must do only what is async-signal-safe: atomic accesses to shared memory, plain
/// system calls, arithmetic on data that already exists. No allocation, no printing, no
/// locks. (`Segment::attach`, `read`, `write`, `read_at`, `write_at`, `SeqLock::load` and
/// `store` and `AnonShm::alias` allocate nothing and take no locks.)
#[allow(unsafe_code)]
pub unsafe fn fork<F: FnOnce() -> i32>(f: F) -> io::Result<Child> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: fork itself is always sound to call; what the child may do is the caller's
    // contract (see `# Safety`).
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // In the child. Only async-signal-safe calls from here to `_exit`.
        // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal number.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            // SAFETY: _exit never returns and runs no user code.
            unsafe { libc::_exit(EXIT_PARENT_GONE) };
        }
        let code =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(EXIT_PANICKED);
        // SAFETY: as above.
        unsafe { libc::_exit(code) };
    }
    Ok(Child { pid, status: None })
}

/// A forked child: wait for it, poll it, or kill it. Dropping an unreaped child kills and
/// reaps it, so no zombie and no orphan is left behind.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    status: Option<ExitStatus>,
}

#[allow(unsafe_code)]
impl Child {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    fn waitpid(&mut self, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let mut raw = 0;
        loop {
            // SAFETY: `raw` is a valid out-pointer; `pid` is our own unreaped child.
            match cvt(unsafe { libc::waitpid(self.pid, &mut raw, flags) }) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    let s = ExitStatus::from_raw(raw);
                    self.status = Some(s);
                    return Ok(Some(s));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.waitpid(0)
            .map(|s| s.expect("blocking waitpid returned no status"))
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.waitpid(libc::WNOHANG)
    }

    /// Waits at most `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let mut w = Waiter::new(Pace::Poll, Some(timeout));
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if w.pause(&mut DeadlineOnly).is_err() {
                return Ok(None);
            }
        }
    }

    /// Sends `SIGKILL` to the child (if it has not been reaped yet).
    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_none() {
            // SAFETY: `pid` is our own child, not yet reaped, so it cannot have been reused.
            cvt(unsafe { libc::kill(self.pid, libc::SIGKILL) })?;
        }
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            // Never panic in drop: errors here mean the child is already gone.
            let _ = self.kill();
            let _ = self.wait();
        }
    }
}
