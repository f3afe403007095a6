//! The previous release's names, kept for one release as deprecated aliases of the one
//! naming scheme (the table is in the crate docs and the README). Each returns the
//! umbrella [`Error`], as it did.

use std::time::Duration;

use super::{Broadcast, Publisher, Subscriber};
use crate::format::error::Error;
use crate::format::memory::SharedMemory;
use crate::format::record::Record;

impl<M: SharedMemory> Broadcast<M> {
    /// Deprecated name of [`subscriber`](Self::subscriber).
    ///
    /// # Errors
    /// As [`subscriber`](Self::subscriber).
    #[deprecated(note = "use `subscriber()`: one name per end")]
    pub fn subscribe(&self) -> Result<Subscriber<M>, Error> {
        self.subscriber()
    }

    /// Deprecated name of [`attach_record`](Self::attach_record).
    ///
    /// # Errors
    /// As [`attach_record`](Self::attach_record).
    #[deprecated(note = "use `attach_record::<T>()`: typed use is `record` everywhere")]
    pub fn attach_pod<T: Record>(mem: M) -> Result<Self, Error> {
        Self::attach_record::<T>(mem)
    }
}

impl<M: SharedMemory> Publisher<M> {
    /// Deprecated name of [`publish_record`](Self::publish_record).
    ///
    /// # Errors
    /// As [`publish_record`](Self::publish_record).
    #[deprecated(note = "use `publish_record`")]
    pub fn publish_pod<T: Record>(&mut self, value: &T) -> Result<(), Error> {
        Ok(self.publish_record(value)?)
    }

    /// Deprecated name of [`publish_record_async`](Self::publish_record_async).
    ///
    /// # Errors
    /// As [`publish_record_async`](Self::publish_record_async).
    ///
    /// # Cancel safety
    /// As [`publish_async`](Self::publish_async).
    #[deprecated(note = "use `publish_record_async`")]
    pub async fn publish_pod_async<T: Record>(&mut self, value: &T) -> Result<(), Error> {
        Ok(self.publish_record_async(value).await?)
    }
}

impl<M: SharedMemory> Subscriber<M> {
    fn number(&self) -> u64 {
        // Every successful receive sets it before returning.
        self.last_number().unwrap_or(0)
    }

    /// Deprecated: [`recv_into`](Self::recv_into), returning the message's number.
    ///
    /// # Errors
    /// As [`recv_into`](Self::recv_into).
    #[deprecated(note = "use `recv_into` (returns the length; the number is `last_number()`)")]
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<u64, Error> {
        self.recv_into(buf)?;
        Ok(self.number())
    }

    /// Deprecated: [`recv_into_timeout`](Self::recv_into_timeout), returning the number.
    ///
    /// # Errors
    /// As [`recv_into_timeout`](Self::recv_into_timeout).
    #[deprecated(note = "use `recv_into_timeout` (the number is `last_number()`)")]
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<u64, Error> {
        self.recv_into_timeout(buf, timeout)?;
        Ok(self.number())
    }

    /// Deprecated: [`try_recv_into`](Self::try_recv_into), returning the number.
    ///
    /// # Errors
    /// As [`try_recv_into`](Self::try_recv_into).
    #[deprecated(note = "use `try_recv_into` (the number is `last_number()`)")]
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<u64, Error> {
        self.try_recv_into(buf)?;
        Ok(self.number())
    }

    /// Deprecated: [`recv_into_slice`](Self::recv_into_slice) (or its `_timeout` form),
    /// returning the number and the length.
    ///
    /// # Errors
    /// As [`recv_into_slice_timeout`](Self::recv_into_slice_timeout).
    #[deprecated(note = "use `recv_into_slice` / `recv_into_slice_timeout`")]
    pub fn recv_slice(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<(u64, usize), Error> {
        let len = match timeout {
            Some(t) => self.recv_into_slice_timeout(buf, t)?,
            None => self.recv_into_slice(buf)?,
        };
        Ok((self.number(), len))
    }

    /// Deprecated name of [`recv_record`](Self::recv_record).
    ///
    /// # Errors
    /// As [`recv_record`](Self::recv_record).
    #[deprecated(note = "use `recv_record`")]
    pub fn recv_pod<T: Record>(&mut self) -> Result<T, Error> {
        Ok(self.recv_record()?)
    }

    /// Deprecated: [`recv_record`](Self::recv_record) with the message's number.
    ///
    /// # Errors
    /// As [`recv_record`](Self::recv_record).
    #[deprecated(note = "use `recv_record` and `last_number()`")]
    pub fn recv_pod_numbered<T: Record>(&mut self) -> Result<(u64, T), Error> {
        let v = self.recv_record()?;
        Ok((self.number(), v))
    }

    /// Deprecated: [`recv_into_async`](Self::recv_into_async), returning the number.
    ///
    /// # Errors
    /// As [`recv_into_async`](Self::recv_into_async).
    ///
    /// # Cancel safety
    /// As [`recv_into_async`](Self::recv_into_async).
    #[deprecated(note = "use `recv_into_async` (the number is `last_number()`)")]
    pub async fn recv_async(&mut self, buf: &mut Vec<u8>) -> Result<u64, Error> {
        self.recv_into_async(buf).await?;
        Ok(self.number())
    }

    /// Deprecated name of [`recv_record_async`](Self::recv_record_async).
    ///
    /// # Errors
    /// As [`recv_record_async`](Self::recv_record_async).
    ///
    /// # Cancel safety
    /// As [`recv_into_async`](Self::recv_into_async).
    #[deprecated(note = "use `recv_record_async`")]
    pub async fn recv_pod_async<T: Record>(&mut self) -> Result<T, Error> {
        Ok(self.recv_record_async().await?)
    }
}
