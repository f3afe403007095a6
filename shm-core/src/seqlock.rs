//! [`SeqLock`]: a record with consistent snapshots across processes.
//!
//! The payload holds a sequence word, the pid of the last writer, and the record. A
//! writer makes the sequence odd, writes the record, and makes it even again; a reader
//! copies the sequence, the record, and the sequence again, and keeps the copy only if
//! the two sequences are equal and even. The record is copied with atomic word accesses
//! (see the `copy` module), never a plain racy `memcpy`.
//!
//! A sequence that stays odd means a writer is inside. Past the writer timeout a reader
//! looks at the writer's pid: alive, it returns [`Error::WriterStuck`]; dead (killed in
//! the middle of a write), [`Error::WriterDied`]. A later [`store`](SeqLock::store) from
//! any process takes the abandoned lock over and replaces the torn value, so readers
//! recover without a reset.
//!
//! ```
//! use shm_core::{HeapMemory, SeqLock};
//! # fn main() -> Result<(), shm_core::Error> {
//! let mem = HeapMemory::new(4096);
//! let view = mem.share();
//! let writer = SeqLock::create(mem, &[0u64; 4])?;
//! let reader = SeqLock::<[u64; 4], _>::attach(view)?;
//! writer.store(&[7; 4])?;
//! assert_eq!(reader.load()?, [7; 4]);
//! writer.update(|v| v[0] += 1)?;
//! assert_eq!(reader.load()?, [8, 7, 7, 7]);
//! # Ok(()) }
//! ```
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::time::Duration;

use crate::layout::{AttachOptions, Kind};
use crate::proc::{self, Liveness};
use crate::protocol::seqlock as protocol;
use crate::record::expect_for;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{Backoff, Deadline};
use crate::{copy, Error, RawSegment, Record, SharedMemory};

/// Offset of the record within the seqlock payload.
pub const DATA_OFFSET: usize = 64;
const WRITER_PID_OFFSET: usize = 8;

fn data_len<T>() -> usize {
    std::mem::size_of::<T>().div_ceil(8) * 8
}

/// A record behind a seqlock, in a segment of kind [`Kind::SeqLock`].
pub struct SeqLock<T: Record, M: SharedMemory> {
    raw: RawSegment<M>,
    writer_timeout: Duration,
    _record: PhantomData<fn() -> T>,
}

impl<T: Record, M: SharedMemory> SeqLock<T, M> {
    fn expect() -> Result<crate::layout::Expect, Error> {
        expect_for::<T>(Kind::SeqLock, (DATA_OFFSET + data_len::<T>()) as u64)
    }

    /// Lays out a new seqlock segment in fresh, zeroed memory holding `initial`.
    pub fn create(mem: M, initial: &T) -> Result<Self, Error> {
        let raw = RawSegment::create(mem, Self::expect()?, |raw| {
            // SAFETY: `check_fits` made room for DATA_OFFSET + the record; the segment is not
            // published yet, and the sequence (0, zeroed memory) is even.
            unsafe {
                copy::store_pod(
                    raw.payload_ptr().add(DATA_OFFSET),
                    initial,
                    Ordering::Relaxed,
                )
            }
        })?;
        Ok(Self::wrap(raw, &AttachOptions::default()))
    }

    /// Attaches to a seqlock segment, validating its header.
    pub fn attach(mem: M) -> Result<Self, Error> {
        Self::attach_with(mem, &AttachOptions::default())
    }

    /// [`attach`](Self::attach) with explicit timeouts.
    pub fn attach_with(mem: M, opts: &AttachOptions) -> Result<Self, Error> {
        let raw = RawSegment::attach(mem, Self::expect()?, opts)?;
        Ok(Self::wrap(raw, opts))
    }

    fn wrap(raw: RawSegment<M>, opts: &AttachOptions) -> Self {
        SeqLock {
            raw,
            writer_timeout: opts.writer_timeout,
            _record: PhantomData,
        }
    }

    fn seq(&self) -> &AtomicU64 {
        // SAFETY: the payload is 64-aligned and holds DATA_OFFSET + the record (validated);
        // the sequence word at its start is only ever accessed atomically.
        unsafe { &*self.raw.payload_ptr().cast::<AtomicU64>() }
    }

    fn writer_pid(&self) -> &AtomicU32 {
        // SAFETY: as in `seq`; offset 8 is 4-aligned and inside the payload.
        unsafe {
            &*self
                .raw
                .payload_ptr()
                .add(WRITER_PID_OFFSET)
                .cast::<AtomicU32>()
        }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: DATA_OFFSET lies within the validated payload.
        unsafe { self.raw.payload_ptr().add(DATA_OFFSET) }
    }

    fn copy_out(&self) -> T {
        // SAFETY: the record's bytes lie within the validated payload; Acquire as the
        // protocol requires.
        unsafe { copy::load_pod(self.data(), Ordering::Acquire) }
    }

    /// One attempt at a consistent copy: `None` if a write overlapped it.
    pub fn try_load(&self) -> Option<T> {
        protocol::read(self.seq(), || self.copy_out()).ok()
    }

    /// A consistent copy of the record, retrying while writes overlap.
    pub fn load(&self) -> Result<T, Error> {
        self.load_counted().map(|(v, _)| v)
    }

    /// [`load`](Self::load), also returning how many attempts were thrown away because a
    /// write overlapped them.
    pub fn load_counted(&self) -> Result<(T, u64), Error> {
        let mut retries = 0u64;
        let mut backoff = Backoff::new();
        let mut deadline: Option<Deadline> = None;
        loop {
            match protocol::read(self.seq(), || self.copy_out()) {
                Ok(v) => return Ok((v, retries)),
                Err(_) => {
                    retries += 1;
                    let d = *deadline.get_or_insert_with(|| Deadline::after(self.writer_timeout));
                    if d.expired() {
                        return Err(self.stuck_error(d));
                    }
                    backoff.snooze();
                }
            }
        }
    }

    fn stuck_error(&self, d: Deadline) -> Error {
        let pid = self.writer_pid().load(Ordering::Relaxed);
        if self.seq().load(Ordering::Relaxed) & 1 == 1 && proc::liveness(pid) == Liveness::Dead {
            Error::WriterDied { pid }
        } else {
            Error::WriterStuck {
                waited: d.elapsed(),
                pid,
            }
        }
    }

    /// Takes the write lock, waiting (bounded) for another writer; steals it from a
    /// writer that died holding it.
    fn lock(&self) -> Result<u64, Error> {
        let mut backoff = Backoff::new();
        let deadline = Deadline::after(self.writer_timeout);
        loop {
            match protocol::try_lock(self.seq()) {
                Ok(s) => return Ok(s),
                Err(held) if held & 1 == 1 => {
                    let pid = self.writer_pid().load(Ordering::Relaxed);
                    if proc::liveness(pid) == Liveness::Dead {
                        if let Ok(s) = protocol::steal(self.seq(), held) {
                            return Ok(s);
                        }
                    } else if deadline.expired() {
                        return Err(Error::WriterStuck {
                            waited: deadline.elapsed(),
                            pid,
                        });
                    }
                    backoff.snooze();
                }
                Err(_) => backoff.snooze(),
            }
        }
    }

    fn write_locked(&self, s: u64, value: &T) {
        self.writer_pid()
            .store(proc::current_pid(), Ordering::Relaxed);
        // SAFETY: the record's bytes lie within the validated payload; Release as the
        // protocol requires.
        unsafe { copy::store_pod(self.data(), value, Ordering::Release) };
        protocol::unlock(self.seq(), s);
    }

    /// Replaces the record; readers see the old or the new value, never a mix.
    pub fn store(&self, value: &T) -> Result<(), Error> {
        let s = self.lock()?;
        self.write_locked(s, value);
        Ok(())
    }

    /// Reads, changes and writes the record under the lock.
    pub fn update(&self, f: impl FnOnce(&mut T)) -> Result<(), Error> {
        let s = self.lock()?;
        let mut value = self.copy_out();
        f(&mut value);
        self.write_locked(s, &value);
        Ok(())
    }

    /// The validated segment underneath.
    pub fn raw(&self) -> &RawSegment<M> {
        &self.raw
    }

    /// Gives the memory back.
    pub fn into_memory(self) -> M {
        self.raw.into_memory()
    }
}

impl<T: Record, M: SharedMemory> std::fmt::Debug for SeqLock<T, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqLock").field("raw", &self.raw).finish()
    }
}
