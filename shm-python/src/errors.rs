//! The exception types, and the library's errors turned into them.

use crate::*;

create_exception!(shm, Error, PyException, "Every error of the shm package.");
create_exception!(shm, Timeout, Error, "A wait ran out of time.");
create_exception!(shm, Closed, Error, "The other side closed cleanly.");
create_exception!(
    shm,
    PeerDied,
    Error,
    "The other side's process died without closing (`pid`: its pid)."
);
create_exception!(
    shm,
    Lagged,
    Error,
    "A broadcast subscriber fell behind: `missed` messages are gone."
);
create_exception!(
    shm,
    UpstreamLost,
    Error,
    "An imported broadcast's exporter is gone for now; messages resume when it returns."
);
create_exception!(
    shm,
    Evicted,
    Error,
    "The reliable publisher evicted this subscriber."
);
create_exception!(
    shm,
    SchemaMismatch,
    Error,
    "The segment holds another record type."
);
create_exception!(shm, ReadOnly, Error, "The mapping is read-only.");
create_exception!(shm, Truncated, Error, "The segment was truncated under us.");
create_exception!(
    shm,
    Corrupt,
    Error,
    "A peer wrote a value no honest peer writes."
);
create_exception!(shm, Full, Error, "No room now (a try call).");
create_exception!(
    shm,
    NotFound,
    Error,
    "No segment or server by that name or path."
);
create_exception!(
    shm,
    AlreadyExists,
    Error,
    "A segment by that name exists already."
);
create_exception!(
    shm,
    PermissionDenied,
    Error,
    "Not ours to open: another user's, a mode other than 0600, or a peer of another user."
);
create_exception!(
    shm,
    NoSpace,
    Error,
    "No room for the segment in /dev/shm (a tmpfs)."
);
create_exception!(shm, Empty, Error, "No message now (a try call).");
create_exception!(
    shm,
    Cancelled,
    Error,
    "The request's client cancelled it or died: nothing more reaches it."
);
create_exception!(
    shm,
    ServerError,
    Error,
    "The server answered the request with an error code (`code`)."
);

/// An exception of type `T` whose one argument is `msg` (so `str()` is the message and
/// it pickles as any exception), with the named attribute `key` set to `value` (kept
/// through a pickle round trip: `BaseException.__reduce__` carries the instance dict).
fn with_attr<T: pyo3::PyTypeInfo>(msg: String, key: &str, value: u64) -> PyErr {
    Python::with_gil(|py| {
        let e = PyErr::from_type(py.get_type::<T>(), (msg,));
        // Setting an attribute on a fresh exception instance cannot fail but for memory.
        let _ = e.value(py).setattr(key, value);
        e
    })
}

/// The Python exception for a library error (its text is the library's).
pub(crate) fn err(e: impl Into<CoreError>) -> PyErr {
    let e: CoreError = e.into();
    let msg = e.to_string();
    match e {
        CoreError::Timeout { .. } => Timeout::new_err(msg),
        CoreError::Closed => Closed::new_err(msg),
        CoreError::PeerDied { pid } => with_attr::<PeerDied>(msg, "pid", pid.into()),
        CoreError::Lagged { missed } => with_attr::<Lagged>(msg, "missed", missed),
        CoreError::Evicted { .. } => Evicted::new_err(msg),
        CoreError::UpstreamLost => UpstreamLost::new_err(msg),
        CoreError::SchemaMismatch { .. } => SchemaMismatch::new_err(msg),
        CoreError::ReadOnly { .. } => ReadOnly::new_err(msg),
        CoreError::Truncated { .. } => Truncated::new_err(msg),
        CoreError::Corrupt { .. } => Corrupt::new_err(msg),
        CoreError::Full => Full::new_err(msg),
        CoreError::Empty => Empty::new_err(msg),
        CoreError::Cancelled => Cancelled::new_err(msg),
        CoreError::ServerError { code } => with_attr::<ServerError>(msg, "code", code.into()),
        _ => Error::new_err(msg),
    }
}

/// [`err`] for a call whose arguments are sizes and options (`segment_len`, a layout's
/// `create`): an option the layout cannot have is a `ValueError`, as Python says a bad
/// argument.
pub(crate) fn size_err(e: impl Into<CoreError>) -> PyErr {
    match e.into() {
        e @ CoreError::InvalidOption { .. } => PyValueError::new_err(e.to_string()),
        e => err(e),
    }
}

pub(crate) fn closed_handle(what: &str) -> PyErr {
    Error::new_err(format!("this {what} was closed"))
}

/// The accessors of a handle that `close()` empties: the open end, or `shm.Error` saying
/// the handle is closed (one place for what every class's methods begin with).
macro_rules! open_handle {
    ($t:ident, $field:ident: $inner:ty, $what:literal) => {
        impl $t {
            /// The open handle (`shm.Error` once closed).
            #[allow(dead_code)]
            pub(crate) fn handle(&self) -> PyResult<&$inner> {
                self.$field.as_ref().ok_or_else(|| closed_handle($what))
            }
            /// As `handle`, mutable.
            #[allow(dead_code)]
            pub(crate) fn handle_mut(&mut self) -> PyResult<&mut $inner> {
                self.$field.as_mut().ok_or_else(|| closed_handle($what))
            }
        }
    };
}
pub(crate) use open_handle;

/// `with x as y:` for a class whose `close()` ends it: `__enter__` returns the object,
/// `__exit__` closes it (and lets an exception go on). `fallible` for a `close()` that
/// can refuse (a sender with a reservation outstanding).
macro_rules! context_manager {
    ($t:ident) => {
        #[pymethods]
        impl $t {
            fn __enter__(slf: Py<Self>) -> Py<Self> {
                slf
            }
            fn __exit__(&mut self, _a: PyObject, _b: PyObject, _c: PyObject) {
                self.close();
            }
        }
    };
    ($t:ident, any_thread) => {
        #[pymethods]
        impl $t {
            fn __enter__(slf: Py<Self>) -> Py<Self> {
                slf
            }
            fn __exit__(
                slf: &Bound<'_, Self>,
                _a: PyObject,
                _b: PyObject,
                _c: PyObject,
            ) -> PyResult<()> {
                Self::close(slf)
            }
        }
    };
    ($t:ident, fallible) => {
        #[pymethods]
        impl $t {
            fn __enter__(slf: Py<Self>) -> Py<Self> {
                slf
            }
            fn __exit__(&mut self, _a: PyObject, _b: PyObject, _c: PyObject) -> PyResult<()> {
                self.close()
            }
        }
    };
}
pub(crate) use context_manager;

/// The Python exception for a named-segment error: typed where a caller handles it
/// apart (`NotFound`, `AlreadyExists`, `PermissionDenied`, `NoSpace`, `ValueError` for a
/// bad name or size); the text is the library's.
pub(crate) fn posix_err(e: shm_posix::Error) -> PyErr {
    use shm_posix::Error as E;
    let msg = e.to_string();
    match e {
        E::NotFound { .. } => NotFound::new_err(msg),
        E::AlreadyExists { .. } => AlreadyExists::new_err(msg),
        E::PermissionDenied { .. } | E::ForeignOwner { .. } | E::UnsafeMode { .. } => {
            PermissionDenied::new_err(msg)
        }
        E::NoSpace { .. } => NoSpace::new_err(msg),
        E::InvalidName { .. } | E::InvalidSize { .. } => PyValueError::new_err(msg),
        _ => Error::new_err(msg),
    }
}

/// The Python exception for a memfd error: `Timeout`, `NotFound` (no server at the
/// path), `PermissionDenied` (a server of another user), `Corrupt` (a server that passed
/// what we refuse to map: not a sealed memfd), `ValueError` for a bad size.
pub(crate) fn memfd_err(e: shm_memfd::Error) -> PyErr {
    use shm_memfd::Error as E;
    let msg = e.to_string();
    match e {
        E::Timeout(_) => Timeout::new_err(msg),
        E::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            NotFound::new_err(msg)
        }
        E::ForeignPeer { .. } => PermissionDenied::new_err(msg),
        E::NotMemfd { .. }
        | E::Unsealed { .. }
        | E::WriteSealed { .. }
        | E::NotReadWrite { .. }
        | E::Empty
        | E::NoFd
        | E::TooManyFds { .. }
        | E::ControlTruncated { .. } => Corrupt::new_err(msg),
        E::InvalidSize { .. } => PyValueError::new_err(msg),
        _ => Error::new_err(msg),
    }
}
