//! The channel: `Channel`, `Sender` (with `Reservation`, a slot written in place)
//! and `Receiver`.

use crate::*;

/// A channel segment: one or two single-producer single-consumer rings.
#[pyclass(module = "shm._shm")]
pub(crate) struct Channel {
    chan: Option<shm_core::Channel<Mem>>,
}

open_handle!(Channel, chan: shm_core::Channel<Mem>, "channel");
context_manager!(Channel);

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
        let chan = shm_core::Channel::create(mem.take()?, &opts).map_err(size_err)?;
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
            .map_err(size_err)
    }

    /// Attaches to a channel segment, validating it.
    #[staticmethod]
    fn attach(mem: &mut Memory) -> PyResult<Channel> {
        let chan = shm_core::Channel::attach(mem.take()?).map_err(err)?;
        Ok(Channel { chan: Some(chan) })
    }

    /// The sending end of `ring`. `spin=` seconds a full ring is spun on before the
    /// sender sleeps (default 50 µs; 0: sleep at once; `inf`: busy-poll).
    #[pyo3(signature = (ring=0, spin=None))]
    fn sender(&self, ring: u32, spin: Option<f64>) -> PyResult<Sender> {
        let mode = spin_mode(spin)?;
        let mut tx = self.handle()?.sender(ring).map_err(err)?;
        if let Some(m) = mode {
            tx.set_wait(m);
        }
        Ok(Sender {
            tx: Some(tx),
            reserved: false,
        })
    }

    /// The receiving end of `ring`. `spin=` seconds an empty ring is spun on before the
    /// receiver sleeps (default 50 µs; 0: sleep at once; `inf`: busy-poll).
    #[pyo3(signature = (ring=0, spin=None))]
    fn receiver(&self, ring: u32, spin: Option<f64>) -> PyResult<Receiver> {
        let mode = spin_mode(spin)?;
        let mut rx = self.handle()?.receiver(ring).map_err(err)?;
        if let Some(m) = mode {
            rx.set_wait(m);
        }
        Ok(Receiver { rx: Some(rx) })
    }

    /// The largest message a ring carries.
    #[getter]
    fn max_message(&self) -> PyResult<u64> {
        Ok(self.handle()?.max_message())
    }

    /// Closes this handle (ends handed out stay usable; the memory goes with the last).
    fn close(&mut self) {
        self.chan = None;
    }
}

/// The sending end of a ring.
#[pyclass(module = "shm._shm")]
pub(crate) struct Sender {
    tx: Option<shm_core::Sender<Mem>>,
    /// A `Reservation` is outstanding: the end may not close under its memoryview.
    reserved: bool,
}

open_handle!(Sender, tx: shm_core::Sender<Mem>, "sender");
context_manager!(Sender, fallible);

/// Room for one message in the ring, writable in place: `memoryview(res)` (or the
/// `view()` shorthand) is a writable view of exactly the message's bytes, the writer's
/// own slot, which no reader sees until `commit()`. Release every view before
/// committing (`with memoryview(res) as v:` does): `commit()` raises `BufferError`
/// while a view is alive, and after the commit (or `abandon()`) no new view can be
/// made, so a view never outlives the slot. Used as a context manager it commits on a
/// clean exit and abandons on an exception.
#[pyclass(module = "shm._shm")]
pub(crate) struct Reservation {
    sender: Py<Sender>,
    slot: Option<shm_core::channel::DetachedSlot>,
    ptr: usize,
    len: usize,
    exports: usize,
    /// A `with` block ended while a view was still alive: the slot is given up as soon
    /// as the last view is released (so the sender does not stay wedged until the
    /// garbage collector frees this object).
    abandon_on_release: bool,
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
        if slf.exports == 0 && slf.abandon_on_release {
            let py = slf.py();
            // Nothing can fail here (no view is left); the slot goes, the sender is free.
            let _ = slf.abandon(py);
        }
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
        let tx = s.handle_mut()?;
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
        let r = if kind.is_none(py) {
            self.commit(py)
        } else {
            self.abandon(py)
        };
        if r.is_err() && self.exports > 0 {
            // A view outlived the block: nothing is sent, and the slot is given up when
            // the last view is released.
            self.abandon_on_release = true;
        }
        r
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
    /// `send`, awaited (asyncio): a full ring is polled (from 50 µs up to 2 ms apart)
    /// while the loop runs other tasks. Cancellation safe: nothing is sent unless the
    /// await completes.
    fn send_async(slf: Py<Self>, py: Python<'_>, data: PyObject) -> PyResult<PyObject> {
        send_attempt(py, slf.into_any(), data, "try_send", "send_async")
    }

    /// Sends a copy of `data` (any bytes-like object), waiting for room at most
    /// `timeout` seconds (None: as long as it takes). The GIL is released meanwhile.
    #[pyo3(signature = (data, timeout=None))]
    fn send(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let tx = self.handle_mut()?;
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
        let tx = me.handle_mut()?;
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
            abandon_on_release: false,
        })
    }

    /// Sends if there is room now (`shm.Full` otherwise).
    fn try_send(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let tx = self.handle_mut()?;
        let b = Buf::get(data, false)?;
        // SAFETY: the export is held for this call; no Python code runs meanwhile.
        tx.try_send(unsafe { b.bytes() }).map_err(err)
    }

    /// The largest message this ring carries.
    #[getter]
    fn max_message(&self) -> PyResult<u64> {
        Ok(self.handle()?.max_message())
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
}

/// The receiving end of a ring.
#[pyclass(module = "shm._shm")]
pub(crate) struct Receiver {
    pub(crate) rx: Option<shm_core::Receiver<Mem>>,
}

open_handle!(Receiver, rx: shm_core::Receiver<Mem>, "receiver");
context_manager!(Receiver, any_thread);

#[pymethods]
impl Receiver {
    /// `recv`, awaited (asyncio): the next message's bytes. Its first step tries at once,
    /// spinning up to 20 µs; then the receiver is watched by the running loop's wait set
    /// (one per loop, through its `fileno()`; no thread per call). Cancellation safe: a
    /// message is taken only when the await completes.
    fn recv_async(slf: Py<Self>, py: Python<'_>) -> PyResult<PyObject> {
        recv_attempt(py, slf.into_any())
    }

    /// `recv_into`, awaited (asyncio): the next message into `buffer`; its length.
    fn recv_into_async(slf: Py<Self>, py: Python<'_>, buffer: PyObject) -> PyResult<PyObject> {
        let end = slf.clone_ref(py).into_any();
        let args = (buffer.clone_ref(py),);
        let fallback_args = (slf, buffer, true);
        attempt(
            py,
            end,
            Try::Receive,
            "try_recv_into",
            args,
            "recv_into_async",
            fallback_args,
        )
    }

    /// The next message as `bytes`, waiting at most `timeout` seconds (None: as long as
    /// it takes). `shm.Closed` once the sender closed and everything was read;
    /// `shm.PeerDied` if its process died. The GIL is released meanwhile; Ctrl-C raises
    /// `KeyboardInterrupt` within 50 ms.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(
        mut slf: PyRefMut<'py, Self>,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let key = slf.as_ptr() as usize;
        let rx = slf.handle_mut()?;
        let v = wait_keyed(py, key, timeout, |slice| {
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
        mut slf: PyRefMut<'_, Self>,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let key = slf.as_ptr() as usize;
        let rx = slf.handle_mut()?;
        let b = Buf::get(buffer, true)?;
        // SAFETY: the export `b` lives across the call and is writable; see `Buf`.
        let p = SendPtr(unsafe { b.bytes_mut() }.as_mut_ptr(), b.len());
        let got = wait_keyed(py, key, timeout, move |slice| {
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
    /// (None when there is none: a poll raises nothing). A message longer than the buffer
    /// raises `ValueError` and stays in the ring.
    fn try_recv_into(&mut self, buffer: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
        let rx = self.handle_mut()?;
        let b = Buf::get(buffer, true)?;
        // SAFETY: the export is held for this call and is writable; no Python code runs
        // meanwhile.
        let out = unsafe { b.bytes_mut() };
        match rx.try_recv_into_slice(out) {
            Ok(n) => Ok(Some(n)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::MessageTooLarge { len, .. }) => Err(PyValueError::new_err(format!(
                "the buffer holds {} bytes, the message {len}; it stays in the ring",
                b.len()
            ))),
            Err(e) => Err(err(e)),
        }
    }

    /// The next message if there is one now; None when there is none (a poll raises
    /// nothing; `shm.Closed` / `shm.PeerDied` once the sender is gone and all was read).
    fn try_recv<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let rx = self.handle_mut()?;
        let slot = match rx.try_recv() {
            Ok(slot) => slot,
            Err(TryRecvError::Empty) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let mut v = vec![0u8; slot.len()];
        slot.read(0, &mut v).map_err(err)?;
        drop(slot);
        Ok(Some(PyBytes::new(py, &v)))
    }

    /// Closes the end; from another thread too: a `recv` waiting on it raises
    /// `shm.Closed` within 50 ms.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        close_from_any_thread(slf, |r| r.rx = None)
    }
}
