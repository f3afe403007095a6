//! `WaitSet`: one thread waits on receivers, subscribers and listeners at once; its
//! `fileno()` is readable while any of them is ready (for `selectors` and asyncio).

use std::collections::HashMap;
use std::os::fd::AsRawFd;

use shm_core::waitset::Key;
use shm_core::Waitable;

use crate::*;

/// Waits on many ends at once (level-triggered: an end with something unread stays
/// ready).
#[pyclass(module = "shm._shm")]
pub(crate) struct WaitSet {
    set: shm_core::WaitSet,
    /// The Python object of each attachment, by key.
    objs: HashMap<Key, PyObject>,
}

impl WaitSet {
    fn ready(&self, py: Python<'_>, r: Vec<shm_core::waitset::Ready>) -> Vec<PyObject> {
        r.iter()
            .filter_map(|r| self.objs.get(&r.key).map(|o| o.clone_ref(py)))
            .collect()
    }
}

#[pymethods]
impl WaitSet {
    #[new]
    fn new() -> Self {
        WaitSet {
            set: shm_core::WaitSet::new(),
            objs: HashMap::new(),
        }
    }

    /// Attaches a `Receiver`, `Subscriber`, `Listener`, `Server` or `PendingResponse`
    /// (at most 127). An end whose
    /// peer closed or died is reported ready; its own `try_*` call raises the error.
    fn attach(&mut self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let source = if let Ok(r) = obj.downcast::<Receiver>() {
            r.borrow().handle()?.wait_source()
        } else if let Ok(s) = obj.downcast::<Subscriber>() {
            s.borrow().handle()?.wait_source()
        } else if let Ok(l) = obj.downcast::<Listener>() {
            l.borrow().handle()?.wait_source()
        } else if let Ok(s) = obj.downcast::<Server>() {
            s.borrow().handle()?.wait_source()
        } else if let Ok(p) = obj.downcast::<PendingResponse>() {
            p.borrow().handle()?.wait_source()
        } else {
            return Err(PyTypeError::new_err(
                "a WaitSet watches a Receiver, a Subscriber, a Listener, a Server or a PendingResponse",
            ));
        };
        let key = self.set.attach_source(source).map_err(err)?;
        self.objs.insert(key, obj.clone().unbind());
        Ok(())
    }

    /// Detaches `obj` (not attached: ignored).
    fn detach(&mut self, py: Python<'_>, obj: &Bound<'_, PyAny>) {
        let keys: Vec<Key> = self
            .objs
            .iter()
            .filter(|(_, o)| o.bind(py).is(obj))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.set.detach(k);
            self.objs.remove(&k);
        }
    }

    /// The attached objects that are ready, waiting at most `timeout` seconds (None: as
    /// long as it takes); an empty list on timeout. The GIL is released meanwhile;
    /// Ctrl-C raises `KeyboardInterrupt` within 50 ms.
    #[pyo3(signature = (timeout=None))]
    fn wait(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Vec<PyObject>> {
        let set = &mut self.set;
        match wait(py, timeout, |slice| set.wait_timeout(slice)) {
            Ok(r) => Ok(self.ready(py, r)),
            Err(e) if e.is_instance_of::<Timeout>(py) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The attached objects that are ready now (empties `fileno()`'s readiness).
    fn try_wait(&mut self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        match self.set.try_wait() {
            Ok(r) => Ok(self.ready(py, r)),
            Err(shm_core::TryWaitError::Empty) => Ok(Vec::new()),
            Err(e) => Err(err(e)),
        }
    }

    /// A file descriptor readable while anything attached is ready: for `selectors`,
    /// `loop.add_reader` (call `try_wait()` when it is readable). A watcher thread is
    /// started by the first call and ends with the set.
    fn fileno(&mut self) -> PyResult<i32> {
        Ok(self.set.as_fd().map_err(err)?.as_raw_fd())
    }

    fn __len__(&self) -> usize {
        self.objs.len()
    }
}
