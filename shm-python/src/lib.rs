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
pub(crate) type Mem = Box<dyn SharedMemory + Send + Sync>;

mod aio;
mod broadcast;
mod buffer;
mod channel;
mod errors;
mod event;
mod memory;
mod record;
mod service;
mod wait;
mod waitset;
use aio::*;
use broadcast::*;
use buffer::*;
use channel::*;
use errors::*;
use event::*;
use memory::*;
use record::*;
use service::*;
use wait::*;
use waitset::*;

/// The extension module.
#[pymodule]
fn _shm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Memory>()?;
    m.add_class::<Serving>()?;
    m.add_function(wrap_pyfunction!(_at_exit, m)?)?;
    m.add_class::<RawRecord>()?;
    m.add_class::<RawSeqLock>()?;
    m.add_class::<Channel>()?;
    m.add_class::<Sender>()?;
    m.add_class::<Reservation>()?;
    m.add_class::<Receiver>()?;
    m.add_class::<Broadcast>()?;
    m.add_class::<Publisher>()?;
    m.add_class::<Subscriber>()?;
    m.add_class::<Event>()?;
    m.add_class::<Notifier>()?;
    m.add_class::<Listener>()?;
    m.add_class::<WaitSet>()?;
    m.add_class::<Service>()?;
    m.add_class::<Client>()?;
    m.add_class::<PendingResponse>()?;
    m.add_class::<Server>()?;
    m.add_class::<Request>()?;
    m.add_class::<Attempt>()?;
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
    m.add("Cancelled", py.get_type::<Cancelled>())?;
    m.add("ServerError", py.get_type::<ServerError>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("AlreadyExists", py.get_type::<AlreadyExists>())?;
    m.add("PermissionDenied", py.get_type::<PermissionDenied>())?;
    m.add("NoSpace", py.get_type::<NoSpace>())?;
    Ok(())
}
