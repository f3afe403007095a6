//! `Memory`: shared memory of one backend, before a layout takes it over.

use crate::*;

/// Shared memory of one backend, not yet laid out: hand it to `Channel.create`,
/// `Broadcast.create` or `Segment.create` (which take it over), or their `attach`.
#[pyclass(module = "shm._shm")]
pub(crate) struct Memory {
    mem: Option<Mem>,
    backend: &'static str,
    name: Option<String>,
    len: usize,
    /// A memfd's descriptor (duplicated), to serve it after the layout took the mapping.
    fd: Option<OwnedFd>,
}

context_manager!(Memory);

pub(crate) fn memory(mem: Mem, name: Option<String>, fd: Option<OwnedFd>) -> Memory {
    Memory {
        backend: mem.backend(),
        len: mem.len(),
        mem: Some(mem),
        name,
        fd,
    }
}

/// The names of the POSIX segments this process created and still holds: removed from
/// `/dev/shm` by [`unlink_created`] when the interpreter exits (`_at_exit`, which the
/// package registers with `atexit`), so that a segment whose last holder is a daemon thread still blocked in
/// a wait, which Python never frees, does not outlive the process.
static CREATED: std::sync::Mutex<Vec<(String, u32)>> = std::sync::Mutex::new(Vec::new());

fn created() -> std::sync::MutexGuard<'static, Vec<(String, u32)>> {
    // A panic while the lock is held cannot leave the list half-changed.
    CREATED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A POSIX segment this process created, tracked in [`CREATED`] until it is dropped.
struct Created(shm_posix::PosixShm, String);

impl Drop for Created {
    fn drop(&mut self) {
        let mut c = created();
        if let Some(i) = c.iter().position(|(n, _)| *n == self.1) {
            c.swap_remove(i);
        }
    }
}

// SAFETY: every method forwards to the POSIX segment, which keeps its mapping for as long
// as this wrapper lives and makes no references into it.
unsafe impl SharedMemory for Created {
    fn as_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    fn is_owner(&self) -> bool {
        self.0.is_owner()
    }
    fn truncated(&self) -> Option<u64> {
        self.0.truncated()
    }
    fn writable(&self) -> bool {
        self.0.writable()
    }
    fn held_elsewhere(&self) -> Option<bool> {
        self.0.held_elsewhere()
    }
}

/// Removes the names of the POSIX segments this process created and still holds (the
/// mappings stay valid for whoever holds them): run at interpreter exit. A forked child
/// that exits through `atexit` leaves its parent's names alone.
pub(crate) fn unlink_created() {
    let me = std::process::id();
    for (name, pid) in std::mem::take(&mut *created()) {
        if pid == me {
            let _ = shm_posix::unlink(&name);
        }
    }
}

pub(crate) fn size_arg(size: i64) -> PyResult<u64> {
    u64::try_from(size).ok().filter(|&s| s > 0).ok_or_else(|| {
        PyValueError::new_err(format!(
            "size must be a positive number of bytes, not {size}"
        ))
    })
}

#[pymethods]
impl Memory {
    /// Creates a named POSIX segment of `size` bytes (`/dev/shm/NAME`); it is removed
    /// when what is laid out in it is closed (or this memory is dropped unused).
    #[staticmethod]
    fn posix_create(name: &str, size: i64) -> PyResult<Memory> {
        let size = size_arg(size)?;
        let m = shm_posix::ShmOptions::new(name)
            .size(size)
            .create()
            .map_err(posix_err)?;
        let full = m.name().to_owned();
        created().push((full.clone(), std::process::id()));
        Ok(memory(
            Box::new(Created(m, full)),
            Some(name.to_owned()),
            None,
        ))
    }

    /// Opens an existing named POSIX segment (read-only with `read_only=True`). With
    /// `wait=` seconds, waits that long for it to appear (a name not created yet, or a
    /// segment its creator has not sized yet), releasing the GIL; Ctrl-C interrupts it;
    /// then `shm.NotFound`. A layout's attach then waits for the creator to finish
    /// laying it out.
    #[staticmethod]
    #[pyo3(signature = (name, read_only=false, wait=None))]
    fn posix_open(
        py: Python<'_>,
        name: &str,
        read_only: bool,
        wait: Option<f64>,
    ) -> PyResult<Memory> {
        let opts = shm_posix::ShmOptions::new(name).read_only(read_only);
        let m =
            match wait {
                None => opts.open().map_err(posix_err)?,
                Some(t) => {
                    let deadline = deadline_in(seconds("wait", t)?);
                    let slice = Duration::from_millis(50);
                    loop {
                        let left = deadline
                            .map_or(FOREVER, |d| d.saturating_duration_since(Instant::now()));
                        let this = left.min(slice);
                        let o = opts.clone().wait(this);
                        match unlocked(py, || o.open()) {
                            Ok(m) => break m,
                            Err(
                                shm_posix::Error::NotFound { .. } | shm_posix::Error::Empty { .. },
                            ) if left > slice => py.check_signals()?,
                            Err(e) => return Err(posix_err(e)),
                        }
                    }
                }
            };
        Ok(memory(Box::new(m), Some(name.to_owned()), None))
    }

    /// Creates a sealed memfd of `size` bytes; `serve(path)` passes it to a client.
    /// `read_only_peers=True` seals it against writes by the clients.
    #[staticmethod]
    #[pyo3(signature = (size, read_only_peers=false))]
    fn memfd_create(size: i64, read_only_peers: bool) -> PyResult<Memory> {
        let size = size_arg(size)?;
        let m = shm_memfd::MemfdOptions::new()
            .name("shm-python")
            .size(size)
            .read_only_peers(read_only_peers)
            .create()
            .map_err(memfd_err)?;
        let fd = m
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::new_err(format!("dup: {e}")))?;
        Ok(memory(Box::new(m), None, Some(fd)))
    }

    /// Connects to a memfd server's socket and maps what it passes (read-only with
    /// `read_only=True`), waiting at most `timeout` seconds.
    #[staticmethod]
    #[pyo3(signature = (path, timeout=10.0, read_only=false))]
    fn memfd_connect(
        py: Python<'_>,
        path: &str,
        timeout: f64,
        read_only: bool,
    ) -> PyResult<Memory> {
        let t = bounded_seconds("timeout", timeout)?;
        let deadline = deadline_in(Some(t));
        let left = || deadline.map_or(t, |d| d.saturating_duration_since(Instant::now()));
        let stream =
            unlocked(py, || shm_memfd::connect_stream_timeout(path, left())).map_err(memfd_err)?;
        // The receive in slices of 50 ms with Ctrl-C checked between them (a server that
        // accepted and never sends used to hold the call for its whole timeout).
        let slice = Duration::from_millis(50);
        loop {
            let l = left();
            let this = l.min(slice);
            let r = unlocked(py, || {
                if read_only {
                    shm_memfd::receive_read_only_timeout(&stream, false, this)
                } else {
                    shm_memfd::receive_timeout(&stream, false, this)
                }
            });
            match r {
                Ok(m) => return Ok(memory(Box::new(m), None, None)),
                Err(shm_memfd::Error::Timeout(_)) if l > slice => py.check_signals()?,
                Err(e) => return Err(memfd_err(e)),
            }
        }
    }

    /// Anonymous shared memory of `size` bytes: shared with children made by
    /// `os.fork()` after this call.
    #[staticmethod]
    fn anon_create(size: i64) -> PyResult<Memory> {
        let size = usize::try_from(size_arg(size)?)
            .map_err(|_| PyValueError::new_err("size larger than the address space"))?;
        let m = shm_anon::AnonShm::create(size).map_err(PyErr::from)?;
        Ok(memory(Box::new(m), None, None))
    }

    /// Serves this memfd on a Unix socket at `path` to one client, waiting at most
    /// `timeout` seconds for it; returns the client's pid.
    #[pyo3(signature = (path, timeout=10.0))]
    fn serve(&self, py: Python<'_>, path: &str, timeout: f64) -> PyResult<u32> {
        let Some(fd) = self.fd.as_ref() else {
            return Err(Error::new_err(
                "only memory made by memfd_create can be served",
            ));
        };
        let deadline = deadline_in(seconds("timeout", timeout)?);
        let server = shm_memfd::Server::bind(path).map_err(memfd_err)?;
        // In slices of at most 50 ms with the GIL released, Ctrl-C checked between them
        // (one bound server: a connection that comes between two slices waits in its
        // backlog for the next).
        let slice = Duration::from_millis(50);
        loop {
            let left = deadline.map_or(FOREVER, |d| d.saturating_duration_since(Instant::now()));
            let this = left.min(slice);
            match unlocked(py, || server.serve_one_timeout(fd, this)) {
                Err(shm_memfd::Error::Timeout(_)) if left > slice => py.check_signals()?,
                r => return r.map_err(memfd_err),
            }
        }
    }

    /// Serves this memfd on a Unix socket at `path` to every client that connects, from
    /// a thread of its own, until the returned `Serving` is closed (or dropped): any
    /// number of consumers, and an operator's `shm-demo ls --socket` look, each get it.
    fn serve_background(&self, path: &str) -> PyResult<Serving> {
        let Some(fd) = self.fd.as_ref() else {
            return Err(Error::new_err(
                "only memory made by memfd_create can be served",
            ));
        };
        let fd = fd
            .try_clone()
            .map_err(|e| Error::new_err(format!("dup: {e}")))?;
        let server = shm_memfd::Server::bind(path).map_err(memfd_err)?;
        Ok(Serving {
            s: Some(server.serve_background(fd).map_err(memfd_err)?),
            closed_served: 0,
        })
    }

    /// `posix`, `memfd` or `anon`.
    #[getter]
    fn backend(&self) -> &'static str {
        self.backend
    }

    /// The segment's name (posix), or None.
    #[getter]
    fn name(&self) -> Option<String> {
        self.name.clone()
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// Unmaps (and, for a segment this memory created, removes) it now, unless it was
    /// handed to a layout.
    fn close(&mut self) {
        self.mem = None;
    }

    fn __repr__(&self) -> String {
        // As Python writes its values: a quoted name or None.
        let name = match &self.name {
            Some(n) => format!("'{}'", n.replace('\\', "\\\\").replace('\'', "\\'")),
            None => "None".to_owned(),
        };
        format!(
            "Memory(backend='{}', len={}, name={name}{})",
            self.backend,
            self.len,
            if self.mem.is_none() { ", taken" } else { "" }
        )
    }
}

impl Memory {
    pub(crate) fn take(&mut self) -> PyResult<Mem> {
        self.mem
            .take()
            .ok_or_else(|| Error::new_err("this memory was already handed to a layout or closed"))
    }
}

/// A memfd served to every client from a background thread (`Memory.serve_background`).
#[pyclass(module = "shm._shm")]
pub(crate) struct Serving {
    s: Option<shm_memfd::Serving>,
    // The count when it was closed: final then.
    closed_served: u64,
}

context_manager!(Serving);

#[pymethods]
impl Serving {
    /// Clients served so far. A client may hold its fd a moment before it is counted;
    /// once closed, the count is final.
    #[getter]
    fn served(&self) -> u64 {
        self.s.as_ref().map_or(self.closed_served, |s| s.served())
    }

    /// Stops serving (within 50 ms) and removes the socket file.
    fn close(&mut self) {
        if let Some(mut s) = self.s.take() {
            self.closed_served = Python::with_gil(|py| {
                unlocked(py, move || {
                    s.stop();
                    s.served()
                })
            });
        }
    }
}
