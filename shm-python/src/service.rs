//! Request/response: `Service`, `Client`, `PendingResponse`, `Server` and `Request`.

use crate::*;

/// Calls `shm._aio.NAME(*args)`: the coroutine an `_async` method returns.
pub(crate) fn aio<'py>(
    py: Python<'py>,
    name: &str,
    args: impl IntoPyObject<'py, Target = pyo3::types::PyTuple>,
) -> PyResult<PyObject> {
    Ok(py.import("shm._aio")?.getattr(name)?.call1(args)?.unbind())
}

/// A service segment: clients send requests, each taken by exactly one server.
#[pyclass(module = "shm._shm")]
pub(crate) struct Service {
    svc: Option<shm_core::Service<Mem>>,
}

open_handle!(Service, svc: shm_core::Service<Mem>, "service");
context_manager!(Service);

#[allow(clippy::too_many_arguments)]
fn sopts(
    max_request: u32,
    max_response: u32,
    slots: u32,
    response_depth: u32,
    max_clients: u32,
    max_servers: u32,
) -> shm_core::ServiceOptions {
    shm_core::ServiceOptions::new()
        .max_request(max_request)
        .max_response(max_response)
        .slots(slots)
        .response_depth(response_depth)
        .max_clients(max_clients)
        .max_servers(max_servers)
}

#[pymethods]
impl Service {
    /// Lays a service into fresh memory: requests of up to `max_request` bytes,
    /// responses of up to `max_response`, `slots` requests in flight at once,
    /// `response_depth` unread responses per request's stream, up to `max_clients`
    /// client and `max_servers` server processes.
    #[staticmethod]
    #[pyo3(signature = (mem, max_request=4096, max_response=4096, slots=64, response_depth=4, max_clients=16, max_servers=8))]
    fn create(
        mem: &mut Memory,
        max_request: u32,
        max_response: u32,
        slots: u32,
        response_depth: u32,
        max_clients: u32,
        max_servers: u32,
    ) -> PyResult<Service> {
        let o = sopts(
            max_request,
            max_response,
            slots,
            response_depth,
            max_clients,
            max_servers,
        );
        let svc = shm_core::Service::create(mem.take()?, &o).map_err(size_err)?;
        Ok(Service { svc: Some(svc) })
    }

    /// The memory a service with these options needs.
    #[staticmethod]
    #[pyo3(signature = (max_request=4096, max_response=4096, slots=64, response_depth=4, max_clients=16, max_servers=8))]
    fn segment_len(
        max_request: u32,
        max_response: u32,
        slots: u32,
        response_depth: u32,
        max_clients: u32,
        max_servers: u32,
    ) -> PyResult<u64> {
        sopts(
            max_request,
            max_response,
            slots,
            response_depth,
            max_clients,
            max_servers,
        )
        .segment_len()
        .map_err(size_err)
    }

    /// Attaches to a service segment, validating it.
    #[staticmethod]
    fn attach(mem: &mut Memory) -> PyResult<Service> {
        let svc = shm_core::Service::attach(mem.take()?).map_err(err)?;
        Ok(Service { svc: Some(svc) })
    }

    /// A calling end (takes a client line). `idempotent=True`: a request whose server
    /// dies before answering goes back to the queue once. `spin=` seconds a call spins
    /// before it sleeps (default 50 µs; 0: sleep at once; `inf`: busy-poll).
    #[pyo3(signature = (idempotent=false, spin=None))]
    fn client(&self, idempotent: bool, spin: Option<f64>) -> PyResult<Client> {
        let mode = spin_mode(spin)?;
        let mut c = self.handle()?.client().map_err(err)?;
        c.set_idempotent(idempotent);
        if let Some(m) = mode {
            c.set_wait(m);
        }
        Ok(Client { c: Some(c) })
    }

    /// An answering end (takes a server line; `spin=` as for a client).
    #[pyo3(signature = (spin=None))]
    fn server(&self, spin: Option<f64>) -> PyResult<Server> {
        let mode = spin_mode(spin)?;
        let mut s = self.handle()?.server().map_err(err)?;
        if let Some(m) = mode {
            s.set_wait(m);
        }
        Ok(Server { s: Some(s) })
    }

    /// The largest request, in bytes.
    #[getter]
    fn max_request(&self) -> PyResult<u32> {
        Ok(self.handle()?.max_request())
    }

    /// The largest response, in bytes.
    #[getter]
    fn max_response(&self) -> PyResult<u32> {
        Ok(self.handle()?.max_response())
    }

    /// Closes this handle (ends handed out stay usable).
    fn close(&mut self) {
        self.svc = None;
    }
}

/// A calling end: `call(data)` returns the response's bytes.
#[pyclass(module = "shm._shm")]
pub(crate) struct Client {
    c: Option<shm_core::service::Client<Mem>>,
}

open_handle!(Client, c: shm_core::service::Client<Mem>, "client");
context_manager!(Client);

/// Sends `data` with the deadline `timeout` seconds from now (None: none), waiting for a
/// slot in slices (signals checked between them) until then.
fn send(
    py: Python<'_>,
    c: &mut shm_core::service::Client<Mem>,
    data: &Bound<'_, PyAny>,
    timeout: Option<f64>,
) -> PyResult<(shm_core::service::PendingResponse<Mem>, Option<Instant>)> {
    let deadline = match timeout {
        Some(t) => deadline_in(seconds("timeout", t)?),
        None => None,
    };
    let b = Buf::get(data, false)?;
    // SAFETY: the export `b` lives across the call; see `Buf::bytes`.
    let p = SendPtr(unsafe { b.bytes() }.as_ptr().cast_mut(), b.len());
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64());
    let pending = wait(py, left, move |slice| {
        let p = &p;
        // SAFETY: as above: alive and unresized for the call.
        let bytes = unsafe { std::slice::from_raw_parts(p.0, p.1) };
        c.send_request_until(bytes, deadline, slice)
    })?;
    Ok((pending, deadline))
}

#[pymethods]
impl Client {
    /// Sends `data` (any bytes-like object) and returns the response's bytes (the first,
    /// for a server that streams). `timeout` seconds is the request's deadline: it
    /// travels with it (a server sees it; no server takes it once passed) and the call
    /// raises `shm.Timeout` by then. `shm.PeerDied` when the server holding it died;
    /// `shm.ServerError` (`.code`) for an error answer; `shm.Closed` for a request the
    /// server dropped unanswered. The GIL is released; Ctrl-C raises
    /// `KeyboardInterrupt` within 50 ms.
    #[pyo3(signature = (data, timeout=None))]
    fn call<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let c = self.handle_mut()?;
        let (mut pending, deadline) = send(py, c, data, timeout)?;
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64());
        let r = wait(py, left, |slice| pending.receive_timeout(slice))?;
        Ok(PyBytes::new(py, &r.data))
    }

    /// `call`, awaited (asyncio): the answer's bytes. No thread per call: the pending
    /// response is watched by the event loop's wait set (one per loop, through its
    /// `fileno()`); cancelling the await cancels the request.
    #[pyo3(signature = (data, timeout=None))]
    fn call_async(
        slf: Py<Self>,
        py: Python<'_>,
        data: PyObject,
        timeout: Option<f64>,
    ) -> PyResult<PyObject> {
        aio(py, "call_async", (slf, data, timeout))
    }

    /// Sends `data` and returns its `PendingResponse`: iterate it for the stream of
    /// responses (the iteration ends after the server's last). `timeout` as for `call`.
    #[pyo3(signature = (data, timeout=None))]
    fn send_request(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<PendingResponse> {
        let c = self.handle_mut()?;
        let (pending, deadline) = send(py, c, data, timeout)?;
        Ok(PendingResponse {
            p: Some(pending),
            deadline,
        })
    }

    /// Fan-out: sends a copy of `data` to every server process live now and returns
    /// their pending responses (a list; empty when no server is live). `timeout` as
    /// for `call`. Not the default: `send_request` goes to one server.
    #[pyo3(signature = (data, timeout=None))]
    fn send_request_to_all(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Vec<PendingResponse>> {
        let t = match timeout {
            Some(t) => seconds("timeout", t)?,
            None => None,
        };
        let deadline = deadline_in(t);
        let b = Buf::get(data, false)?;
        // SAFETY: the export `b` lives across the call; see `Buf::bytes`.
        let p = SendPtr(unsafe { b.bytes() }.as_ptr().cast_mut(), b.len());
        let c = self.handle_mut()?;
        let all = unlocked(py, move || {
            let p = &p;
            // SAFETY: as above: alive and unresized for the call.
            let bytes = unsafe { std::slice::from_raw_parts(p.0, p.1) };
            c.send_request_to_all(bytes, t)
        })
        .map_err(err)?;
        Ok(all
            .into_iter()
            .map(|p| PendingResponse {
                p: Some(p),
                deadline,
            })
            .collect())
    }

    /// Closes the end (frees its line; pending responses stay usable).
    fn close(&mut self) {
        self.c = None;
    }
}

/// A request sent: receive its responses (`receive()`, or iterate). Closing it (or
/// dropping it) cancels the request; its server sees `is_cancelled()`.
#[pyclass(module = "shm._shm")]
pub(crate) struct PendingResponse {
    p: Option<shm_core::service::PendingResponse<Mem>>,
    deadline: Option<Instant>,
}

open_handle!(PendingResponse, p: shm_core::service::PendingResponse<Mem>, "pending response");
context_manager!(PendingResponse);

impl PendingResponse {
    fn next_bytes(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Vec<u8>> {
        let until_deadline = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64());
        let left = match (timeout, until_deadline) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        };
        let p = self.handle_mut()?;
        Ok(wait(py, left, |slice| p.receive_timeout(slice))?.data)
    }
}

#[pymethods]
impl PendingResponse {
    /// The next response's bytes, waiting at most `timeout` seconds (and never past the
    /// request's deadline). `shm.Closed` once the stream is over.
    #[pyo3(signature = (timeout=None))]
    fn receive<'py>(
        &mut self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let v = self.next_bytes(py, timeout)?;
        Ok(PyBytes::new(py, &v))
    }

    /// The next response's bytes if there is one now, else None (a poll raises
    /// nothing); `shm.Closed` once the stream is over, `shm.Timeout` past the deadline.
    fn try_receive<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.handle_mut()?.try_receive() {
            Ok(r) => Ok(Some(PyBytes::new(py, &r.data))),
            Err(shm_core::TryResponseError::Empty) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    /// The next response, awaited (asyncio; see `Client.call_async`).
    #[pyo3(signature = (timeout=None))]
    fn receive_async(slf: Py<Self>, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyObject> {
        aio(py, "receive_async", (slf, timeout))
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if self.handle()?.is_finished() {
            return Ok(None); // StopIteration
        }
        match self.next_bytes(py, None) {
            Ok(v) => Ok(Some(PyBytes::new(py, &v))),
            Err(e) if e.is_instance_of::<Closed>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The request's id (every response is checked against it).
    #[getter]
    fn id(&self) -> PyResult<u64> {
        Ok(self.handle()?.id())
    }

    /// Whether the stream is over (the last response, or an end, was returned).
    #[getter]
    fn finished(&self) -> PyResult<bool> {
        Ok(self.handle()?.is_finished())
    }

    /// Whether a server's death sent the request back to the queue (idempotent clients).
    #[getter]
    fn retried(&self) -> PyResult<bool> {
        Ok(self.handle()?.retried())
    }

    /// Cancels the request (if not finished) and lets its slot go.
    fn close(&mut self) {
        self.p = None;
    }
}

/// An answering end: `receive()` returns the oldest queued request.
#[pyclass(module = "shm._shm")]
pub(crate) struct Server {
    s: Option<shm_core::service::Server<Mem>>,
}

open_handle!(Server, s: shm_core::service::Server<Mem>, "server");
context_manager!(Server, any_thread);

#[pymethods]
impl Server {
    /// The oldest queued request, waiting at most `timeout` seconds (None: as long as it
    /// takes; `shm.Timeout` after). The GIL is released; Ctrl-C raises
    /// `KeyboardInterrupt` within 50 ms.
    #[pyo3(signature = (timeout=None))]
    fn receive(
        mut slf: PyRefMut<'_, Self>,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Request> {
        let key = slf.as_ptr() as usize;
        let s = slf.handle_mut()?;
        let r = wait_keyed(py, key, timeout, |slice| s.receive_timeout(slice))?;
        Ok(Request::new(py, r))
    }

    /// `receive`, awaited (asyncio): the next request.
    #[pyo3(signature = (timeout=None))]
    fn receive_async(slf: Py<Self>, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyObject> {
        aio(py, "server_receive_async", (slf, timeout))
    }

    /// The oldest queued request now, or None.
    fn try_receive(&mut self, py: Python<'_>) -> PyResult<Option<Request>> {
        match self.handle_mut()?.try_receive() {
            Ok(r) => Ok(Some(Request::new(py, r))),
            Err(shm_core::TryRecvError::Empty) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    /// Closes the end (frees its line); from another thread too: a `receive` waiting
    /// on it raises `shm.Closed` within 50 ms.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        close_from_any_thread(slf, |s| s.s = None)
    }
}

/// A request a server took: `data`, `deadline`, `client_pid`, and the ways to answer.
/// Dropping it unanswered finishes it (the client's call raises `shm.Closed`).
#[pyclass(module = "shm._shm")]
pub(crate) struct Request {
    r: Option<shm_core::service::ActiveRequest<Mem>>,
    data: Py<PyBytes>,
}

open_handle!(Request, r: shm_core::service::ActiveRequest<Mem>, "request");
context_manager!(Request);

impl Request {
    fn new(py: Python<'_>, mut r: shm_core::service::ActiveRequest<Mem>) -> Request {
        let data = PyBytes::new(py, &r.take_data()).unbind();
        Request { r: Some(r), data }
    }

    fn answer(
        &mut self,
        py: Python<'_>,
        data: Option<&Bound<'_, PyAny>>,
        how: u8,
        code: u32,
    ) -> PyResult<()> {
        let b = data.map(|d| Buf::get(d, false)).transpose()?;
        let bytes: &[u8] = match &b {
            // SAFETY: the export lives across the call; see `Buf::bytes`.
            Some(b) => unsafe { b.bytes() },
            None => &[],
        };
        let p = SendPtr(bytes.as_ptr().cast_mut(), bytes.len());
        let r = match how {
            0 => {
                let r = self.handle_mut()?;
                unlocked(py, move || {
                    let p = &p;
                    // SAFETY: as above: alive and unresized for the call.
                    r.respond(unsafe { std::slice::from_raw_parts(p.0, p.1) })
                })
            }
            _ => {
                let r = self.r.take().ok_or_else(|| closed_handle("request"))?;
                unlocked(py, move || {
                    let p = &p;
                    // SAFETY: as above.
                    let bytes = unsafe { std::slice::from_raw_parts(p.0, p.1) };
                    if how == 1 {
                        r.respond_last(bytes)
                    } else {
                        r.respond_error(code)
                    }
                })
            }
        };
        r.map_err(err)
    }
}

#[pymethods]
impl Request {
    /// The request's bytes (copied once out of shared memory).
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }

    /// The request's deadline on the `time.monotonic()` clock (None: none).
    #[getter]
    fn deadline(&self) -> PyResult<Option<f64>> {
        let left = self.handle()?.remaining();
        Ok(left.map(|l| {
            let now = shm_core::os::sys::monotonic_ns() as f64 / 1e9;
            now + l.as_secs_f64()
        }))
    }

    /// Seconds left until the deadline (None: none; 0.0: passed).
    #[getter]
    fn remaining(&self) -> PyResult<Option<f64>> {
        Ok(self.handle()?.remaining().map(|d| d.as_secs_f64()))
    }

    /// The client's pid.
    #[getter]
    fn client_pid(&self) -> PyResult<u32> {
        Ok(self.handle()?.client_pid())
    }

    /// The request's id.
    #[getter]
    fn id(&self) -> PyResult<u64> {
        Ok(self.handle()?.id())
    }

    /// Whether the client cancelled the request or died.
    fn is_cancelled(&self) -> PyResult<bool> {
        Ok(self.handle()?.is_cancelled())
    }

    /// Sends one response of a stream (more may follow); waits while the client has
    /// unread responses (bounded by the deadline). `shm.Cancelled` once the client went
    /// away.
    fn respond(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.answer(py, Some(data), 0, 0)
    }

    /// Sends the last (or only) response and finishes the request.
    fn respond_last(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.answer(py, Some(data), 1, 0)
    }

    /// Answers with an error code (the client raises `shm.ServerError`, `.code` set)
    /// and finishes the request.
    fn respond_error(&mut self, py: Python<'_>, code: u32) -> PyResult<()> {
        self.answer(py, None, 2, code)
    }

    /// Finishes the request unanswered (the client raises `shm.Closed`).
    fn close(&mut self) {
        self.r = None;
    }
}
