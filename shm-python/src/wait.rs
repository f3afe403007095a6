//! The one way a Python call waits: bounded slices with the GIL released and
//! signals checked between them.

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

/// The instant `d` from now, if the clock can hold it (else no deadline).
pub(crate) fn deadline_in(d: Option<Duration>) -> Option<Instant> {
    d.and_then(|d| Instant::now().checked_add(d))
}

/// Runs a bounded library wait in slices of at most 50 ms with the GIL released,
/// checking for signals (Ctrl-C) between slices; `timeout` in seconds (None: no limit).
pub(crate) fn wait<T, E>(
    py: Python<'_>,
    timeout: Option<f64>,
    mut f: impl FnMut(Duration) -> Result<T, E> + Send,
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
        match py.allow_threads(|| f(this).map_err(Into::into)) {
            Err(CoreError::Timeout { .. }) => {
                py.check_signals()?;
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
