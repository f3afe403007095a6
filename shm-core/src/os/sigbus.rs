//! Surviving a file truncated under its mapping: a `SIGBUS` handler for registered ranges.
//!
//! Touching a page of a `MAP_SHARED` file mapping that lies beyond the end of the file
//! raises `SIGBUS`. A peer that can open a POSIX segment for writing can truncate it after
//! we mapped it, so on that backend any access could kill the process. Wayland's
//! compositors face the same attack from their clients and survive it the way done here:
//!
//! * A mapping is **registered** ([`Mapping::guard_sigbus`](crate::os::mapping::Mapping::guard_sigbus))
//!   in a fixed table of address ranges (no allocation, no lock: the handler can read it).
//! * The first registration **installs a handler** for `SIGBUS` (`sigaction` with
//!   `SA_SIGINFO | SA_ONSTACK`), once per process, keeping the handler that was there.
//! * On a fault inside a registered range, the handler maps anonymous zero pages over the
//!   whole range with `MAP_FIXED` (`mmap` is a plain system call), marks the range
//!   **tripped**, and returns: the faulting instruction runs again on the zero pages. The
//!   data path then sees the mark ([`SharedMemory::truncated`](crate::format::memory::SharedMemory::truncated))
//!   and reports [`Error::Truncated`](crate::format::error::Error::Truncated) on that call and every later
//!   one.
//! * A fault **outside** every registered range goes to the handler that was installed
//!   before ours (Rust's own stack-overflow handler, typically); if there was none, the
//!   default action is restored and the fault repeats, killing the process as it would
//!   have without us.
//!
//! The handler is async-signal-safe: it reads atomics, calls `mmap` (or `sigaction`), and
//! saves and restores `errno`. The table holds [`SLOTS`] ranges; a mapping registered
//! when it is full is not guarded (`guard_sigbus` says so).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// How many ranges can be guarded at once in one process.
pub const SLOTS: usize = 1024;

struct Slot {
    /// Claimed by a registration (CAS false → true), released after `start` is cleared.
    busy: AtomicBool,
    /// The range's base address; 0 while the slot holds no range.
    start: AtomicUsize,
    len: AtomicUsize,
    tripped: AtomicBool,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        busy: AtomicBool::new(false),
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        tripped: AtomicBool::new(false),
    }
}; SLOTS];

/// Faults caught so far, in any range: the reactor, which cannot ask each parked
/// future's memory whether it was truncated, wakes them all when this moves.
static FAULTS: AtomicUsize = AtomicUsize::new(0);

/// How many faults the handler has caught in this process (it only grows).
pub(crate) fn faults() -> usize {
    // Acquire: pairs with the handler's Release increment, made after its `tripped` store.
    FAULTS.load(Ordering::Acquire)
}

/// The handler that was installed before ours (written once, before ours is installed).
static PREV: OnceLock<libc::sigaction> = OnceLock::new();

/// A registered range; unregisters on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    slot: usize,
}

impl Registration {
    /// Whether a fault in the range was caught (the range now holds zero pages).
    pub(crate) fn tripped(&self) -> bool {
        // Acquire: pairs with the handler's Release store, made after its `mmap`.
        TABLE[self.slot].tripped.load(Ordering::Acquire)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let slot = &TABLE[self.slot];
        // Release: the handler never acts on a range whose start it reads as 0.
        slot.start.store(0, Ordering::Release);
        slot.busy.store(false, Ordering::Release);
    }
}

/// Registers `start .. start + len` (a live mapping the caller owns and will unmap only
/// after dropping the registration). `None` if the table is full or the handler could not
/// be installed: the range is then not guarded.
pub(crate) fn register(start: *mut u8, len: usize) -> Option<Registration> {
    if !install() || start.is_null() || len == 0 {
        return None;
    }
    for (i, slot) in TABLE.iter().enumerate() {
        // Acquire: pairs with the Release in `Registration::drop`.
        if slot
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            slot.len.store(len, Ordering::Relaxed);
            slot.tripped.store(false, Ordering::Relaxed);
            // Release: the handler loads `start` with Acquire and then reads `len`.
            slot.start.store(start as usize, Ordering::Release);
            return Some(Registration { slot: i });
        }
    }
    None
}

/// Installs the handler once; whether it is installed.
fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        // SAFETY: sigaction structs are plain data; all-zero is an empty mask and no flags.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = on_sigbus as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `new.sa_mask` is a valid sigset to empty.
        unsafe { libc::sigemptyset(&mut new.sa_mask) };
        // SAFETY: as above.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // Read the current handler first, publish it, then install ours: a fault that
        // arrives in between finds PREV set.
        // SAFETY: a null new action only reads the current one into `old`.
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) } != 0 {
            return false;
        }
        let _ = PREV.set(old);
        // SAFETY: `new` is a valid action whose handler has the SA_SIGINFO signature.
        unsafe { libc::sigaction(libc::SIGBUS, &new, std::ptr::null_mut()) == 0 }
    })
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local; saving and restoring it keeps the interrupted code's.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    for slot in TABLE.iter() {
        // Acquire: pairs with the Release store in `register`, so `len` is its range's.
        let start = slot.start.load(Ordering::Acquire);
        let len = slot.len.load(Ordering::Relaxed);
        if start == 0 || addr < start || addr - start >= len {
            continue;
        }
        // SAFETY: the range is a live mapping owned by a `Mapping` that is being accessed
        // right now (the fault is inside it), so it is not being unmapped; MAP_FIXED
        // replaces exactly its pages with private zero pages.
        let p = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            // Release: pairs with the Acquire load in `Registration::tripped`.
            slot.tripped.store(true, Ordering::Release);
            // Release: pairs with the Acquire load in `faults` (an atomic RMW is
            // async-signal-safe).
            FAULTS.fetch_add(1, Ordering::Release);
            // SAFETY: as above.
            unsafe { *libc::__errno_location() = errno };
            return;
        }
        break;
    }
    chain(sig, info, ctx);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Hands a fault that is not ours to the handler installed before ours, or restores the
/// default action so that the repeated fault ends the process as it would have.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let prev = PREV.get().copied();
    match prev {
        Some(prev) if prev.sa_sigaction != libc::SIG_DFL && prev.sa_sigaction != libc::SIG_IGN => {
            if prev.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO the stored handler has this signature.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(prev.sa_sigaction) };
                f(sig, info, ctx);
            } else {
                // SAFETY: without SA_SIGINFO the stored handler takes the signal number.
                let f: extern "C" fn(libc::c_int) =
                    unsafe { std::mem::transmute(prev.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            // SAFETY: plain data; SIG_DFL with an empty mask.
            let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
            dfl.sa_sigaction = libc::SIG_DFL;
            // SAFETY: a valid action; sigaction is async-signal-safe.
            unsafe { libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut()) };
        }
    }
}
