//! Events: `Event`, `Notifier` and `Listener` (payload-free notifications by id).

use std::collections::BTreeSet;

use crate::*;

/// An event segment: notifications by id from many notifiers to one listener.
#[pyclass(module = "shm._shm")]
pub(crate) struct Event {
    ev: Option<shm_core::Event<Mem>>,
}

open_handle!(Event, ev: shm_core::Event<Mem>, "event");
context_manager!(Event);

fn eopts(max_ids: u32, max_notifiers: u32) -> shm_core::EventOptions {
    shm_core::EventOptions::new()
        .max_ids(max_ids)
        .max_notifiers(max_notifiers)
}

#[pymethods]
impl Event {
    /// Lays an event into fresh memory: ids `0 .. max_ids` (at most 4096), up to
    /// `max_notifiers` notifier processes at once (at most 1024).
    #[staticmethod]
    #[pyo3(signature = (mem, max_ids=64, max_notifiers=16))]
    fn create(mem: &mut Memory, max_ids: u32, max_notifiers: u32) -> PyResult<Event> {
        let o = eopts(max_ids, max_notifiers);
        let ev = shm_core::Event::create(mem.take()?, &o).map_err(size_err)?;
        Ok(Event { ev: Some(ev) })
    }

    /// The memory an event with these options needs.
    #[staticmethod]
    #[pyo3(signature = (max_ids=64, max_notifiers=16))]
    fn segment_len(max_ids: u32, max_notifiers: u32) -> PyResult<u64> {
        eopts(max_ids, max_notifiers)
            .segment_len()
            .map_err(size_err)
    }

    /// Attaches to an event segment, validating it.
    #[staticmethod]
    fn attach(mem: &mut Memory) -> PyResult<Event> {
        let ev = shm_core::Event::attach(mem.take()?).map_err(err)?;
        Ok(Event { ev: Some(ev) })
    }

    /// A notifying end (takes a notifier line).
    fn notifier(&self) -> PyResult<Notifier> {
        Ok(Notifier {
            n: Some(self.handle()?.notifier().map_err(err)?),
        })
    }

    /// The listening end (one per event; `spin=` as for a channel's receiver).
    #[pyo3(signature = (spin=None))]
    fn listener(&self, spin: Option<f64>) -> PyResult<Listener> {
        let mode = spin_mode(spin)?;
        let mut l = self.handle()?.listener().map_err(err)?;
        if let Some(m) = mode {
            l.set_wait(m);
        }
        Ok(Listener { l: Some(l) })
    }

    /// Ids `0 .. max_ids` can be notified.
    #[getter]
    fn max_ids(&self) -> PyResult<u32> {
        Ok(self.handle()?.max_ids())
    }

    /// Closes this handle (ends handed out stay usable).
    fn close(&mut self) {
        self.ev = None;
    }
}

/// A notifying end: `notify(id)` never waits.
#[pyclass(module = "shm._shm")]
pub(crate) struct Notifier {
    n: Option<shm_core::Notifier<Mem>>,
}

open_handle!(Notifier, n: shm_core::Notifier<Mem>, "notifier");
context_manager!(Notifier);

#[pymethods]
impl Notifier {
    /// Notifies `id` (wakes the listener if it sleeps). `shm.Closed` once the listener
    /// closed, `shm.PeerDied` if its process died; `ValueError` for an id at or above
    /// `max_ids`.
    fn notify(&mut self, id: u64) -> PyResult<()> {
        match self.handle_mut()?.notify(id) {
            Ok(()) => Ok(()),
            Err(shm_core::NotifyError::NoSuchEvent { id, limit }) => Err(PyValueError::new_err(
                format!("no event id {id}: the event carries ids below {limit}"),
            )),
            Err(e) => Err(err(e)),
        }
    }

    /// Closes the end (frees its line).
    fn close(&mut self) {
        self.n = None;
    }
}

/// The listening end: `wait()` returns the set of ids notified since the last look.
#[pyclass(module = "shm._shm")]
pub(crate) struct Listener {
    pub(crate) l: Option<shm_core::Listener<Mem>>,
}

open_handle!(Listener, l: shm_core::Listener<Mem>, "listener");
context_manager!(Listener, any_thread);

fn ids(set: &shm_core::EventIds) -> BTreeSet<u64> {
    set.iter().collect()
}

#[pymethods]
impl Listener {
    /// The ids notified since the last look, as a `set`, waiting at most `timeout`
    /// seconds (None: as long as it takes). On timeout it returns an empty set (not an
    /// error). `shm.PeerDied` once per notifier whose process died. The GIL is released
    /// meanwhile; Ctrl-C raises `KeyboardInterrupt` within 50 ms.
    #[pyo3(signature = (timeout=None))]
    fn wait(
        mut slf: PyRefMut<'_, Self>,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<BTreeSet<u64>> {
        let key = slf.as_ptr() as usize;
        let l = slf.handle_mut()?;
        match wait_keyed(py, key, timeout, |slice| l.wait_timeout(slice)) {
            Ok(set) => Ok(ids(&set)),
            Err(e) if e.is_instance_of::<Timeout>(py) => Ok(BTreeSet::new()),
            Err(e) => Err(e),
        }
    }

    /// The ids notified since the last look, now (an empty set when none).
    fn try_wait(&mut self) -> PyResult<BTreeSet<u64>> {
        match self.handle_mut()?.try_wait() {
            Ok(set) => Ok(ids(&set)),
            Err(shm_core::TryWaitError::Empty) => Ok(BTreeSet::new()),
            Err(e) => Err(err(e)),
        }
    }

    /// Closes the end; from another thread too: a `wait` on it raises `shm.Closed`
    /// within 50 ms.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        close_from_any_thread(slf, |l| l.l = None)
    }
}
