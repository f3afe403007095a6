//! The one way a Python call waits: bounded slices with the GIL released and
//! signals checked between them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::*;

/// The longest wait the library is handed: a century. A longer one (or `inf`) is "no
/// limit" to the caller, and is cut to this where a call needs a number.
pub(crate) const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Seconds from Python: any number >= 0, `inf` included; `None` when it is past what a
/// deadline can hold (no limit, in effect). NaN and negatives are `ValueError`: no
/// input reaches a Rust panic (`Duration::from_secs_f64` panics past 2^64 s, and an
/// `Instant` plus a huge duration overflows).
pub(crate) fn seconds(what: &str, t: f64) -> PyResult<Option<Duration>> {
    if t.is_nan() || t < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must be a number of seconds >= 0, not {t}"
        )));
    }
    Ok(Duration::try_from_secs_f64(t)
        .ok()
        .filter(|d| *d <= FOREVER))
}

/// [`seconds`], cut to [`FOREVER`]: for calls that need a number.
pub(crate) fn bounded_seconds(what: &str, t: f64) -> PyResult<Duration> {
    Ok(seconds(what, t)?.unwrap_or(FOREVER))
}

/// The wait mode of an end made with `spin=` seconds (None: the library's default, 50 µs
/// of spin before sleeping; 0: sleep at once; `inf`: busy-poll, never sleep).
pub(crate) fn spin_mode(spin: Option<f64>) -> PyResult<Option<shm_core::WaitMode>> {
    let Some(s) = spin else { return Ok(None) };
    Ok(Some(match seconds("spin", s)? {
        None => shm_core::WaitMode::Spin,
        Some(d) => shm_core::WaitMode::Block { spin: d },
    }))
}

/// The instant `d` from now, if the clock can hold it (else no deadline).
pub(crate) fn deadline_in(d: Option<Duration>) -> Option<Instant> {
    d.and_then(|d| Instant::now().checked_add(d))
}

/// Whether the interpreter is shutting down, asked without the GIL: `Py_IsFinalizing`
/// (Python 3.13 and later) or `_Py_IsFinalizing` (3.11, 3.12), found once at run time
/// (neither is in the limited API the wheel is built against).
fn finalizing() -> bool {
    type IsFinalizing = unsafe extern "C" fn() -> libc::c_int;
    static F: std::sync::OnceLock<Option<IsFinalizing>> = std::sync::OnceLock::new();
    let f = F.get_or_init(|| {
        for name in [c"Py_IsFinalizing", c"_Py_IsFinalizing"] {
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks a
            // symbol up; both functions take nothing and return an int.
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            if !p.is_null() {
                // SAFETY: the symbol is CPython's `int Py_IsFinalizing(void)` (or its
                // older private name), whose signature this type states.
                return Some(unsafe { std::mem::transmute::<*mut libc::c_void, IsFinalizing>(p) });
            }
        }
        None
    });
    // SAFETY: the function reads the runtime's finalizing flag atomically and may be
    // called without the GIL.
    f.is_some_and(|f| unsafe { f() } != 0)
}

/// Set by [`_at_exit`]: the interpreter is about to shut down; a call that would take the
/// GIL back from a wait never does.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Threads inside [`unlocked`] now, and those of them parked for good.
static INSIDE: AtomicUsize = AtomicUsize::new(0);
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Threads that left [`unlocked`]'s closure and have not got the GIL back yet.
static RETURNING: AtomicUsize = AtomicUsize::new(0);

/// The thread that ran `_at_exit` (the main thread): its own later calls (another
/// `atexit` handler's) run as usual.
static EXIT_THREAD: std::sync::OnceLock<std::thread::ThreadId> = std::sync::OnceLock::new();

/// Whether this thread must not take the GIL back: the interpreter is exiting and this
/// is not the thread that runs the exit.
fn must_park() -> bool {
    // Acquire: pairs with the Release store in `_at_exit` (after `EXIT_THREAD` is set).
    EXITING.load(Ordering::Acquire) && EXIT_THREAD.get() != Some(&std::thread::current().id())
}

/// Sleeps until the process ends, never taking the GIL back.
fn park_for_good() -> ! {
    // Relaxed: a count `_at_exit` polls; nothing is published through it.
    PARKED.fetch_add(1, Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Runs `f` with the GIL released. Once the interpreter is exiting (`atexit` ran
/// [`_at_exit`], or it is finalizing), the thread never takes the GIL back: it sleeps
/// until the process ends. CPython ends a thread that asks for the GIL during
/// finalisation with `pthread_exit`, whose forced unwinding through Rust frames aborts
/// the process ("FATAL: exception not rethrown"): a daemon thread blocked in a receive
/// at interpreter exit used to end the process with SIGABRT.
pub(crate) fn unlocked<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    let r = py.allow_threads(|| {
        // Relaxed (all three counts): polled by `_at_exit`, which only waits on them.
        INSIDE.fetch_add(1, Ordering::Relaxed);
        if must_park() {
            park_for_good();
        }
        let r = f();
        let exit_thread = EXIT_THREAD.get() == Some(&std::thread::current().id());
        if must_park() || (finalizing() && !exit_thread) {
            park_for_good();
        }
        RETURNING.fetch_add(1, Ordering::Relaxed);
        INSIDE.fetch_sub(1, Ordering::Relaxed);
        r
    });
    // The GIL is ours again: `_at_exit` stops waiting for this thread.
    RETURNING.fetch_sub(1, Ordering::Relaxed);
    r
}

/// Run by `atexit` (registered when the package is imported), before the interpreter
/// finalises: every thread in a wait parks for good at its next slice (at most 50 ms;
/// this waits up to 200 ms for them, with the GIL released so that a thread taking it
/// back now gets through before finalisation), then the names of the POSIX segments
/// this process created and still holds are removed.
#[pyfunction]
pub(crate) fn _at_exit(py: Python<'_>) {
    let _ = EXIT_THREAD.set(std::thread::current().id());
    // Release: pairs with the Acquire loads in `must_park`.
    EXITING.store(true, Ordering::Release);
    py.allow_threads(|| {
        let t = Instant::now();
        // Until every thread in a wait has parked and none is taking the GIL back (one
        // that is gets it now, while this thread does not hold it, and parks at its
        // next wait).
        while (PARKED.load(Ordering::Relaxed) < INSIDE.load(Ordering::Relaxed)
            || RETURNING.load(Ordering::Relaxed) > 0)
            && t.elapsed() < Duration::from_millis(200)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    crate::memory::unlink_created();
}

/// The cancel flags of the waits in progress, by the Python object waiting (its
/// pointer): what `close()` from another thread sets, so that the wait ends with
/// `shm.Closed` at its next slice and lets the object go.
static CANCEL: std::sync::Mutex<Vec<(usize, std::sync::Arc<AtomicBool>)>> =
    std::sync::Mutex::new(Vec::new());

fn cancels() -> std::sync::MutexGuard<'static, Vec<(usize, std::sync::Arc<AtomicBool>)>> {
    // A panic while the lock is held cannot leave the list half-changed.
    CANCEL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Asks the wait in progress on object `key` (if any) to end.
fn cancel(key: usize) {
    for (k, flag) in cancels().iter() {
        if *k == key {
            // Release: pairs with the Acquire load between the wait's slices.
            flag.store(true, Ordering::Release);
        }
    }
}

/// Closes `slf` with `close` (which drops its end), also while another thread waits on
/// it: that wait is asked to end (`shm.Closed` at its next slice, at most 50 ms), and
/// this call waits for it, the GIL released, at most 5 s.
pub(crate) fn close_from_any_thread<
    T: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::False>,
>(
    slf: &Bound<'_, T>,
    close: impl FnOnce(&mut T),
) -> PyResult<()> {
    let key = slf.as_ptr() as usize;
    let t = Instant::now();
    loop {
        if let Ok(mut b) = slf.try_borrow_mut() {
            close(&mut b);
            return Ok(());
        }
        cancel(key);
        if t.elapsed() > Duration::from_secs(5) {
            return Err(Error::new_err(
                "close(): another thread's call on this end did not end within 5 s",
            ));
        }
        unlocked(slf.py(), || std::thread::sleep(Duration::from_millis(1)));
    }
}

/// [`wait`] for a call on the Python object `key`, which `close()` from another thread
/// can end ([`close_from_any_thread`]).
pub(crate) fn wait_keyed<T, E>(
    py: Python<'_>,
    key: usize,
    timeout: Option<f64>,
    f: impl FnMut(Duration) -> Result<T, E> + Send,
) -> PyResult<T>
where
    T: Send,
    E: Into<CoreError>,
{
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    cancels().push((key, std::sync::Arc::clone(&flag)));
    struct Unregister(std::sync::Arc<AtomicBool>);
    impl Drop for Unregister {
        fn drop(&mut self) {
            cancels().retain(|(_, f)| !std::sync::Arc::ptr_eq(f, &self.0));
        }
    }
    let _unregister = Unregister(std::sync::Arc::clone(&flag));
    wait_until(py, timeout, f, &flag)
}

/// Runs a bounded library wait in slices of at most 50 ms with the GIL released,
/// checking for signals (Ctrl-C) between slices; `timeout` in seconds (None: no limit).
pub(crate) fn wait<T, E>(
    py: Python<'_>,
    timeout: Option<f64>,
    f: impl FnMut(Duration) -> Result<T, E> + Send,
) -> PyResult<T>
where
    T: Send,
    E: Into<CoreError>,
{
    wait_until(py, timeout, f, &AtomicBool::new(false))
}

fn wait_until<T, E>(
    py: Python<'_>,
    timeout: Option<f64>,
    mut f: impl FnMut(Duration) -> Result<T, E> + Send,
    cancelled: &AtomicBool,
) -> PyResult<T>
where
    T: Send,
    E: Into<CoreError>,
{
    let deadline = match timeout {
        Some(t) => deadline_in(seconds("timeout", t)?),
        None => None,
    };
    let slice = Duration::from_millis(50);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let this = left.map_or(slice, |l| l.min(slice));
        match unlocked(py, || f(this).map_err(Into::into)) {
            Err(CoreError::Timeout { .. }) => {
                py.check_signals()?;
                // Acquire: pairs with the Release store in `cancel`.
                if cancelled.load(Ordering::Acquire) {
                    return Err(Closed::new_err("closed by another thread"));
                }
                if left.is_some_and(|l| l <= slice) {
                    return Err(Timeout::new_err(format!(
                        "timed out after {:.3} s",
                        timeout.unwrap_or(0.0)
                    )));
                }
            }
            other => return other.map_err(err),
        }
    }
}
