//! Memory of any backend (`shm_memory_*`): named POSIX, a sealed memfd passed over a Unix
//! socket, or anonymous memory shared with children forked afterwards. Channels and
//! broadcasts are laid out in it with `shm_channel_create_in` / `shm_broadcast_create_in`
//! and attached with the `_attach_in` forms; each maps the memory afresh, so the memory
//! handle stays the caller's (and keeps its name or fd) until its `_free`.

use std::ffi::c_char;
use std::time::Duration;

use shm_any::AnyShm;

use crate::handles::*;
use crate::status::{guard, Failure, ShmStatus};

/// A region of shared memory (opaque).
pub struct ShmMemory {
    pub(crate) mem: AnyShm,
}

impl ShmMemory {
    /// Another mapping of the same memory, for a segment to own.
    pub(crate) fn duplicate(&self) -> Result<AnyShm, Failure> {
        Ok(match &self.mem {
            AnyShm::Posix(m) => AnyShm::from(shm_posix::ShmOptions::new(m.name()).open()?),
            AnyShm::Anon(m) => AnyShm::from(
                m.alias()
                    .map_err(|e| Failure::new(ShmStatus::System, format!("mremap: {e}")))?,
            ),
            AnyShm::Memfd(m) => AnyShm::from(m.try_clone().map_err(memfd_failure)?),
        })
    }
}

pub(crate) fn memfd_failure(e: shm_memfd::Error) -> Failure {
    use shm_memfd::Error as E;
    let status = match &e {
        E::Timeout(_) => ShmStatus::Timeout,
        E::PeerClosed => ShmStatus::Closed,
        E::InvalidSize { .. } => ShmStatus::InvalidArgument,
        E::NotMemfd { .. }
        | E::Unsealed { .. }
        | E::WriteSealed { .. }
        | E::NotReadWrite { .. }
        | E::ForeignPeer { .. } => ShmStatus::Mismatch,
        _ => ShmStatus::System,
    };
    Failure::new(status, e.to_string())
}

fn size_arg(size: u64) -> Result<usize, Failure> {
    if size == 0 || size > isize::MAX as u64 {
        return Err(Failure::invalid(format!(
            "size {size} is not 1 to 2^63 - 1"
        )));
    }
    Ok(size as usize)
}

/// Creates the named POSIX segment `name` of `size` bytes (zeroed; untouched pages cost
/// nothing) and stores its handle in `*out`; freeing the handle removes the name.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_ALREADY_EXISTS`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `out` is NULL or points to a `shm_memory *`.
#[no_mangle]
pub unsafe extern "C" fn shm_memory_posix_create(
    name: *const c_char,
    size: u64,
    out: *mut *mut ShmMemory,
) -> ShmStatus {
    let make = |name: &str| {
        size_arg(size)?;
        let m = shm_posix::ShmOptions::new(name).size(size).create()?;
        Ok(ShmMemory {
            mem: AnyShm::from(m),
        })
    };
    // SAFETY: the caller's contract above.
    unsafe { named(name, out, make) }
}

/// Opens the named POSIX segment `name`, waiting up to `timeout_ns` for it to appear.
///
/// Errors: `SHM_STATUS_NOT_FOUND`, `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// As `shm_memory_posix_create`.
#[no_mangle]
pub unsafe extern "C" fn shm_memory_posix_open(
    name: *const c_char,
    timeout_ns: u64,
    out: *mut *mut ShmMemory,
) -> ShmStatus {
    let make = |name: &str| {
        Ok(ShmMemory {
            mem: AnyShm::from(open_named(name, timeout_arg(timeout_ns))?),
        })
    };
    // SAFETY: the caller's contract above.
    unsafe { named(name, out, make) }
}

/// Creates an anonymous memfd of `size` bytes, sealed against resizing, and stores its
/// handle in `*out`: hand it to another process with `shm_memory_memfd_serve`.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// `out` is NULL or points to a `shm_memory *`.
#[no_mangle]
pub unsafe extern "C" fn shm_memory_memfd_create(size: u64, out: *mut *mut ShmMemory) -> ShmStatus {
    guard(|| {
        out_arg(out)?;
        size_arg(size)?;
        let m = shm_memfd::MemfdOptions::new()
            .size(size)
            .create()
            .map_err(memfd_failure)?;
        hand_out(
            out,
            ShmMemory {
                mem: AnyShm::from(m),
            },
        )
    })
}

/// Serves the memfd behind `mem` to one process that connects to the Unix socket at
/// `socket_path` (`shm_memory_memfd_connect`, or Rust's `shm_memfd::connect`) within
/// `timeout_ns`; the socket file is made here and removed again before returning.
///
/// Errors: `SHM_STATUS_TIMEOUT` (nobody connected), `SHM_STATUS_INVALID_ARGUMENT` (not
/// memfd memory, NULL), `SHM_STATUS_SYSTEM` (the socket).
///
/// # Safety
/// `mem` is NULL or a live memory handle; `socket_path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn shm_memory_memfd_serve(
    mem: *mut ShmMemory,
    socket_path: *const c_char,
    timeout_ns: u64,
) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(mem, "memory") }?;
        // SAFETY: as above.
        let path = unsafe { name_arg(socket_path) }?;
        let AnyShm::Memfd(m) = &h.mem else {
            return Err(Failure::invalid("not memfd memory"));
        };
        let server = shm_memfd::Server::bind(path).map_err(memfd_failure)?;
        let r = match timeout_arg(timeout_ns) {
            None => server.serve_one(m),
            Some(t) => server.serve_one_timeout(m, t),
        };
        drop(server);
        let _ = std::fs::remove_file(path);
        r.map(drop).map_err(memfd_failure)
    })
}

/// Connects to the Unix socket at `socket_path`, waiting up to `timeout_ns` for it, and
/// maps the memfd its server sends (checked: sealed against resizing, its size).
///
/// Errors: `SHM_STATUS_TIMEOUT`, `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// `socket_path` is NULL or NUL-terminated; `out` is NULL or points to a `shm_memory *`.
#[no_mangle]
pub unsafe extern "C" fn shm_memory_memfd_connect(
    socket_path: *const c_char,
    timeout_ns: u64,
    out: *mut *mut ShmMemory,
) -> ShmStatus {
    let make = |path: &str| {
        let t = timeout_arg(timeout_ns).unwrap_or(Duration::from_secs(365 * 24 * 3600));
        let m = shm_memfd::connect_timeout(path, t).map_err(memfd_failure)?;
        Ok(ShmMemory {
            mem: AnyShm::from(m),
        })
    };
    // SAFETY: the caller's contract above.
    unsafe { named(socket_path, out, make) }
}

/// Creates anonymous shared memory of `size` bytes: a child forked after this call
/// shares it (and the channels and broadcasts laid out in it; the child takes its own
/// ends from the inherited handles).
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// `out` is NULL or points to a `shm_memory *`.
#[no_mangle]
pub unsafe extern "C" fn shm_memory_anon_create(size: u64, out: *mut *mut ShmMemory) -> ShmStatus {
    guard(|| {
        out_arg(out)?;
        let len = size_arg(size)?;
        let m = shm_anon::AnonShm::create(len)
            .map_err(|e| Failure::new(ShmStatus::System, format!("mmap: {e}")))?;
        hand_out(
            out,
            ShmMemory {
                mem: AnyShm::from(m),
            },
        )
    })
}

/// Frees a memory handle (NULL: nothing): a POSIX segment's creator removes its name.
/// Segments laid out in the memory keep their own mappings.
///
/// # Safety
/// `mem` is NULL or a handle from a `shm_memory_*` function.
#[no_mangle]
pub unsafe extern "C" fn shm_memory_free(mem: *mut ShmMemory) -> ShmStatus {
    free(mem, "memory")
}
