//! The extension module `shm._shm` behind the Python package `shm` (see `python/shm`).
//!
//! Python never gets a view of memory another process can write: receiving copies once
//! into the caller's buffer (or a new `bytes`), as the Rust API does. Every wait releases
//! the GIL and runs in slices of at most 50 ms, between which pending signals are
//! checked, so Ctrl-C interrupts a blocking call with `KeyboardInterrupt`.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shm_core::format::schema::Schema;
use shm_core::{Error as CoreError, RawSegment, RecvTimeoutError, SharedMemory, TryRecvError};

/// Memory of any backend, as the channel, broadcast and records hold it.
type Mem = Box<dyn SharedMemory + Send + Sync>;

create_exception!(_shm, Error, PyException, "Every error of the shm package.");
create_exception!(_shm, Timeout, Error, "A wait ran out of time.");
create_exception!(_shm, Closed, Error, "The other side closed cleanly.");
create_exception!(
    _shm,
    PeerDied,
    Error,
    "The other side's process died without closing."
);
create_exception!(
    _shm,
    Lagged,
    Error,
    "A broadcast subscriber fell behind: args[1] messages are gone."
);
create_exception!(
    _shm,
    UpstreamLost,
    Error,
    "An imported broadcast's exporter is gone for now; messages resume when it returns."
);
create_exception!(
    _shm,
    Evicted,
    Error,
    "The reliable publisher evicted this subscriber."
);
create_exception!(
    _shm,
    SchemaMismatch,
    Error,
    "The segment holds another record type."
);
create_exception!(_shm, ReadOnly, Error, "The mapping is read-only.");
create_exception!(
    _shm,
    Truncated,
    Error,
    "The segment was truncated under us."
);
create_exception!(
    _shm,
    Corrupt,
    Error,
    "A peer wrote a value no honest peer writes."
);
create_exception!(_shm, Full, Error, "No room now (a try call).");
create_exception!(_shm, Empty, Error, "No message now (a try call).");

/// The Python exception for a library error (its text is the library's).
fn err(e: impl Into<CoreError>) -> PyErr {
    let e: CoreError = e.into();
    let msg = e.to_string();
    match e {
        CoreError::Timeout { .. } => Timeout::new_err(msg),
        CoreError::Closed => Closed::new_err(msg),
        CoreError::PeerDied { pid } => PeerDied::new_err((msg, pid)),
        CoreError::Lagged { missed } => Lagged::new_err((msg, missed)),
        CoreError::Evicted { .. } => Evicted::new_err(msg),
        CoreError::UpstreamLost => UpstreamLost::new_err(msg),
        CoreError::SchemaMismatch { .. } => SchemaMismatch::new_err(msg),
        CoreError::ReadOnly { .. } => ReadOnly::new_err(msg),
        CoreError::Truncated { .. } => Truncated::new_err(msg),
        CoreError::Corrupt { .. } => Corrupt::new_err(msg),
        CoreError::Full => Full::new_err(msg),
        CoreError::Empty => Empty::new_err(msg),
        _ => Error::new_err(msg),
    }
}

fn closed_handle(what: &str) -> PyErr {
    Error::new_err(format!("this {what} was closed"))
}

/// Runs a bounded library wait in slices of at most 50 ms with the GIL released,
/// checking for signals (Ctrl-C) between slices; `timeout` in seconds (None: no limit).
fn wait<T, E>(
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

/// A contiguous Python buffer, read-only or writable.
struct Buf {
    buf: PyBuffer<u8>,
}

impl Buf {
    fn get(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<Buf> {
        let type_error =
            || {
                PyTypeError::new_err(format!(
                "expected a bytes-like object (bytes, bytearray, memoryview, numpy array), not {}",
                obj.get_type().name().map_or("?".to_owned(), |n| n.to_string())
            ))
            };
        if obj.is_instance_of::<pyo3::types::PyString>() {
            return Err(type_error());
        }
        let buf = match PyBuffer::<u8>::get(obj) {
            Ok(b) => b,
            // Another element type (a numpy array of uint16, say): its bytes, through a
            // byte-cast memoryview (which keeps the array's export alive).
            Err(_) => {
                let py = obj.py();
                let mv = py
                    .import("builtins")
                    .and_then(|b| b.getattr("memoryview"))
                    .and_then(|m| m.call1((obj,)))
                    .map_err(|_| type_error())?;
                let bytes = mv
                    .call_method1("cast", ("B",))
                    .map_err(|_| PyTypeError::new_err("the buffer must be C-contiguous"))?;
                PyBuffer::<u8>::get(&bytes).map_err(|_| type_error())?
            }
        };
        if !buf.is_c_contiguous() {
            return Err(PyTypeError::new_err("the buffer must be C-contiguous"));
        }
        if writable && buf.readonly() {
            return Err(PyTypeError::new_err(
                "recv_into needs a writable buffer (bytearray, numpy array, memoryview of one), not a read-only one",
            ));
        }
        Ok(Buf { buf })
    }
    fn len(&self) -> usize {
        self.buf.len_bytes()
    }
    /// The buffer's bytes, to read while the GIL is released.
    ///
    /// # Safety
    /// The buffer export (held by `self`) keeps the memory alive and its size fixed; the
    /// caller must not let Python code run on it concurrently (a racing Python thread is
    /// that thread's race, as with numpy's releasing calls).
    unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: forwarded to the caller; pointer and length come from the export.
        unsafe { std::slice::from_raw_parts(self.buf.buf_ptr() as *const u8, self.len()) }
    }
    /// # Safety
    /// As [`bytes`](Self::bytes), and the buffer is writable (checked by `get`).
    #[allow(clippy::mut_from_ref)]
    unsafe fn bytes_mut(&self) -> &mut [u8] {
        // SAFETY: forwarded to the caller.
        unsafe { std::slice::from_raw_parts_mut(self.buf.buf_ptr() as *mut u8, self.len()) }
    }
}

/// A raw pointer that may cross into `allow_threads` (the buffer it points to is kept
/// alive and unresized by a buffer export held on the Python side of the call).
struct SendPtr(*mut u8, usize);
// SAFETY: see above; only used for the duration of one call.
unsafe impl Send for SendPtr {}

// ------------------------------------------------------------------------------------
// Memory

/// Shared memory of one backend, not yet laid out: hand it to `Channel.create`,
/// `Broadcast.create` or `Segment.create` (which take it over), or their `attach`.
#[pyclass(module = "shm._shm")]
struct Memory {
    mem: Option<Mem>,
    backend: &'static str,
    name: Option<String>,
    len: usize,
    /// A memfd's descriptor (duplicated), to serve it after the layout took the mapping.
    fd: Option<OwnedFd>,
}

fn memory(mem: Mem, name: Option<String>, fd: Option<OwnedFd>) -> Memory {
    Memory {
        backend: mem.backend(),
        len: mem.len(),
        mem: Some(mem),
        name,
        fd,
    }
}

fn size_arg(size: i64) -> PyResult<u64> {
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
            .map_err(|e| Error::new_err(e.to_string()))?;
        Ok(memory(Box::new(m), Some(name.to_owned()), None))
    }

    /// Opens an existing named POSIX segment (read-only with `read_only=True`).
    #[staticmethod]
    #[pyo3(signature = (name, read_only=false))]
    fn posix_open(name: &str, read_only: bool) -> PyResult<Memory> {
        let m = shm_posix::ShmOptions::new(name)
            .read_only(read_only)
            .open()
            .map_err(|e| Error::new_err(e.to_string()))?;
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
            .map_err(|e| Error::new_err(e.to_string()))?;
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
        if !(timeout >= 0.0 && timeout.is_finite()) {
            return Err(PyValueError::new_err(
                "timeout must be a finite number >= 0",
            ));
        }
        let t = Duration::from_secs_f64(timeout);
        let m = py
            .allow_threads(|| {
                if read_only {
                    shm_memfd::connect_read_only(path, t)
                } else {
                    shm_memfd::connect_timeout(path, t)
                }
            })
            .map_err(|e| Error::new_err(e.to_string()))?;
        Ok(memory(Box::new(m), None, None))
    }

    /// Anonymous shared memory of `size` bytes: shared with children made by
    /// `os.fork()` after this call.
    #[staticmethod]
    fn anon_create(size: i64) -> PyResult<Memory> {
        let size = usize::try_from(size_arg(size)?)
            .map_err(|_| PyValueError::new_err("size larger than the address space"))?;
        let m = shm_anon::AnonShm::create(size).map_err(|e| Error::new_err(e.to_string()))?;
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
        if !(timeout >= 0.0 && timeout.is_finite()) {
            return Err(PyValueError::new_err(
                "timeout must be a finite number >= 0",
            ));
        }
        let server = shm_memfd::Server::bind(path).map_err(|e| Error::new_err(e.to_string()))?;
        let t = Duration::from_secs_f64(timeout);
        py.allow_threads(|| server.serve_one_timeout(fd, t))
            .map_err(|e| Error::new_err(e.to_string()))
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

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&mut self, _a: PyObject, _b: PyObject, _c: PyObject) {
        self.close();
    }

    fn __repr__(&self) -> String {
        format!(
            "Memory(backend={:?}, len={}, name={:?}{})",
            self.backend,
            self.len,
            self.name,
            if self.mem.is_none() { ", taken" } else { "" }
        )
    }
}

impl Memory {
    fn take(&mut self) -> PyResult<Mem> {
        self.mem
            .take()
            .ok_or_else(|| Error::new_err("this memory was already handed to a layout or closed"))
    }
}

// ------------------------------------------------------------------------------------
// Records

/// A record segment whose type Python describes: a schema (name, version, size,
/// alignment) checked against the header exactly as Rust's `Record` is.
#[pyclass(module = "shm._shm")]
struct RawRecord {
    raw: Option<RawSegment<Mem>>,
    size: usize,
}

fn schema(name: &str, version: u32, size: u64, align: u64) -> PyResult<Schema> {
    if !align.is_power_of_two() || align > 64 {
        return Err(PyValueError::new_err(format!(
            "alignment must be a power of two up to 64, not {align}"
        )));
    }
    Schema::new(name, version, size, align).map_err(err)
}

#[pymethods]
impl RawRecord {
    /// Lays a record segment into fresh memory holding `initial` (exactly `size` bytes).
    #[staticmethod]
    fn create(
        mem: &mut Memory,
        name: &str,
        version: u32,
        size: u64,
        align: u64,
        initial: &Bound<'_, PyAny>,
    ) -> PyResult<RawRecord> {
        let s = schema(name, version, size, align)?;
        let b = Buf::get(initial, false)?;
        if b.len() as u64 != size {
            return Err(PyValueError::new_err(format!(
                "the initial value has {} bytes, the record {size}",
                b.len()
            )));
        }
        // SAFETY: the export is held for this call; no Python code runs meanwhile.
        let bytes = unsafe { b.bytes() }.to_vec();
        let raw = RawSegment::create_record(mem.take()?, s, &bytes).map_err(err)?;
        Ok(RawRecord {
            raw: Some(raw),
            size: size as usize,
        })
    }

    /// Attaches to a record segment, checking its schema against this one.
    #[staticmethod]
    fn attach(
        mem: &mut Memory,
        name: &str,
        version: u32,
        size: u64,
        align: u64,
    ) -> PyResult<RawRecord> {
        let s = schema(name, version, size, align)?;
        let raw = RawSegment::attach_record(mem.take()?, s).map_err(err)?;
        Ok(RawRecord {
            raw: Some(raw),
            size: size as usize,
        })
    }

    /// Attaches to a segment with no header (the record at offset 0: the tutorial's, or
    /// Python's `multiprocessing.shared_memory`); only its size can be checked.
    #[staticmethod]
    fn attach_foreign(mem: &mut Memory, size: u64) -> PyResult<RawRecord> {
        let m = mem.take()?;
        if (m.len() as u64) < size {
            return Err(err(CoreError::TooSmall {
                needed: size,
                found: m.len() as u64,
            }));
        }
        Ok(RawRecord {
            raw: Some(RawSegment::foreign(m)),
            size: size as usize,
        })
    }

    /// A copy of the record's bytes.
    fn read<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let raw = self.raw.as_ref().ok_or_else(|| closed_handle("segment"))?;
        let mut v = vec![0u8; self.size];
        raw.read_at(0, &mut v).map_err(err)?;
        Ok(PyBytes::new(py, &v))
    }

    /// Overwrites the record with `value` (exactly the record's size).
    fn write(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let raw = self.raw.as_ref().ok_or_else(|| closed_handle("segment"))?;
        let b = Buf::get(value, false)?;
        if b.len() != self.size {
            return Err(PyValueError::new_err(format!(
                "the value has {} bytes, the record {}",
                b.len(),
                self.size
            )));
        }
        // SAFETY: the export is held for this call; no Python code runs meanwhile.
        raw.write_at(0, unsafe { b.bytes() }).map_err(err)
    }

    /// Closes the segment (a posix segment this process created is removed).
    fn close(&mut self) {
        self.raw = None;
    }
}

/// A seqlock record whose type Python describes: readers in other processes never see a
/// half-written value.
#[pyclass(module = "shm._shm")]
struct RawSeqLock {
    lock: Option<shm_core::seqlock::RawSeqLock<Mem>>,
}

#[pymethods]
impl RawSeqLock {
    /// Lays a seqlock segment into fresh memory holding `initial` (exactly `size` bytes).
    #[staticmethod]
    fn create(
        mem: &mut Memory,
        name: &str,
        version: u32,
        size: u64,
        align: u64,
        initial: &Bound<'_, PyAny>,
    ) -> PyResult<RawSeqLock> {
        let s = schema(name, version, size, align)?;
        let b = Buf::get(initial, false)?;
        // SAFETY: the export is held for this call; no Python code runs meanwhile.
        let bytes = unsafe { b.bytes() }.to_vec();
        let lock = shm_core::seqlock::RawSeqLock::create(mem.take()?, s, &bytes).map_err(err)?;
        Ok(RawSeqLock { lock: Some(lock) })
    }

    /// Attaches to a seqlock segment, checking its schema.
    #[staticmethod]
    fn attach(
        mem: &mut Memory,
        name: &str,
        version: u32,
        size: u64,
        align: u64,
    ) -> PyResult<RawSeqLock> {
        let s = schema(name, version, size, align)?;
        let lock = shm_core::seqlock::RawSeqLock::attach(
            mem.take()?,
            s,
            &shm_core::AttachOptions::default(),
        )
        .map_err(err)?;
        Ok(RawSeqLock { lock: Some(lock) })
    }

    /// A consistent snapshot of the record's bytes (the GIL is released while it retries).
    fn load<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let lock = self.lock.as_ref().ok_or_else(|| closed_handle("seqlock"))?;
        let mut v = vec![0u8; lock.record_len()];
        py.allow_threads(|| lock.load_into(&mut v)).map_err(err)?;
        Ok(PyBytes::new(py, &v))
    }

    /// Replaces the record; readers see the old or the new value, never a mix.
    fn store(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let lock = self.lock.as_ref().ok_or_else(|| closed_handle("seqlock"))?;
        let b = Buf::get(value, false)?;
        // SAFETY: the export is held for this call; see `Buf::bytes`.
        let bytes = unsafe { b.bytes() }.to_vec();
        py.allow_threads(|| lock.store(&bytes)).map_err(err)
    }

    /// Closes the segment (a posix segment this process created is removed).
    fn close(&mut self) {
        self.lock = None;
    }
}

// ------------------------------------------------------------------------------------
// Channel

/// A channel segment: one or two single-producer single-consumer rings.
#[pyclass(module = "shm._shm")]
struct Channel {
    chan: Option<shm_core::Channel<Mem>>,
}

#[pymethods]
impl Channel {
    /// Lays a channel into fresh memory: `rings` (1 or 2), `capacity` bytes per ring (a
    /// power of two; default: as large as the memory allows).
    #[staticmethod]
    #[pyo3(signature = (mem, rings=1, capacity=None))]
    fn create(mem: &mut Memory, rings: u32, capacity: Option<u64>) -> PyResult<Channel> {
        let mut opts = shm_core::ChannelOptions::new().rings(rings);
        if let Some(c) = capacity {
            opts = opts.capacity(c);
        }
        let chan = shm_core::Channel::create(mem.take()?, &opts).map_err(err)?;
        Ok(Channel { chan: Some(chan) })
    }

    /// The memory a channel of `rings` rings of `capacity` bytes needs.
    #[staticmethod]
    #[pyo3(signature = (capacity, rings=1))]
    fn segment_len(capacity: u64, rings: u32) -> PyResult<u64> {
        shm_core::ChannelOptions::new()
            .rings(rings)
            .capacity(capacity)
            .segment_len()
            .map_err(err)
    }

    /// Attaches to a channel segment, validating it.
    #[staticmethod]
    fn attach(mem: &mut Memory) -> PyResult<Channel> {
        let chan = shm_core::Channel::attach(mem.take()?).map_err(err)?;
        Ok(Channel { chan: Some(chan) })
    }

    /// The sending end of `ring`.
    #[pyo3(signature = (ring=0))]
    fn sender(&self, ring: u32) -> PyResult<Sender> {
        let c = self.chan.as_ref().ok_or_else(|| closed_handle("channel"))?;
        Ok(Sender {
            tx: Some(c.sender(ring).map_err(err)?),
            reserved: false,
        })
    }

    /// The receiving end of `ring`.
    #[pyo3(signature = (ring=0))]
    fn receiver(&self, ring: u32) -> PyResult<Receiver> {
        let c = self.chan.as_ref().ok_or_else(|| closed_handle("channel"))?;
        Ok(Receiver {
            rx: Some(c.receiver(ring).map_err(err)?),
        })
    }

    /// The largest message a ring carries.
    #[getter]
    fn max_message(&self) -> PyResult<u64> {
        Ok(self
            .chan
            .as_ref()
            .ok_or_else(|| closed_handle("channel"))?
            .max_message())
    }

    /// Closes this handle (ends handed out stay usable; the memory goes with the last).
    fn close(&mut self) {
        self.chan = None;
    }
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&mut self, _a: PyObject, _b: PyObject, _c: PyObject) {
        self.close();
    }
}

/// The sending end of a ring.
#[pyclass(module = "shm._shm")]
struct Sender {
    tx: Option<shm_core::Sender<Mem>>,
    /// A `Reservation` is outstanding: the end may not close under its memoryview.
    reserved: bool,
}

/// Room for one message in the ring, writable in place: `memoryview(res)` (or the
/// `view()` shorthand) is a writable view of exactly the message's bytes, the writer's
/// own slot, which no reader sees until `commit()`. Release every view before
/// committing (`with memoryview(res) as v:` does): `commit()` raises `BufferError`
/// while a view is alive, and after the commit (or `abandon()`) no new view can be
/// made, so a view never outlives the slot. Used as a context manager it commits on a
/// clean exit and abandons on an exception.
#[pyclass(module = "shm._shm")]
struct Reservation {
    sender: Py<Sender>,
    slot: Option<shm_core::channel::DetachedSlot>,
    ptr: usize,
    len: usize,
    exports: usize,
}

#[pymethods]
impl Reservation {
    unsafe fn __getbuffer__(
        mut slf: PyRefMut<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: std::os::raw::c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(pyo3::exceptions::PyBufferError::new_err("no view to fill"));
        }
        if slf.slot.is_none() {
            return Err(pyo3::exceptions::PyBufferError::new_err(
                "this reservation was committed or abandoned: its slot is no longer ours",
            ));
        }
        let obj = slf.as_ptr();
        // SAFETY: `view` is non-null (checked) and the interpreter's to fill; the range is
        // the reserved slot, mapped for as long as the sender lives, which this object
        // keeps alive (`sender`), and the sender cannot close while we are outstanding;
        // FillInfo takes a reference to `obj`, so the view keeps us alive in turn.
        let rc = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(
                view,
                obj,
                slf.ptr as *mut std::os::raw::c_void,
                slf.len as pyo3::ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        slf.exports += 1;
        Ok(())
    }

    unsafe fn __releasebuffer__(mut slf: PyRefMut<'_, Self>, _view: *mut pyo3::ffi::Py_buffer) {
        slf.exports = slf.exports.saturating_sub(1);
    }

    /// A writable memoryview of the slot (the same as `memoryview(self)`).
    fn view<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.py()
            .import("builtins")?
            .getattr("memoryview")?
            .call1((slf,))
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// Publishes the message.
    fn commit(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.exports > 0 {
            return Err(pyo3::exceptions::PyBufferError::new_err(
                "release the memoryview of this reservation before committing it (view.release(), or `with memoryview(res) as view:`)",
            ));
        }
        let slot = self
            .slot
            .take()
            .ok_or_else(|| Error::new_err("this reservation was already committed or abandoned"))?;
        let mut s = self.sender.bind(py).borrow_mut();
        s.reserved = false;
        let tx = s.tx.as_mut().ok_or_else(|| closed_handle("sender"))?;
        tx.commit_detached(slot).map_err(err)
    }

    /// Gives the slot up: nothing is sent.
    fn abandon(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.exports > 0 {
            return Err(pyo3::exceptions::PyBufferError::new_err(
                "release the memoryview of this reservation first",
            ));
        }
        if let Some(slot) = self.slot.take() {
            let mut s = self.sender.bind(py).borrow_mut();
            s.reserved = false;
            if let Some(tx) = s.tx.as_mut() {
                tx.abandon_detached(slot);
            }
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        kind: PyObject,
        _b: PyObject,
        _c: PyObject,
    ) -> PyResult<()> {
        if self.slot.is_none() {
            return Ok(());
        }
        if kind.is_none(py) {
            self.commit(py)
        } else {
            self.abandon(py)
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Dropped without a commit: abandon, so the sender can reserve again.
        if let Some(slot) = self.slot.take() {
            Python::with_gil(|py| {
                if let Ok(mut s) = self.sender.bind(py).try_borrow_mut() {
                    s.reserved = false;
                    if let Some(tx) = s.tx.as_mut() {
                        tx.abandon_detached(slot);
                    }
                }
            });
        }
    }
}

#[pymethods]
impl Sender {
    /// Sends a copy of `data` (any bytes-like object), waiting for room at most
    /// `timeout` seconds (None: as long as it takes). The GIL is released meanwhile.
    #[pyo3(signature = (data, timeout=None))]
    fn send(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let tx = self.tx.as_mut().ok_or_else(|| closed_handle("sender"))?;
        let b = Buf::get(data, false)?;
        // SAFETY: the export `b` lives across the call; see `Buf::bytes`.
        let p = SendPtr(unsafe { b.bytes() }.as_ptr().cast_mut(), b.len());
        wait(py, timeout, move |slice| {
            let p = &p;
            // SAFETY: as above: alive and unresized for the call.
            let bytes = unsafe { std::slice::from_raw_parts(p.0, p.1) };
            tx.send_timeout(bytes, slice)
        })
    }

    /// Room for an `n`-byte message, written in place: a `Reservation` whose memoryview
    /// is the slot (zero-copy), committed with `commit()`. Waits for room at most
    /// `timeout` seconds. One reservation at a time per sender.
    #[pyo3(signature = (n, timeout=None))]
    fn reserve(slf: &Bound<'_, Self>, n: i64, timeout: Option<f64>) -> PyResult<Reservation> {
        let py = slf.py();
        let n = usize::try_from(n)
            .map_err(|_| PyValueError::new_err(format!("n must be >= 0, not {n}")))?;
        let mut me = slf.borrow_mut();
        if me.reserved {
            return Err(Error::new_err(
                "a reservation of this sender is outstanding: commit or abandon it first",
            ));
        }
        let tx = me.tx.as_mut().ok_or_else(|| closed_handle("sender"))?;
        let slot = wait(py, timeout, |slice| tx.reserve_detached(n, Some(slice)))?;
        let ptr = tx.detached_ptr(&slot).map_err(err)? as usize;
        me.reserved = true;
        drop(me);
        Ok(Reservation {
            sender: slf.clone().unbind(),
            slot: Some(slot),
            ptr,
            len: n,
            exports: 0,
        })
    }

    /// Sends if there is room now (`shm.Full` otherwise).
    fn try_send(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let tx = self.tx.as_mut().ok_or_else(|| closed_handle("sender"))?;
        let b = Buf::get(data, false)?;
        // SAFETY: the export is held for this call; no Python code runs meanwhile.
        tx.try_send(unsafe { b.bytes() }).map_err(err)
    }

    /// The largest message this ring carries.
    #[getter]
    fn max_message(&self) -> PyResult<u64> {
        Ok(self
            .tx
            .as_ref()
            .ok_or_else(|| closed_handle("sender"))?
            .max_message())
    }

    /// Closes the end (the receiver then gets `shm.Closed` once it has read everything).
    /// Refused while a reservation is outstanding (its view points into the ring).
    fn close(&mut self) -> PyResult<()> {
        if self.reserved {
            return Err(pyo3::exceptions::PyBufferError::new_err(
                "a reservation of this sender is outstanding: commit or abandon it first",
            ));
        }
        self.tx = None;
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&mut self, _a: PyObject, _b: PyObject, _c: PyObject) -> PyResult<()> {
        self.close()
    }
}

/// The receiving end of a ring.
#[pyclass(module = "shm._shm")]
struct Receiver {
    rx: Option<shm_core::Receiver<Mem>>,
}

#[pymethods]
impl Receiver {
    /// The next message as `bytes`, waiting at most `timeout` seconds (None: as long as
    /// it takes). `shm.Closed` once the sender closed and everything was read;
    /// `shm.PeerDied` if its process died. The GIL is released meanwhile; Ctrl-C raises
    /// `KeyboardInterrupt` within 50 ms.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(
        &mut self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let rx = self.rx.as_mut().ok_or_else(|| closed_handle("receiver"))?;
        let v = wait(py, timeout, |slice| {
            let mut v = Vec::new();
            rx.recv_into_timeout(&mut v, slice).map(|_| v)
        })?;
        Ok(PyBytes::new(py, &v))
    }

    /// Receives the next message into `buffer` (any writable bytes-like object: a
    /// bytearray, a numpy array, a memoryview of one) with one copy; returns its length.
    /// A message longer than the buffer raises `ValueError` and stays in the ring.
    #[pyo3(signature = (buffer, timeout=None))]
    fn recv_into(
        &mut self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let rx = self.rx.as_mut().ok_or_else(|| closed_handle("receiver"))?;
        let b = Buf::get(buffer, true)?;
        // SAFETY: the export `b` lives across the call and is writable; see `Buf`.
        let p = SendPtr(unsafe { b.bytes_mut() }.as_mut_ptr(), b.len());
        let got = wait(py, timeout, move |slice| {
            let p = &p;
            // SAFETY: as above: alive, writable, unresized for the call.
            let out = unsafe { std::slice::from_raw_parts_mut(p.0, p.1) };
            // A message longer than the buffer stays in the ring for the next call.
            match rx.recv_into_slice_timeout(out, slice) {
                Ok(n) => Ok(Ok(n)),
                Err(RecvTimeoutError::MessageTooLarge { len, .. }) => Ok(Err(len as usize)),
                Err(e) => Err(e),
            }
        })?;
        got.map_err(|n| {
            PyValueError::new_err(format!(
                "the buffer holds {} bytes, the message {n}; it stays in the ring",
                b.len()
            ))
        })
    }

    /// The next message if there is one now, copied into `buffer`; returns its length
    /// (`shm.Empty` otherwise). A message longer than the buffer raises `ValueError` and
    /// stays in the ring.
    fn try_recv_into(&mut self, buffer: &Bound<'_, PyAny>) -> PyResult<usize> {
        let rx = self.rx.as_mut().ok_or_else(|| closed_handle("receiver"))?;
        let b = Buf::get(buffer, true)?;
        // SAFETY: the export is held for this call and is writable; no Python code runs
        // meanwhile.
        let out = unsafe { b.bytes_mut() };
        match rx.try_recv_into_slice(out) {
            Ok(n) => Ok(n),
            Err(TryRecvError::MessageTooLarge { len, .. }) => Err(PyValueError::new_err(format!(
                "the buffer holds {} bytes, the message {len}; it stays in the ring",
                b.len()
            ))),
            Err(e) => Err(err(e)),
        }
    }

    /// The next message if there is one now (`shm.Empty` otherwise).
    fn try_recv<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let rx = self.rx.as_mut().ok_or_else(|| closed_handle("receiver"))?;
        let slot = rx.try_recv().map_err(err)?;
        let mut v = vec![0u8; slot.len()];
        slot.read(0, &mut v).map_err(err)?;
        drop(slot);
        Ok(PyBytes::new(py, &v))
    }

    /// Closes the end.
    fn close(&mut self) {
        self.rx = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&mut self, _a: PyObject, _b: PyObject, _c: PyObject) {
        self.close();
    }
}

// ------------------------------------------------------------------------------------
// Broadcast

/// A broadcast segment: one publisher, many subscribers.
#[pyclass(module = "shm._shm")]
struct Broadcast {
    b: Option<shm_core::Broadcast<Mem>>,
}

fn bopts(
    slots: u64,
    max_message: u64,
    lossy: bool,
    max_subscribers: u32,
    evict_timeout: f64,
) -> PyResult<shm_core::BroadcastOptions> {
    if !(evict_timeout >= 0.0 && evict_timeout.is_finite()) {
        return Err(PyValueError::new_err(
            "evict_timeout must be a finite number >= 0",
        ));
    }
    Ok(shm_core::BroadcastOptions::new()
        .mode(if lossy {
            shm_core::BroadcastMode::Lossy
        } else {
            shm_core::BroadcastMode::Reliable
        })
        .slots(slots)
        .max_message(max_message)
        .max_subscribers(max_subscribers)
        .evict_timeout(Duration::from_secs_f64(evict_timeout)))
}

#[pymethods]
impl Broadcast {
    /// Lays a broadcast into fresh memory (size it with `Broadcast.segment_len`).
    #[staticmethod]
    #[pyo3(signature = (mem, slots=64, max_message=4080, lossy=false, max_subscribers=64, evict_timeout=1.0))]
    fn create(
        mem: &mut Memory,
        slots: u64,
        max_message: u64,
        lossy: bool,
        max_subscribers: u32,
        evict_timeout: f64,
    ) -> PyResult<Broadcast> {
        let o = bopts(slots, max_message, lossy, max_subscribers, evict_timeout)?;
        Ok(Broadcast {
            b: Some(shm_core::Broadcast::create(mem.take()?, &o).map_err(err)?),
        })
    }

    /// The memory a broadcast with these options needs.
    #[staticmethod]
    #[pyo3(signature = (slots=64, max_message=4080, lossy=false, max_subscribers=64, evict_timeout=1.0))]
    fn segment_len(
        slots: u64,
        max_message: u64,
        lossy: bool,
        max_subscribers: u32,
        evict_timeout: f64,
    ) -> PyResult<u64> {
        bopts(slots, max_message, lossy, max_subscribers, evict_timeout)?
            .segment_len()
            .map_err(err)
    }

    /// Attaches to a broadcast segment (read-only memory makes a lossy read-only
    /// subscriber possible).
    #[staticmethod]
    fn attach(mem: &mut Memory) -> PyResult<Broadcast> {
        Ok(Broadcast {
            b: Some(shm_core::Broadcast::attach(mem.take()?).map_err(err)?),
        })
    }

    /// The publishing end.
    fn publisher(&self) -> PyResult<Publisher> {
        let b = self.b.as_ref().ok_or_else(|| closed_handle("broadcast"))?;
        Ok(Publisher {
            p: Some(b.publisher().map_err(err)?),
        })
    }

    /// Joins as a subscriber: the first message it receives is the next one published.
    fn subscriber(&self) -> PyResult<Subscriber> {
        let b = self.b.as_ref().ok_or_else(|| closed_handle("broadcast"))?;
        Ok(Subscriber {
            s: Some(b.subscriber().map_err(err)?),
            buf: Vec::new(),
        })
    }

    /// Deprecated name of `subscriber()` (one name per end); warns `DeprecationWarning`.
    fn subscribe(&self, py: Python<'_>) -> PyResult<Subscriber> {
        PyErr::warn(
            py,
            &py.get_type::<pyo3::exceptions::PyDeprecationWarning>(),
            c"Broadcast.subscribe() is deprecated: use Broadcast.subscriber()",
            1,
        )?;
        self.subscriber()
    }

    /// Subscribers holding a line now.
    fn subscriber_count(&self) -> PyResult<u32> {
        Ok(self
            .b
            .as_ref()
            .ok_or_else(|| closed_handle("broadcast"))?
            .subscriber_count())
    }

    /// Closes this handle.
    fn close(&mut self) {
        self.b = None;
    }
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&mut self, _a: PyObject, _b: PyObject, _c: PyObject) {
        self.close();
    }
}

/// The publishing end of a broadcast.
#[pyclass(module = "shm._shm")]
struct Publisher {
    p: Option<shm_core::Publisher<Mem>>,
}

#[pymethods]
impl Publisher {
    /// Publishes a copy of `data`. Reliable: waits for room (evicting the dead and the
    /// stuck), at most `timeout` seconds. Lossy: never waits.
    #[pyo3(signature = (data, timeout=None))]
    fn publish(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let p = self.p.as_mut().ok_or_else(|| closed_handle("publisher"))?;
        let b = Buf::get(data, false)?;
        // SAFETY: the export `b` lives across the call; see `Buf::bytes`.
        let ptr = SendPtr(unsafe { b.bytes() }.as_ptr().cast_mut(), b.len());
        wait(py, timeout, move |slice| {
            let ptr = &ptr;
            // SAFETY: as above.
            let bytes = unsafe { std::slice::from_raw_parts(ptr.0, ptr.1) };
            p.publish_timeout(bytes, slice)
        })
    }

    /// Publishes a copy of `data` if it can now: `shm.Full` when a reliable ring has no
    /// room without waiting (lossy never waits).
    fn try_publish(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let p = self.p.as_mut().ok_or_else(|| closed_handle("publisher"))?;
        let b = Buf::get(data, false)?;
        // SAFETY: the export is held for this call; no Python code runs meanwhile.
        p.try_publish(unsafe { b.bytes() }).map_err(err)
    }

    /// Waits until `n` subscribers hold a line, at most `timeout` seconds.
    #[pyo3(signature = (n, timeout=10.0))]
    fn wait_for_subscribers(&self, py: Python<'_>, n: u32, timeout: f64) -> PyResult<u32> {
        let p = self.p.as_ref().ok_or_else(|| closed_handle("publisher"))?;
        wait(py, Some(timeout), |slice| p.wait_for_subscribers(n, slice))
    }

    /// Closes the end (subscribers get `shm.Closed` once they read everything).
    fn close(&mut self) {
        self.p = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&mut self, _a: PyObject, _b: PyObject, _c: PyObject) {
        self.close();
    }
}

/// A subscriber of a broadcast.
#[pyclass(module = "shm._shm")]
struct Subscriber {
    s: Option<shm_core::Subscriber<Mem>>,
    buf: Vec<u8>,
}

#[pymethods]
impl Subscriber {
    /// The next message: `(number, bytes)`. `shm.Lagged` (args[1]: how many were
    /// missed) when it fell behind a lossy ring; `shm.Closed`, `shm.PeerDied`,
    /// `shm.Evicted`.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(
        &mut self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<(u64, Bound<'py, PyBytes>)> {
        let s = self.s.as_mut().ok_or_else(|| closed_handle("subscriber"))?;
        let buf = &mut self.buf;
        let n = wait(py, timeout, |slice| {
            s.recv_into_timeout(buf, slice)?;
            Ok::<_, RecvTimeoutError>(s.last_number().expect("a message was received"))
        })?;
        Ok((n, PyBytes::new(py, &self.buf)))
    }

    /// Receives the next message into `buffer` with one copy: `(number, length)`. A
    /// message longer than the buffer raises `ValueError` and stays for the next call.
    #[pyo3(signature = (buffer, timeout=None))]
    fn recv_into(
        &mut self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<(u64, usize)> {
        let s = self.s.as_mut().ok_or_else(|| closed_handle("subscriber"))?;
        let b = Buf::get(buffer, true)?;
        // SAFETY: the export `b` lives across the call and is writable; see `Buf`.
        let p = SendPtr(unsafe { b.bytes_mut() }.as_mut_ptr(), b.len());
        let got = wait(py, timeout, move |slice| {
            let p = &p;
            // SAFETY: as above: alive, writable, unresized for the call.
            let out = unsafe { std::slice::from_raw_parts_mut(p.0, p.1) };
            match s.recv_into_slice_timeout(out, slice) {
                Ok(len) => Ok(Ok((s.last_number().expect("a message was received"), len))),
                Err(RecvTimeoutError::MessageTooLarge { len, .. }) => Ok(Err(len)),
                Err(e) => Err(e),
            }
        })?;
        got.map_err(|len| {
            PyValueError::new_err(format!(
                "the buffer holds {} bytes, the message {len}; it stays for the next call",
                b.len()
            ))
        })
    }

    /// The next message if there is one now: `(number, bytes)`; `shm.Empty` otherwise.
    fn try_recv<'py>(&mut self, py: Python<'py>) -> PyResult<(u64, Bound<'py, PyBytes>)> {
        let s = self.s.as_mut().ok_or_else(|| closed_handle("subscriber"))?;
        s.try_recv_into(&mut self.buf).map_err(err)?;
        let n = s.last_number().expect("a message was received");
        Ok((n, PyBytes::new(py, &self.buf)))
    }

    /// The next message if there is one now, copied into `buffer`: `(number, length)`;
    /// `shm.Empty` otherwise. A message longer than the buffer raises `ValueError` and
    /// stays for the next call.
    fn try_recv_into(&mut self, buffer: &Bound<'_, PyAny>) -> PyResult<(u64, usize)> {
        let s = self.s.as_mut().ok_or_else(|| closed_handle("subscriber"))?;
        let b = Buf::get(buffer, true)?;
        // SAFETY: the export is held for this call and is writable; no Python code runs
        // meanwhile.
        let out = unsafe { b.bytes_mut() };
        match s.try_recv_into_slice(out) {
            Ok(len) => Ok((s.last_number().expect("a message was received"), len)),
            Err(TryRecvError::MessageTooLarge { len, .. }) => Err(PyValueError::new_err(format!(
                "the buffer holds {} bytes, the message {len}; it stays for the next call",
                b.len()
            ))),
            Err(e) => Err(err(e)),
        }
    }

    /// The number of the next message it will receive.
    #[getter]
    fn next_message(&self) -> PyResult<u64> {
        Ok(self
            .s
            .as_ref()
            .ok_or_else(|| closed_handle("subscriber"))?
            .next_message())
    }

    /// Leaves the broadcast.
    fn close(&mut self) {
        self.s = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&mut self, _a: PyObject, _b: PyObject, _c: PyObject) {
        self.close();
    }
}

/// The extension module.
#[pymodule]
fn _shm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Memory>()?;
    m.add_class::<RawRecord>()?;
    m.add_class::<RawSeqLock>()?;
    m.add_class::<Channel>()?;
    m.add_class::<Sender>()?;
    m.add_class::<Reservation>()?;
    m.add_class::<Receiver>()?;
    m.add_class::<Broadcast>()?;
    m.add_class::<Publisher>()?;
    m.add_class::<Subscriber>()?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("Timeout", py.get_type::<Timeout>())?;
    m.add("Closed", py.get_type::<Closed>())?;
    m.add("PeerDied", py.get_type::<PeerDied>())?;
    m.add("Lagged", py.get_type::<Lagged>())?;
    m.add("UpstreamLost", py.get_type::<UpstreamLost>())?;
    m.add("Evicted", py.get_type::<Evicted>())?;
    m.add("SchemaMismatch", py.get_type::<SchemaMismatch>())?;
    m.add("ReadOnly", py.get_type::<ReadOnly>())?;
    m.add("Truncated", py.get_type::<Truncated>())?;
    m.add("Corrupt", py.get_type::<Corrupt>())?;
    m.add("Full", py.get_type::<Full>())?;
    m.add("Empty", py.get_type::<Empty>())?;
    Ok(())
}
