//! The previous release's names, kept for one release as deprecated aliases of the one
//! naming scheme (the table is in the crate docs and the README).

use super::{ChannelOptions, Receiver};
use crate::format::error::Error;
use crate::format::memory::SharedMemory;

impl ChannelOptions {
    /// Deprecated: `self.capacity(capacity).segment_len()`.
    ///
    /// # Errors
    /// As [`segment_len`](Self::segment_len).
    #[deprecated(
        note = "use `capacity(cap).segment_len()`: one sizing call for every options builder"
    )]
    pub fn segment_len_for(&self, capacity: u64) -> Result<u64, Error> {
        self.capacity(capacity).segment_len()
    }
}

impl<M: SharedMemory> Receiver<M> {
    /// Deprecated name of [`recv_into_async`](Self::recv_into_async).
    ///
    /// # Errors
    /// As [`recv_into_async`](Self::recv_into_async).
    ///
    /// # Cancel safety
    /// As [`recv_into_async`](Self::recv_into_async).
    #[deprecated(note = "use `recv_into_async`")]
    pub async fn recv_async_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, Error> {
        Ok(self.recv_into_async(buf).await?)
    }
}
