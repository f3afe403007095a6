//! The broadcast: `Broadcast`, `Publisher` and `Subscriber`.

use crate::*;

/// A broadcast segment: one publisher, many subscribers.
#[pyclass(module = "shm._shm")]
pub(crate) struct Broadcast {
    b: Option<shm_core::Broadcast<Mem>>,
}

open_handle!(Broadcast, b: shm_core::Broadcast<Mem>, "broadcast");
context_manager!(Broadcast);

pub(crate) fn bopts(
    slots: u64,
    max_message: u64,
    lossy: bool,
    max_subscribers: u32,
    evict_timeout: f64,
) -> PyResult<shm_core::BroadcastOptions> {
    let evict = bounded_seconds("evict_timeout", evict_timeout)?;
    Ok(shm_core::BroadcastOptions::new()
        .mode(if lossy {
            shm_core::BroadcastMode::Lossy
        } else {
            shm_core::BroadcastMode::Reliable
        })
        .slots(slots)
        .max_message(max_message)
        .max_subscribers(max_subscribers)
        .evict_timeout(evict))
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
            b: Some(shm_core::Broadcast::create(mem.take()?, &o).map_err(size_err)?),
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
            .map_err(size_err)
    }

    /// Attaches to a broadcast segment (read-only memory makes a lossy read-only
    /// subscriber possible).
    #[staticmethod]
    fn attach(mem: &mut Memory) -> PyResult<Broadcast> {
        Ok(Broadcast {
            b: Some(shm_core::Broadcast::attach(mem.take()?).map_err(err)?),
        })
    }

    /// The publishing end (`spin=` as for a channel's ends).
    #[pyo3(signature = (spin=None))]
    fn publisher(&self, spin: Option<f64>) -> PyResult<Publisher> {
        let mode = spin_mode(spin)?;
        let mut p = self.handle()?.publisher().map_err(err)?;
        if let Some(m) = mode {
            p.set_wait(m);
        }
        Ok(Publisher { p: Some(p) })
    }

    /// Joins as a subscriber: the first message it receives is the next one published.
    /// `spin=` seconds it spins before it sleeps (default 50 µs; 0: sleep at once;
    /// `inf`: busy-poll).
    #[pyo3(signature = (spin=None))]
    fn subscriber(&self, spin: Option<f64>) -> PyResult<Subscriber> {
        let mode = spin_mode(spin)?;
        let mut s = self.handle()?.subscriber().map_err(err)?;
        if let Some(m) = mode {
            s.set_wait(m);
        }
        Ok(Subscriber {
            s: Some(s),
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
        self.subscriber(None)
    }

    /// Subscribers holding a line now.
    fn subscriber_count(&self) -> PyResult<u32> {
        Ok(self.handle()?.subscriber_count())
    }

    /// Closes this handle.
    fn close(&mut self) {
        self.b = None;
    }
}

/// The publishing end of a broadcast.
#[pyclass(module = "shm._shm")]
pub(crate) struct Publisher {
    p: Option<shm_core::Publisher<Mem>>,
}

open_handle!(Publisher, p: shm_core::Publisher<Mem>, "publisher");
context_manager!(Publisher);

#[pymethods]
impl Publisher {
    /// `publish`, awaited (asyncio): a reliable publisher waiting for its slowest
    /// subscriber polls (from 50 µs up to 2 ms apart) while the loop runs other tasks.
    fn publish_async(slf: Py<Self>, py: Python<'_>, data: PyObject) -> PyResult<PyObject> {
        send_attempt(py, slf.into_any(), data, "try_publish", "publish_async")
    }

    /// Publishes a copy of `data`. Reliable: waits for room (evicting the dead and the
    /// stuck), at most `timeout` seconds. Lossy: never waits.
    #[pyo3(signature = (data, timeout=None))]
    fn publish(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let p = self.handle_mut()?;
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
        let p = self.handle_mut()?;
        let b = Buf::get(data, false)?;
        // SAFETY: the export is held for this call; no Python code runs meanwhile.
        p.try_publish(unsafe { b.bytes() }).map_err(err)
    }

    /// Waits until `n` subscribers hold a line, at most `timeout` seconds.
    #[pyo3(signature = (n, timeout=10.0))]
    fn wait_for_subscribers(&self, py: Python<'_>, n: u32, timeout: f64) -> PyResult<u32> {
        let p = self.handle()?;
        wait(py, Some(timeout), |slice| p.wait_for_subscribers(n, slice))
    }

    /// Closes the end (subscribers get `shm.Closed` once they read everything).
    fn close(&mut self) {
        self.p = None;
    }
}

/// A subscriber of a broadcast.
#[pyclass(module = "shm._shm")]
pub(crate) struct Subscriber {
    pub(crate) s: Option<shm_core::Subscriber<Mem>>,
    buf: Vec<u8>,
}

open_handle!(Subscriber, s: shm_core::Subscriber<Mem>, "subscriber");
context_manager!(Subscriber, any_thread);

#[pymethods]
impl Subscriber {
    /// `recv`, awaited (asyncio): `(number, bytes)` of the next message. Watched by the
    /// running loop's wait set; cancellation safe.
    fn recv_async(slf: Py<Self>, py: Python<'_>) -> PyResult<PyObject> {
        recv_attempt(py, slf.into_any())
    }

    /// The next message: `(number, bytes)`. `shm.Lagged` (`.missed`: how many were
    /// missed) when it fell behind a lossy ring; `shm.Closed`, `shm.PeerDied`,
    /// `shm.Evicted`.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(
        mut slf: PyRefMut<'py, Self>,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<(u64, Bound<'py, PyBytes>)> {
        let key = slf.as_ptr() as usize;
        let this = &mut *slf;
        let s = this.s.as_mut().ok_or_else(|| closed_handle("subscriber"))?;
        let buf = &mut this.buf;
        let n = wait_keyed(py, key, timeout, |slice| {
            s.recv_into_timeout(buf, slice)?;
            Ok::<_, RecvTimeoutError>(s.last_number().expect("a message was received"))
        })?;
        Ok((n, PyBytes::new(py, &this.buf)))
    }

    /// Receives the next message into `buffer` with one copy: `(number, length)`. A
    /// message longer than the buffer raises `ValueError` and stays for the next call.
    #[pyo3(signature = (buffer, timeout=None))]
    fn recv_into(
        mut slf: PyRefMut<'_, Self>,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<(u64, usize)> {
        let key = slf.as_ptr() as usize;
        let s = slf.handle_mut()?;
        let b = Buf::get(buffer, true)?;
        // SAFETY: the export `b` lives across the call and is writable; see `Buf`.
        let p = SendPtr(unsafe { b.bytes_mut() }.as_mut_ptr(), b.len());
        let got = wait_keyed(py, key, timeout, move |slice| {
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

    /// The next message if there is one now: `(number, bytes)`; None when there is none
    /// (a poll raises nothing).
    fn try_recv<'py>(&mut self, py: Python<'py>) -> PyResult<Option<(u64, Bound<'py, PyBytes>)>> {
        let s = self.s.as_mut().ok_or_else(|| closed_handle("subscriber"))?;
        match s.try_recv_into(&mut self.buf) {
            Ok(_) => {}
            Err(TryRecvError::Empty) => return Ok(None),
            Err(e) => return Err(err(e)),
        }
        let n = s.last_number().expect("a message was received");
        Ok(Some((n, PyBytes::new(py, &self.buf))))
    }

    /// The next message if there is one now, copied into `buffer`: `(number, length)`;
    /// None when there is none (a poll raises nothing). A message longer than the buffer raises `ValueError` and
    /// stays for the next call.
    fn try_recv_into(&mut self, buffer: &Bound<'_, PyAny>) -> PyResult<Option<(u64, usize)>> {
        let s = self.handle_mut()?;
        let b = Buf::get(buffer, true)?;
        // SAFETY: the export is held for this call and is writable; no Python code runs
        // meanwhile.
        let out = unsafe { b.bytes_mut() };
        match s.try_recv_into_slice(out) {
            Ok(len) => Ok(Some((
                s.last_number().expect("a message was received"),
                len,
            ))),
            Err(TryRecvError::Empty) => Ok(None),
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
        Ok(self.handle()?.next_message())
    }

    /// Leaves the broadcast; from another thread too: a `recv` waiting on it raises
    /// `shm.Closed` within 50 ms.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        close_from_any_thread(slf, |s| s.s = None)
    }
}
