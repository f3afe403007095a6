//! The one way a Python call waits: bounded slices with the GIL released and
//! signals checked between them.

use crate::*;

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
        Some(t) if !(t >= 0.0 && t.is_finite()) => {
            return Err(PyValueError::new_err(format!(
                "timeout must be a finite number of seconds >= 0, not {t}"
            )))
        }
        Some(t) => Some(Instant::now() + Duration::from_secs_f64(t)),
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
