//! The one status enum every function returns, the thread's last error message, and the
//! guard every entry point runs its body in (no panic crosses the boundary).

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a call did. `SHM_STATUS_OK` is 0; every other value comes with a message for
/// this thread in `shm_last_error_message()`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShmStatus {
    /// Done.
    Ok = 0,
    /// A `try_` receive found nothing now.
    Empty = 1,
    /// A `try_` send or publish found no room now.
    Full = 2,
    /// A `_timeout` call's time ran out.
    Timeout = 3,
    /// The other end closed (and, for a receiver, everything it sent was read).
    Closed = 4,
    /// The other end's process died.
    PeerDied = 5,
    /// A subscriber fell behind: `shm_received.missed` messages were lost to it.
    Lagged = 6,
    /// The message does not fit: the ring's or broadcast's largest message, or the
    /// caller's buffer (the message is left where it is; `shm_received.len` says its size).
    MessageTooLarge = 7,
    /// A null pointer, a size out of range, a name that is not one, a handle that is not
    /// a live one (freed twice).
    InvalidArgument = 8,
    /// No segment of that name.
    NotFound = 9,
    /// A segment of that name exists already.
    AlreadyExists = 10,
    /// The end is held by another live process (or this one).
    RoleTaken = 11,
    /// The segment is not the kind, version or record this call expects.
    Mismatch = 12,
    /// A peer wrote a value no honest peer writes.
    Corrupt = 13,
    /// The segment was truncated under this process.
    Truncated = 14,
    /// A reliable publisher evicted this subscriber.
    Evicted = 15,
    /// A system call failed (the message says which and why).
    System = 16,
    /// A bug in the library: a panic caught at the boundary (the message has its text).
    Panic = 17,
    /// Anything else (the message says what).
    Other = 18,
    /// A server answered the call with an error response (its code in
    /// `shm_received.number`).
    ServerError = 19,
    /// The client gave the request up: the server's response goes nowhere.
    Cancelled = 20,
}

/// An error on its way out: the status and the message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: ShmStatus,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: ShmStatus, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure::new(ShmStatus::InvalidArgument, message)
    }
}

impl From<shm_core::Error> for Failure {
    fn from(e: shm_core::Error) -> Self {
        use shm_core::Error as E;
        let status = match e {
            E::Empty => ShmStatus::Empty,
            E::Full => ShmStatus::Full,
            E::Timeout { .. } | E::WriterStuck { .. } => ShmStatus::Timeout,
            E::Closed => ShmStatus::Closed,
            E::PeerDied { .. } | E::CreatorDied { .. } | E::WriterDied { .. } => {
                ShmStatus::PeerDied
            }
            E::Lagged { .. } | E::UpstreamLost => ShmStatus::Lagged,
            E::MessageTooLarge { .. } => ShmStatus::MessageTooLarge,
            E::InvalidOption { .. }
            | E::OutOfBounds { .. }
            | E::NoSuchRing { .. }
            | E::Forked { .. }
            | E::ReadOnly { .. } => ShmStatus::InvalidArgument,
            E::RoleTaken { .. } | E::SubscribersFull { .. } => ShmStatus::RoleTaken,
            E::BadMagic { .. }
            | E::UnsupportedVersion { .. }
            | E::KindMismatch { .. }
            | E::KindVersion { .. }
            | E::SchemaMismatch { .. }
            | E::SchemaName { .. }
            | E::TooSmall { .. }
            | E::PayloadTooSmall { .. }
            | E::NotReady { .. } => ShmStatus::Mismatch,
            E::Corrupt { .. } | E::CorruptHeader { .. } => ShmStatus::Corrupt,
            E::Truncated { .. } => ShmStatus::Truncated,
            E::Evicted { .. } => ShmStatus::Evicted,
            E::System { .. } => ShmStatus::System,
            E::ServerError { .. } => ShmStatus::ServerError,
            E::Cancelled => ShmStatus::Cancelled,
            E::ClientsFull { .. } | E::ServersFull { .. } => ShmStatus::RoleTaken,
            _ => ShmStatus::Other,
        };
        Failure::new(status, e.to_string())
    }
}

impl From<shm_posix::Error> for Failure {
    fn from(e: shm_posix::Error) -> Self {
        use shm_posix::Error as E;
        let status = match &e {
            E::NotFound { .. } => ShmStatus::NotFound,
            E::AlreadyExists { .. } => ShmStatus::AlreadyExists,
            E::InvalidName { .. } | E::InvalidSize { .. } => ShmStatus::InvalidArgument,
            E::NotRegularFile { .. } | E::ForeignOwner { .. } | E::UnsafeMode { .. } => {
                ShmStatus::Mismatch
            }
            _ => ShmStatus::System,
        };
        Failure::new(status, e.to_string())
    }
}

thread_local! {
    static LAST: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last(message: &str) {
    // A NUL inside a message would cut it short: shown as a space instead.
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // A call from a thread's own TLS destructors (after ours is gone) keeps no message
    // rather than panicking outside the guard.
    let _ = LAST.try_with(|l| {
        if let Ok(mut slot) = l.try_borrow_mut() {
            *slot = text;
        }
    });
}

/// Runs an entry point's body: `Ok` clears the thread's message, an error sets it, and a
/// panic is caught here (its text becomes the message) so it never unwinds into C.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> ShmStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last("");
            ShmStatus::Ok
        }
        Ok(Err(f)) => {
            set_last(&f.message);
            f.status
        }
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with no message".to_owned());
            set_last(&format!("panic in shm (a bug: please report it): {text}"));
            ShmStatus::Panic
        }
    }
}

/// The message of the last call on this thread that did not return `SHM_STATUS_OK` (an
/// empty string after one that did). Never NULL. Owned by the library: valid until the
/// next `shm_` call on this thread; copy it to keep it.
#[no_mangle]
pub extern "C" fn shm_last_error_message() -> *const c_char {
    // The CString's buffer does not move while it is the thread's message (a borrow is
    // only taken to read its address); after the thread's TLS is gone: an empty string.
    LAST.try_with(|l| l.try_borrow().map(|c| c.as_ptr()).ok())
        .ok()
        .flatten()
        .unwrap_or(c"".as_ptr())
}

/// A short fixed name of a status value (`"SHM_STATUS_TIMEOUT"`, ...;
/// `"SHM_STATUS_UNKNOWN"` for a value that is none). Never NULL; static.
#[no_mangle]
pub extern "C" fn shm_status_name(status: i32) -> *const c_char {
    const ALL: [ShmStatus; 21] = [
        ShmStatus::Ok,
        ShmStatus::Empty,
        ShmStatus::Full,
        ShmStatus::Timeout,
        ShmStatus::Closed,
        ShmStatus::PeerDied,
        ShmStatus::Lagged,
        ShmStatus::MessageTooLarge,
        ShmStatus::InvalidArgument,
        ShmStatus::NotFound,
        ShmStatus::AlreadyExists,
        ShmStatus::RoleTaken,
        ShmStatus::Mismatch,
        ShmStatus::Corrupt,
        ShmStatus::Truncated,
        ShmStatus::Evicted,
        ShmStatus::System,
        ShmStatus::Panic,
        ShmStatus::Other,
        ShmStatus::ServerError,
        ShmStatus::Cancelled,
    ];
    // An int from C may be any value: matched against the known ones, never cast.
    let Some(&known) = ALL.iter().find(|s| **s as i32 == status) else {
        return c"SHM_STATUS_UNKNOWN".as_ptr();
    };
    let s: &'static [u8] = match known {
        ShmStatus::Ok => b"SHM_STATUS_OK\0",
        ShmStatus::Empty => b"SHM_STATUS_EMPTY\0",
        ShmStatus::Full => b"SHM_STATUS_FULL\0",
        ShmStatus::Timeout => b"SHM_STATUS_TIMEOUT\0",
        ShmStatus::Closed => b"SHM_STATUS_CLOSED\0",
        ShmStatus::PeerDied => b"SHM_STATUS_PEER_DIED\0",
        ShmStatus::Lagged => b"SHM_STATUS_LAGGED\0",
        ShmStatus::MessageTooLarge => b"SHM_STATUS_MESSAGE_TOO_LARGE\0",
        ShmStatus::InvalidArgument => b"SHM_STATUS_INVALID_ARGUMENT\0",
        ShmStatus::NotFound => b"SHM_STATUS_NOT_FOUND\0",
        ShmStatus::AlreadyExists => b"SHM_STATUS_ALREADY_EXISTS\0",
        ShmStatus::RoleTaken => b"SHM_STATUS_ROLE_TAKEN\0",
        ShmStatus::Mismatch => b"SHM_STATUS_MISMATCH\0",
        ShmStatus::Corrupt => b"SHM_STATUS_CORRUPT\0",
        ShmStatus::Truncated => b"SHM_STATUS_TRUNCATED\0",
        ShmStatus::Evicted => b"SHM_STATUS_EVICTED\0",
        ShmStatus::System => b"SHM_STATUS_SYSTEM\0",
        ShmStatus::Panic => b"SHM_STATUS_PANIC\0",
        ShmStatus::Other => b"SHM_STATUS_OTHER\0",
        ShmStatus::ServerError => b"SHM_STATUS_SERVER_ERROR\0",
        ShmStatus::Cancelled => b"SHM_STATUS_CANCELLED\0",
    };
    s.as_ptr().cast()
}
