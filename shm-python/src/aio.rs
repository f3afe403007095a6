//! The coroutine every `_async` method of an end returns: its first step tries the
//! operation from Rust (a receive spins on its try call for up to [`SPIN`]), so a message
//! already there, or one that comes within the spin, or room in the ring, costs no Python
//! frame; only a wait hands over to the coroutine in `shm._aio` (the loop's wait set),
//! which it then drives as `yield from` would.
//!
//! It is a coroutine to asyncio (it has `send`, `throw`, `close` and `__await__`, so
//! `collections.abc.Coroutine` and `asyncio.iscoroutine` take it: `await`,
//! `create_task`, `wait_for`, `gather` all work), and it keeps a coroutine's promise:
//! nothing is tried before its first step, so a task cancelled before it ran takes no
//! message, and a step that takes one returns it in the same step.

use std::time::{Duration, Instant};

use pyo3::exceptions::{PyBaseException, PyRuntimeError, PyStopIteration, PyTypeError};
use pyo3::types::PyTuple;

use crate::*;

/// How long a receive's first step tries again before it hands over to the loop's wait
/// set (as `shm._aio.SPIN_NS`): a reply that comes within it costs no wake-up.
const SPIN: Duration = Duration::from_micros(20);

/// What the try call's answer means.
#[derive(Clone, Copy)]
pub(crate) enum Try {
    /// A receive: `None` is "nothing yet", anything else the result.
    Receive,
    /// A send: `shm.Full` is "no room yet", a return the result.
    Send,
}

enum State {
    /// Not stepped yet: `end.<try_name>(*args)`, then `shm._aio.<fallback>(*fallback_args)`.
    Start {
        end: PyObject,
        try_name: &'static str,
        args: Py<PyTuple>,
        kind: Try,
        fallback: &'static str,
        fallback_args: Py<PyTuple>,
    },
    /// Waiting: every step goes to the `shm._aio` coroutine.
    Inner(PyObject),
    /// Returned, raised or closed.
    Done,
}

/// An `_async` method's coroutine (see the module's docs).
#[pyclass(module = "shm._shm")]
pub(crate) struct Attempt {
    state: State,
}

/// The coroutine for `end.<try_name>(*args)`, waiting through `shm._aio.<fallback>`.
pub(crate) fn attempt<'py>(
    py: Python<'py>,
    end: PyObject,
    kind: Try,
    try_name: &'static str,
    args: impl IntoPyObject<'py, Target = PyTuple, Output = Bound<'py, PyTuple>>,
    fallback: &'static str,
    fallback_args: impl IntoPyObject<'py, Target = PyTuple, Output = Bound<'py, PyTuple>>,
) -> PyResult<PyObject> {
    let state = State::Start {
        end,
        try_name,
        args: args.into_pyobject(py).map_err(Into::into)?.unbind(),
        kind,
        fallback,
        fallback_args: fallback_args
            .into_pyobject(py)
            .map_err(Into::into)?
            .unbind(),
    };
    Ok(Py::new(py, Attempt { state })?.into_any())
}

/// `end.recv_async()` of a receiver or subscriber: `try_recv`, spinning, then
/// `shm._aio.recv_async(end, spun=True)`.
pub(crate) fn recv_attempt(py: Python<'_>, end: PyObject) -> PyResult<PyObject> {
    let fallback_args = (end.clone_ref(py), true);
    attempt(
        py,
        end,
        Try::Receive,
        "try_recv",
        (),
        "recv_async",
        fallback_args,
    )
}

/// `end.send_async(data)` of a sender or publisher: `end.<try_name>(data)` once, then
/// `shm._aio.<fallback>(end, data)`, which polls for room.
pub(crate) fn send_attempt(
    py: Python<'_>,
    end: PyObject,
    data: PyObject,
    try_name: &'static str,
    fallback: &'static str,
) -> PyResult<PyObject> {
    let args = (data.clone_ref(py),);
    let fallback_args = (end.clone_ref(py), data);
    attempt(py, end, Try::Send, try_name, args, fallback, fallback_args)
}

/// A coroutine's return: `StopIteration(value)` (the value in a tuple of one, so a tuple
/// result is not taken apart as the exception's arguments).
fn returned(value: PyObject) -> PyErr {
    PyStopIteration::new_err((value,))
}

impl Attempt {
    fn first(&mut self, py: Python<'_>) -> PyResult<PyObject> {
        let State::Start {
            end,
            try_name,
            args,
            kind,
            fallback,
            fallback_args,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            unreachable!("first() is called in the Start state only");
        };
        // The bound method once: the spin calls it, not a lookup by name each time.
        let method = end.bind(py).getattr(try_name)?;
        let args = args.bind(py);
        let once = || -> PyResult<Option<PyObject>> {
            match kind {
                Try::Receive => {
                    let v = method.call1(args)?;
                    Ok((!v.is_none()).then(|| v.unbind()))
                }
                Try::Send => match method.call1(args) {
                    Ok(v) => Ok(Some(v.unbind())),
                    Err(e) if e.is_instance_of::<Full>(py) => Ok(None),
                    Err(e) => Err(e),
                },
            }
        };
        let spin = match kind {
            Try::Receive => SPIN,
            Try::Send => Duration::ZERO,
        };
        let start = Instant::now();
        loop {
            if let Some(v) = once()? {
                return Err(returned(v));
            }
            if start.elapsed() >= spin {
                break;
            }
        }
        let inner = py
            .import("shm._aio")?
            .getattr(fallback)?
            .call1(fallback_args.bind(py))?;
        self.state = State::Inner(inner.unbind());
        self.step(py, |c| c.call_method1("send", (py.None(),)))
    }

    /// One step of the inner coroutine; once it returns or raises, this one is done.
    fn step(
        &mut self,
        py: Python<'_>,
        f: impl for<'a> FnOnce(&Bound<'a, PyAny>) -> PyResult<Bound<'a, PyAny>>,
    ) -> PyResult<PyObject> {
        let State::Inner(inner) = &self.state else {
            unreachable!("step() is called in the Inner state only");
        };
        let inner = inner.clone_ref(py);
        let r = f(inner.bind(py)).map(Bound::unbind);
        if r.is_err() {
            self.state = State::Done;
        }
        r
    }
}

#[pymethods]
impl Attempt {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<PyObject> {
        self.send(py, py.None())
    }

    /// Steps the coroutine (asyncio sends None).
    fn send(&mut self, py: Python<'_>, value: PyObject) -> PyResult<PyObject> {
        match self.state {
            State::Start { .. } if !value.is_none(py) => Err(PyTypeError::new_err(
                "can't send non-None value to a just-started coroutine",
            )),
            State::Start { .. } => self.first(py),
            State::Inner(_) => self.step(py, |c| c.call_method1("send", (value,))),
            State::Done => Err(PyRuntimeError::new_err(
                "cannot reuse already awaited coroutine",
            )),
        }
    }

    /// Raises `typ` (an exception, or a type and its value) where the coroutine waits:
    /// before its first step nothing was tried, so nothing is taken.
    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw(
        &mut self,
        py: Python<'_>,
        typ: PyObject,
        val: Option<PyObject>,
        tb: Option<PyObject>,
    ) -> PyResult<PyObject> {
        if let State::Inner(_) = self.state {
            return self.step(py, |c| match (val, tb) {
                (None, _) => c.call_method1("throw", (typ,)),
                (Some(v), None) => c.call_method1("throw", (typ, v)),
                (Some(v), Some(t)) => c.call_method1("throw", (typ, v, t)),
            });
        }
        self.state = State::Done;
        let typ = typ.bind(py);
        let exc = if typ.is_instance_of::<PyBaseException>() {
            typ.clone()
        } else {
            match val {
                Some(v) if v.bind(py).is_instance_of::<PyBaseException>() => v.into_bound(py),
                Some(v) if !v.is_none(py) => typ.call1((v,))?,
                _ => typ.call0()?,
            }
        };
        Err(PyErr::from_value(exc))
    }

    /// Ends the coroutine (and the wait it handed over to, if any).
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if let State::Inner(inner) = std::mem::replace(&mut self.state, State::Done) {
            inner.call_method0(py, "close")?;
        }
        Ok(())
    }
}
