//! [`Record`] types and the plain typed [`Segment`].
#![allow(unsafe_code)]

use std::marker::PhantomData;

use crate::format::copy;
use crate::format::error::Error;
use crate::format::layout::{AttachOptions, Expect};
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::schema::{Kind, Schema};

impl Schema {
    /// The schema of a [`Record`] type.
    ///
    /// # Errors
    /// [`Error::SchemaName`] for a name longer than the header holds.
    pub fn of<T: Record>() -> Result<Schema, Error> {
        Schema::new(
            T::NAME,
            T::VERSION,
            std::mem::size_of::<T>() as u64,
            std::mem::align_of::<T>() as u64,
        )
    }
}

/// A plain-old-data type that may live in shared memory.
///
/// `bytemuck::Pod` is what makes it sound: a `Pod` type is valid for every bit pattern
/// (no `bool`, enum, reference or padding), so whatever a peer writes, a copy of it is a
/// valid value. [`NAME`](Self::NAME) and [`VERSION`](Self::VERSION) identify the type
/// between programs compiled separately; change the version when the fields change.
pub trait Record: bytemuck::Pod {
    /// The type's name as written into the header (at most 40 bytes).
    const NAME: &'static str;
    /// The type's version.
    const VERSION: u32 = 1;
}

macro_rules! primitive_records {
    ($($t:ty),*) => {$(
        impl Record for $t { const NAME: &'static str = stringify!($t); }
    )*};
}
primitive_records!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

impl<T: Record, const N: usize> Record for [T; N]
where
    [T; N]: bytemuck::Pod,
{
    const NAME: &'static str = "array";
}

pub(crate) fn expect_for<T: Record>(kind: Kind, min_payload: u64) -> Result<Expect, Error> {
    Ok(Expect {
        kind,
        schema: Schema::of::<T>()?,
        min_payload,
        any_schema: false,
    })
}

/// A typed record at the start of a segment's payload, accessed only by copy.
///
/// Reads and writes are not atomic as a whole: a reader may see a mix of two writes. Use
/// [`SeqLock`](crate::SeqLock) when readers must see consistent snapshots. The bytes after
/// the record, to the end of the segment, are free for [`read_at`](Self::read_at) /
/// [`write_at`](Self::write_at) (offsets count from the start of the payload, where the
/// record is).
pub struct Segment<T: Record, M: SharedMemory> {
    raw: RawSegment<M>,
    _record: PhantomData<fn() -> T>,
}

impl<T: Record, M: SharedMemory> Segment<T, M> {
    fn expect() -> Result<Expect, Error> {
        expect_for::<T>(Kind::Record, std::mem::size_of::<T>() as u64)
    }

    /// Lays out a new segment in fresh, zeroed memory holding `initial`.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] for read-only memory, [`Error::TooSmall`] when the record does
    /// not fit, [`Error::AlreadyInitialized`] for memory that holds a header already.
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{HeapMemory, Segment};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let mem = HeapMemory::new(4096);
    /// let view = mem.share(); // stands for a reader process's mapping
    /// let writer = Segment::create(mem, &[100u64, 876, 8021])?;
    /// let reader = Segment::<[u64; 3], _>::attach(view)?; // the header is validated
    /// assert_eq!(reader.read()?, [100, 876, 8021]);
    /// writer.write(&[1, 2, 3])?;
    /// assert_eq!(reader.read()?, [1, 2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn create(mem: M, initial: &T) -> Result<Self, Error> {
        let raw = RawSegment::create(mem, Self::expect()?, |raw| {
            // SAFETY: `check_fits` made room for a T at the payload start.
            unsafe {
                copy::store_pod(
                    raw.payload_ptr(),
                    initial,
                    core::sync::atomic::Ordering::Relaxed,
                )
            }
        })?;
        Ok(Segment {
            raw,
            _record: PhantomData,
        })
    }

    /// Attaches to a segment made by [`create`](Self::create), validating its header.
    pub fn attach(mem: M) -> Result<Self, Error> {
        Self::attach_with(mem, &AttachOptions::default())
    }

    /// [`attach`](Self::attach) with explicit timeouts.
    pub fn attach_with(mem: M, opts: &AttachOptions) -> Result<Self, Error> {
        Ok(Segment {
            raw: RawSegment::attach(mem, Self::expect()?, opts)?,
            _record: PhantomData,
        })
    }

    /// A segment with no header, made by a program that does not speak this layout: the
    /// record is at offset 0 of the mapping (the tutorial's writer, Python's
    /// `multiprocessing.shared_memory` plus `struct.pack`, a C program).
    ///
    /// **The type is not verified**: there is no header to say what the bytes are. The
    /// only check is the size: the mapping must hold at least `size_of::<T>()` bytes
    /// ([`Error::TooSmall`] otherwise, an empty mapping included). Access is by copy of a
    /// `Pod` type, so whatever the bytes are, reading them is sound and gives some `T`.
    ///
    /// ```
    /// use shm_core::{HeapMemory, Segment};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let mem = HeapMemory::from_bytes(&[100u64, 876, 8021].map(u64::to_ne_bytes).concat());
    /// let seg = Segment::<[u64; 3], _>::attach_foreign(mem)?;
    /// assert_eq!(seg.read()?, [100, 876, 8021]);
    /// # Ok(()) }
    /// ```
    pub fn attach_foreign(mem: M) -> Result<Self, Error> {
        let needed = std::mem::size_of::<T>() as u64;
        let found = mem.len() as u64;
        if found < needed {
            return Err(Error::TooSmall { needed, found });
        }
        Ok(Segment {
            raw: RawSegment::foreign(mem),
            _record: PhantomData,
        })
    }

    /// Makes a headerless segment the way foreign programs expect one: writes `value` at
    /// offset 0 and nothing else. [`Error::TooSmall`] if the mapping cannot hold it.
    pub fn create_foreign(mem: M, value: &T) -> Result<Self, Error> {
        let seg = Self::attach_foreign(mem)?;
        seg.write(value)?;
        Ok(seg)
    }

    /// A copy of the record (bytes copied one by one while a writer may be writing: for
    /// a consistent snapshot of a record that changes, use a [`SeqLock`](crate::SeqLock)).
    ///
    /// # Errors
    /// [`Error::Truncated`] if a peer truncated the segment under us (what was read came
    /// from the zero pages put in place of the missing ones).
    pub fn read(&self) -> Result<T, Error> {
        // SAFETY: validation guaranteed the payload holds at least size_of::<T>() bytes.
        let v = unsafe {
            copy::load_pod(
                self.raw.payload_ptr(),
                core::sync::atomic::Ordering::Relaxed,
            )
        };
        self.raw.intact().map(|()| v)
    }

    /// Overwrites the record with a copy of `value`.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only mapping (nothing is written), and
    /// [`Error::Truncated`] if the segment was truncated under us (the write then went to
    /// zero pages nobody else sees).
    pub fn write(&self, value: &T) -> Result<(), Error> {
        self.raw.check_writable("writing a record")?;
        // SAFETY: validation guaranteed the payload holds at least size_of::<T>() bytes,
        // and the mapping is writable (checked above).
        unsafe {
            copy::store_pod(
                self.raw.payload_ptr(),
                value,
                core::sync::atomic::Ordering::Relaxed,
            )
        }
        self.raw.intact()
    }

    /// Deprecated name of [`read`](Self::read).
    ///
    /// # Errors
    /// As [`read`](Self::read).
    #[deprecated(note = "use `read()`, which returns a Result now")]
    pub fn try_read(&self) -> Result<T, Error> {
        self.read()
    }

    /// Deprecated name of [`write`](Self::write).
    ///
    /// # Errors
    /// As [`write`](Self::write).
    #[deprecated(note = "use `write()`")]
    pub fn try_write(&self, value: &T) -> Result<(), Error> {
        self.write(value)
    }

    /// Copies payload bytes at `offset` into `buf`; an error if the range leaves the payload.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.raw.read_at(offset, buf)
    }

    /// Copies `bytes` into the payload at `offset`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range leaves the payload, [`Error::ReadOnly`] on a
    /// read-only mapping, [`Error::Truncated`] after a truncation.
    pub fn write_at(&self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        self.raw.write_at(offset, bytes)
    }

    /// The payload's length: the record and the free bytes after it.
    pub fn payload_len(&self) -> usize {
        self.raw.payload_len()
    }

    /// The validated segment underneath (header, memory).
    pub fn raw(&self) -> &RawSegment<M> {
        &self.raw
    }

    /// Gives the memory back.
    pub fn into_memory(self) -> M {
        self.raw.into_memory()
    }
}

impl<T: Record, M: SharedMemory> std::fmt::Debug for Segment<T, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("raw", &self.raw).finish()
    }
}
