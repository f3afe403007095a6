//! Records: `shm_seqlock_*`, one record of a caller-described type (name, version, size,
//! alignment) that one process writes and any number read, never torn.

use std::ffi::{c_char, c_void};

use shm_core::seqlock::RawSeqLock;
use shm_core::{AttachOptions, RawSegment, Schema};
use shm_posix::PosixShm;

use crate::handles::*;
use crate::status::{guard, Failure, ShmStatus};

/// A record type as a C program describes it: what a writer and a reader compiled
/// separately compare to agree on the type (checked when a segment is opened).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ShmSchema {
    /// The type's name (at most 32 bytes of UTF-8), NUL-terminated. Rust records use
    /// their type's name (`"MyData"`), Python's the name it was given.
    pub name: *const c_char,
    /// The type's version (1 unless the layout changed).
    pub version: u32,
    /// `sizeof` the record, in bytes (1 to 2^20).
    pub size: u64,
    /// `_Alignof` the record (a power of two, at most 64).
    pub align: u64,
}

/// A plain record in a named POSIX segment (opaque): reads and writes are not atomic as
/// a whole (a reader may see a mix of two writes: use a seqlock for snapshots); the bytes
/// after the record, to the end of the segment, are free for the caller's own layout.
pub struct ShmSegment {
    raw: RawSegment<PosixShm>,
}

/// A seqlock record in a named POSIX segment (opaque).
pub struct ShmSeqLock {
    lock: RawSeqLock<PosixShm>,
}

/// The largest record a C program describes here.
const MAX_RECORD: u64 = 1 << 20;

/// # Safety
/// `schema` is NULL or points to a `shm_schema` whose `name` is NULL or NUL-terminated.
unsafe fn schema_arg(schema: *const ShmSchema) -> Result<Schema, Failure> {
    if schema.is_null() {
        return Err(Failure::invalid("the schema is NULL"));
    }
    // SAFETY: non-null (checked); the caller's `shm_schema`.
    let s = unsafe { schema.read() };
    // SAFETY: the caller's contract above.
    let name = unsafe { name_arg(s.name) }?;
    if s.size == 0 || s.size > MAX_RECORD {
        return Err(Failure::invalid(format!(
            "schema size {} is not 1 to {MAX_RECORD}",
            s.size
        )));
    }
    if !s.align.is_power_of_two() || s.align > 64 {
        return Err(Failure::invalid(format!(
            "schema alignment {} is not a power of two up to 64",
            s.align
        )));
    }
    Ok(Schema::new(name, s.version, s.size, s.align)?)
}

/// What creating a record segment (seqlock or plain) starts from: the schema and the
/// initial value checked, and the named segment made at the size the record needs.
///
/// # Safety
/// `schema` is NULL or a `shm_schema` (its `name` NUL-terminated); `initial` is NULL or
/// `schema->size` readable bytes that stay put while the returned slice is used.
unsafe fn new_record<'a>(
    name: &str,
    schema: *const ShmSchema,
    initial: *const c_void,
) -> Result<(PosixShm, Schema, &'a [u8]), Failure> {
    // SAFETY: the caller's contract above.
    let schema = unsafe { schema_arg(schema) }?;
    if initial.is_null() {
        return Err(Failure::invalid("initial is NULL"));
    }
    // SAFETY: non-null, `schema.size()` readable bytes (the caller's contract).
    let first = unsafe { bytes_arg(initial, schema.size() as usize) }?;
    let mem = shm_posix::ShmOptions::new(name)
        .size(record_segment_len(schema.size()))
        .create()?;
    Ok((mem, schema, first))
}

/// Creates the named POSIX segment `name` holding one record of type `schema`, whose
/// first value is the `schema->size` bytes at `initial`, and stores the handle in
/// `*out`; the name is removed when the handle is freed.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT` (NULLs, a name, a size or an alignment out of
/// range), `SHM_STATUS_ALREADY_EXISTS`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `schema` is NULL or a `shm_schema` (its `name`
/// NUL-terminated); `initial` is NULL or `schema->size` readable bytes; `out` is NULL or
/// points to a `shm_seqlock *` to fill.
#[no_mangle]
pub unsafe extern "C" fn shm_seqlock_create(
    name: *const c_char,
    schema: *const ShmSchema,
    initial: *const c_void,
    out: *mut *mut ShmSeqLock,
) -> ShmStatus {
    let make = |name: &str| {
        // SAFETY: the caller's contract above.
        let (mem, schema, first) = unsafe { new_record(name, schema, initial) }?;
        Ok(ShmSeqLock {
            lock: RawSeqLock::create(mem, schema, first)?,
        })
    };
    // SAFETY: the caller's contract above.
    unsafe { named(name, out, make) }
}

/// Opens the record in the named POSIX segment `name`, waiting up to `timeout_ns` for
/// the segment to appear; its type must be `schema` exactly (name, version, size,
/// alignment), else `SHM_STATUS_MISMATCH`.
///
/// Errors: `SHM_STATUS_NOT_FOUND`, `SHM_STATUS_MISMATCH`, `SHM_STATUS_CORRUPT`,
/// `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// As `shm_seqlock_create`, without `initial`.
#[no_mangle]
pub unsafe extern "C" fn shm_seqlock_open(
    name: *const c_char,
    schema: *const ShmSchema,
    timeout_ns: u64,
    out: *mut *mut ShmSeqLock,
) -> ShmStatus {
    let make = |name: &str| {
        // SAFETY: the caller's contract above.
        let schema = unsafe { schema_arg(schema) }?;
        let mem = open_named(name, timeout_arg(timeout_ns))?;
        Ok(ShmSeqLock {
            lock: RawSeqLock::attach(mem, schema, &AttachOptions::default())?,
        })
    };
    // SAFETY: the caller's contract above.
    unsafe { named(name, out, make) }
}

/// Frees a record handle (NULL: nothing); the creator's removes the segment's name.
///
/// # Safety
/// `lock` is NULL or a handle from `shm_seqlock_create` / `shm_seqlock_open`.
#[no_mangle]
pub unsafe extern "C" fn shm_seqlock_free(lock: *mut ShmSeqLock) -> ShmStatus {
    free(lock, "seqlock")
}

/// Replaces the record with the `len` bytes at `value` (exactly the record's size):
/// readers see the old or the new value, never a mix.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT` (NULL, another size), `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `lock` is NULL or a live handle used by one thread at a time; `value` is NULL or
/// points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shm_seqlock_store(
    lock: *mut ShmSeqLock,
    value: *const c_void,
    len: usize,
) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(lock, "seqlock") }?;
        // SAFETY: as above.
        let bytes = unsafe { bytes_arg(value, len) }?;
        Ok(h.lock.store(bytes)?)
    })
}

/// Copies a consistent value of the record into the `len` bytes at `buf` (exactly the
/// record's size).
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT` (NULL, another size), `SHM_STATUS_PEER_DIED`
/// (the writer died mid-write), `SHM_STATUS_TIMEOUT` (a writer stuck mid-write),
/// `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `lock` is NULL or a live handle used by one thread at a time; `buf` is NULL or points
/// to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn shm_seqlock_load(
    lock: *mut ShmSeqLock,
    buf: *mut c_void,
    len: usize,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        receive_into(lock, "seqlock", buf, len, |h, out| {
            h.lock.load_into(out)?;
            Ok(())
        })
    }
}

/// The segment size for a record of `size` bytes: a page for the header (and a seqlock's
/// sequence word), then the record rounded up to pages.
fn record_segment_len(size: u64) -> u64 {
    4096 + size.div_ceil(4096) * 4096
}

/// Creates the named POSIX segment `name` holding one plain record of type `schema`
/// (the header records the schema, checked by every `shm_segment_open`), whose first
/// value is the `schema->size` bytes at `initial`.
///
/// Errors: as `shm_seqlock_create`.
///
/// # Safety
/// As `shm_seqlock_create`, with a `shm_segment *` to fill.
#[no_mangle]
pub unsafe extern "C" fn shm_segment_create(
    name: *const c_char,
    schema: *const ShmSchema,
    initial: *const c_void,
    out: *mut *mut ShmSegment,
) -> ShmStatus {
    let make = |name: &str| {
        // SAFETY: the caller's contract above.
        let (mem, schema, first) = unsafe { new_record(name, schema, initial) }?;
        Ok(ShmSegment {
            raw: RawSegment::create_record(mem, schema, first)?,
        })
    };
    // SAFETY: the caller's contract above.
    unsafe { named(name, out, make) }
}

/// Opens the plain record in the named POSIX segment `name` (waiting up to `timeout_ns`
/// for it to appear), its type checked against `schema`.
///
/// Errors: as `shm_seqlock_open`.
///
/// # Safety
/// As `shm_seqlock_open`, with a `shm_segment *` to fill.
#[no_mangle]
pub unsafe extern "C" fn shm_segment_open(
    name: *const c_char,
    schema: *const ShmSchema,
    timeout_ns: u64,
    out: *mut *mut ShmSegment,
) -> ShmStatus {
    let make = |name: &str| {
        // SAFETY: the caller's contract above.
        let schema = unsafe { schema_arg(schema) }?;
        let mem = open_named(name, timeout_arg(timeout_ns))?;
        Ok(ShmSegment {
            raw: RawSegment::attach_record(mem, schema)?,
        })
    };
    // SAFETY: the caller's contract above.
    unsafe { named(name, out, make) }
}

/// Opens the named POSIX segment `name` as another program made it, with no header of
/// ours (the tutorial's writer, Python's `multiprocessing.shared_memory`): the record is
/// at offset 0 and only the segment's size can be checked (at least `size` bytes).
///
/// Errors: `SHM_STATUS_NOT_FOUND`, `SHM_STATUS_MISMATCH` (smaller than `size`),
/// `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `out` is NULL or points to a `shm_segment *`.
#[no_mangle]
pub unsafe extern "C" fn shm_segment_open_foreign(
    name: *const c_char,
    size: u64,
    timeout_ns: u64,
    out: *mut *mut ShmSegment,
) -> ShmStatus {
    let make = |name: &str| {
        let mem = shm_posix::ShmOptions::new(name).allow_foreign(true);
        let deadline = timeout_arg(timeout_ns);
        let mem = match open_named(name, deadline) {
            Ok(m) => m,
            Err(f) if f.status == ShmStatus::Mismatch => mem.open()?,
            Err(f) => return Err(f),
        };
        let len = shm_core::SharedMemory::len(&mem) as u64;
        if len < size {
            return Err(Failure::new(
                ShmStatus::Mismatch,
                format!("the segment has {len} bytes, fewer than the record's {size}"),
            ));
        }
        Ok(ShmSegment {
            raw: RawSegment::foreign(mem),
        })
    };
    // SAFETY: the caller's contract above.
    unsafe { named(name, out, make) }
}

/// Frees a segment handle (NULL: nothing); the creator's removes the name.
///
/// # Safety
/// `seg` is NULL or a handle from a `shm_segment_*` function.
#[no_mangle]
pub unsafe extern "C" fn shm_segment_free(seg: *mut ShmSegment) -> ShmStatus {
    free(seg, "segment")
}

/// Copies `len` bytes at `offset` of the payload (the record is at 0) into `buf`.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT` (the range leaves the segment, NULL),
/// `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `seg` is NULL or a live handle used by one thread at a time; `buf` is NULL or `len`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn shm_segment_read(
    seg: *mut ShmSegment,
    offset: u64,
    buf: *mut c_void,
    len: usize,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        receive_into(seg, "segment", buf, len, |h, out| {
            let off = usize::try_from(offset).map_err(|_| Failure::invalid("offset too large"))?;
            Ok(h.raw.read_at(off, out)?)
        })
    }
}

/// Writes the `len` bytes at `data` at `offset` of the payload.
///
/// Errors: as `shm_segment_read`.
///
/// # Safety
/// `seg` is NULL or a live handle used by one thread at a time; `data` is NULL or `len`
/// readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shm_segment_write(
    seg: *mut ShmSegment,
    offset: u64,
    data: *const c_void,
    len: usize,
) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(seg, "segment") }?;
        // SAFETY: as above.
        let bytes = unsafe { bytes_arg(data, len) }?;
        let off = usize::try_from(offset).map_err(|_| Failure::invalid("offset too large"))?;
        Ok(h.raw.write_at(off, bytes)?)
    })
}
