//! Records whose type Python describes: `RawRecord` and `RawSeqLock`.

use crate::*;

/// A record segment whose type Python describes: a schema (name, version, size,
/// alignment) checked against the header exactly as Rust's `Record` is.
#[pyclass(module = "shm._shm")]
pub(crate) struct RawRecord {
    raw: Option<RawSegment<Mem>>,
    size: usize,
}

open_handle!(RawRecord, raw: RawSegment<Mem>, "segment");

pub(crate) fn schema(name: &str, version: u32, size: u64, align: u64) -> PyResult<Schema> {
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
        let raw = self.handle()?;
        let mut v = vec![0u8; self.size];
        raw.read_at(0, &mut v).map_err(err)?;
        Ok(PyBytes::new(py, &v))
    }

    /// Overwrites the record with `value` (exactly the record's size).
    fn write(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let raw = self.handle()?;
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
pub(crate) struct RawSeqLock {
    lock: Option<shm_core::seqlock::RawSeqLock<Mem>>,
}

open_handle!(RawSeqLock, lock: shm_core::seqlock::RawSeqLock<Mem>, "seqlock");

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
        let lock = self.handle()?;
        let mut v = vec![0u8; lock.record_len()];
        unlocked(py, || lock.load_into(&mut v)).map_err(err)?;
        Ok(PyBytes::new(py, &v))
    }

    /// Replaces the record; readers see the old or the new value, never a mix.
    fn store(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let lock = self.handle()?;
        let b = Buf::get(value, false)?;
        // SAFETY: the export is held for this call; see `Buf::bytes`.
        let bytes = unsafe { b.bytes() }.to_vec();
        unlocked(py, || lock.store(&bytes)).map_err(err)
    }

    /// Closes the segment (a posix segment this process created is removed).
    fn close(&mut self) {
        self.lock = None;
    }
}
