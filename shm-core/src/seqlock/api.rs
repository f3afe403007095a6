//! The public half of the seqlock: [`SeqLock`] over any [`SharedMemory`]; the protocol is
//! in [`crate::protocol::seqlock`].
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::time::Duration;

use crate::format::copy;
use crate::format::error::Error;
use crate::format::layout::{AttachOptions, Kind};
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::record::expect_for;
use crate::format::record::Record;
use crate::os::proc::{self, Liveness};
use crate::protocol::seqlock as protocol;
use crate::protocol::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{Pace, Sleeper, Waiter};

/// Offset of the record within the seqlock payload.
pub const DATA_OFFSET: usize = 64;
const OWNER_OFFSET: usize = 8;

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
    fn expect() -> Result<crate::format::layout::Expect, Error> {
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

    fn owner(&self) -> &AtomicU32 {
        // SAFETY: as in `seq`; offset 8 is 4-aligned and inside the payload.
        unsafe { &*self.raw.payload_ptr().add(OWNER_OFFSET).cast::<AtomicU32>() }
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
        // The clock starts at the first failed attempt: an uncontended load reads none.
        let mut w: Option<Waiter> = None;
        loop {
            match protocol::read(self.seq(), || self.copy_out()) {
                Ok(v) => {
                    self.raw.intact()?;
                    return Ok((v, retries));
                }
                Err(_) => {
                    retries += 1;
                    let w =
                        w.get_or_insert_with(|| Waiter::new(Pace::Poll, Some(self.writer_timeout)));
                    w.pause(&mut ReaderChecks { lock: self })
                        .map_err(|e| self.waited(e))?;
                }
            }
        }
    }

    /// A timeout becomes `WriterStuck` with the holder's pid.
    fn waited(&self, e: Error) -> Error {
        match e {
            Error::Timeout { waited } => Error::WriterStuck {
                waited,
                pid: self.owner().load(Ordering::Relaxed),
            },
            e => e,
        }
    }

    /// Takes the write lock, waiting (bounded by the writer timeout) for another writer;
    /// takes it over from a writer that died holding it.
    fn lock(&self) -> Result<u64, Error> {
        self.raw.check_writable("storing a seqlock record")?;
        let me = proc::current_pid();
        let mut w = Waiter::new(Pace::Poll, Some(self.writer_timeout));
        loop {
            self.raw.intact()?;
            match protocol::try_lock(self.seq(), self.owner(), me) {
                Ok(s) => return Ok(s),
                Err(holder) if holder != me && proc::liveness(holder) == Liveness::Dead => {
                    if let Ok(s) = protocol::steal(self.seq(), self.owner(), holder, me) {
                        return Ok(s);
                    }
                }
                Err(_) => {}
            }
            w.pause(&mut WriterChecks { lock: self })
                .map_err(|e| self.waited(e))?;
        }
    }

    fn write_locked(&self, s: u64, value: &T) -> Result<(), Error> {
        // SAFETY: the record's bytes lie within the validated payload; Release as the
        // protocol requires.
        unsafe { copy::store_pod(self.data(), value, Ordering::Release) };
        protocol::unlock(self.seq(), self.owner(), s);
        self.raw.intact()
    }

    /// Replaces the record; readers see the old or the new value, never a mix.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only mapping; [`Error::WriterStuck`] when another
    /// live writer holds the lock past the writer timeout; [`Error::Truncated`].
    pub fn store(&self, value: &T) -> Result<(), Error> {
        let s = self.lock()?;
        self.write_locked(s, value)
    }

    /// Reads, changes and writes the record under the lock.
    pub fn update(&self, f: impl FnOnce(&mut T)) -> Result<(), Error> {
        let s = self.lock()?;
        let mut value = self.copy_out();
        f(&mut value);
        self.write_locked(s, &value)
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

/// What ends a reader's wait early: the writer died inside its write, or the segment was
/// truncated under us.
struct ReaderChecks<'a, T: Record, M: SharedMemory> {
    lock: &'a SeqLock<T, M>,
}

impl<T: Record, M: SharedMemory> Sleeper for ReaderChecks<'_, T, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.lock.raw.intact()?;
        if !peer {
            return Ok(());
        }
        let pid = self.lock.owner().load(Ordering::Relaxed);
        let odd = self.lock.seq().load(Ordering::Relaxed) & 1 == 1;
        if odd && pid != 0 && proc::liveness(pid) == Liveness::Dead {
            return Err(Error::WriterDied { pid });
        }
        Ok(())
    }
}

/// What ends a writer's wait for the lock early: the segment was truncated under us. (A
/// dead holder is not an end: the lock loop takes it over.)
struct WriterChecks<'a, T: Record, M: SharedMemory> {
    lock: &'a SeqLock<T, M>,
}

impl<T: Record, M: SharedMemory> Sleeper for WriterChecks<'_, T, M> {
    fn check(&mut self, _peer: bool) -> Result<(), Error> {
        self.lock.raw.intact()
    }
}

impl<T: Record, M: SharedMemory> std::fmt::Debug for SeqLock<T, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqLock").field("raw", &self.raw).finish()
    }
}
