//! Python buffers (bytes-like objects) as the Rust side reads and writes them.

use crate::*;

/// A contiguous Python buffer, read-only or writable.
pub(crate) struct Buf {
    buf: PyBuffer<u8>,
}

impl Buf {
    pub(crate) fn get(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<Buf> {
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
    pub(crate) fn len(&self) -> usize {
        self.buf.len_bytes()
    }
    /// The buffer's bytes, to read while the GIL is released.
    ///
    /// # Safety
    /// The buffer export (held by `self`) keeps the memory alive and its size fixed; the
    /// caller must not let Python code run on it concurrently (a racing Python thread is
    /// that thread's race, as with numpy's releasing calls).
    pub(crate) unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: forwarded to the caller; pointer and length come from the export.
        unsafe { std::slice::from_raw_parts(self.buf.buf_ptr() as *const u8, self.len()) }
    }
    /// # Safety
    /// As [`bytes`](Self::bytes), and the buffer is writable (checked by `get`).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self) -> &mut [u8] {
        // SAFETY: forwarded to the caller.
        unsafe { std::slice::from_raw_parts_mut(self.buf.buf_ptr() as *mut u8, self.len()) }
    }
}

/// A raw pointer that may cross into `allow_threads` (the buffer it points to is kept
/// alive and unresized by a buffer export held on the Python side of the call).
pub(crate) struct SendPtr(pub(crate) *mut u8, pub(crate) usize);
// SAFETY: see above; only used for the duration of one call.
unsafe impl Send for SendPtr {}
