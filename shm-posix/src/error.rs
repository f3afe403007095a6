//! What goes wrong, with the name involved.

use std::io;
use std::time::Duration;

/// What went wrong, with the name involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name is not a valid POSIX shared memory name.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A size of zero, or too large for this platform.
    #[error("invalid segment size {size}: {reason}")]
    InvalidSize {
        /// The size given.
        size: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Exclusive create found the name taken.
    #[error("segment {name} already exists (exclusive create never reuses a name; open it, or unlink it first)")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// Open found no segment by that name.
    #[error("segment {name} not found in /dev/shm")]
    NotFound {
        /// The name.
        name: String,
    },
    /// The caller may not open or create the segment.
    #[error("permission denied for segment {name}")]
    PermissionDenied {
        /// The name.
        name: String,
    },
    /// `/dev/shm` has no room for the reservation.
    #[error("no space in /dev/shm to reserve {reserve} bytes for segment {name}")]
    NoSpace {
        /// The name.
        name: String,
        /// Bytes that could not be reserved.
        reserve: u64,
    },
    /// The name exists but is not a regular file (a symlink, directory, fifo…).
    #[error("segment {name} is not a regular file (file mode {mode:#o})")]
    NotRegularFile {
        /// The name.
        name: String,
        /// `st_mode` as found.
        mode: u32,
    },
    /// The segment is owned by another user.
    #[error("segment {name} is owned by uid {owner}, expected uid {expected} (refusing a segment someone else planted; see ShmOptions::allow_foreign)")]
    ForeignOwner {
        /// The name.
        name: String,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        expected: u32,
    },
    /// The segment is writable by group or others.
    #[error("segment {name} has unsafe permissions {mode:#o}: writable by group or others (see ShmOptions::allow_foreign)")]
    UnsafeMode {
        /// The name.
        name: String,
        /// The permission bits.
        mode: u32,
    },
    /// Another process held an exclusive lock on the segment for longer than the lock
    /// timeout.
    #[error("segment {name} is locked by {} (waited {waited:?} for its exclusive flock to go)", match .holder { Some(pid) => format!("pid {pid}"), None => "another process".to_owned() })]
    Locked {
        /// The name.
        name: String,
        /// The pid holding the lock, if `/proc/locks` told.
        holder: Option<u32>,
        /// How long we retried.
        waited: Duration,
    },
    /// The segment is empty: there is nothing to map.
    #[error("segment {name} is empty (0 bytes): its creator never sized it")]
    Empty {
        /// The name.
        name: String,
    },
    /// Another system call failed.
    #[error("{op} failed for segment {name}: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The name.
        name: String,
        /// The OS error.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, name: &str, source: io::Error) -> Error {
        let name = name.to_owned();
        match source.raw_os_error() {
            Some(libc::EEXIST) => Error::AlreadyExists { name },
            Some(libc::ENOENT) => Error::NotFound { name },
            Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied { name },
            Some(libc::ELOOP) => Error::NotRegularFile {
                name,
                mode: libc::S_IFLNK,
            },
            _ => Error::Io { op, name, source },
        }
    }
}
