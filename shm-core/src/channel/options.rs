//! How a channel segment is laid out: [`ChannelOptions`].

use super::layout::*;
use crate::format::error::Error;
use crate::format::schema::Schema;

pub(super) fn channel_schema() -> Schema {
    Schema::new("channel", 1, 0, 8).expect("short name")
}

/// How a channel segment is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelOptions {
    pub(super) rings: u32,
    pub(super) capacity: Option<u64>,
    /// The record schema the header declares (`None`: messages of any bytes), or the
    /// error `Schema::of` gave (a name too long), reported by `create`.
    pub(super) schema: Option<Result<Schema, Error>>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            rings: 1,
            capacity: None,
            schema: None,
        }
    }
}

impl ChannelOptions {
    /// One ring, as large as the segment allows.
    pub fn new() -> Self {
        Self::default()
    }
    /// One ring, or two (one per direction).
    pub fn rings(mut self, rings: u32) -> Self {
        self.rings = rings;
        self
    }
    /// One ring sized for a stream of `size`-byte messages on this machine
    /// ([`stream_ring_bytes`](crate::os::cpu::stream_ring_bytes): about twice the L2
    /// cache, and at least two messages). Get the segment size with
    /// [`segment_len`](Self::segment_len).
    ///
    /// Setting a capacity yourself: what decides a stream's speed is how much is in
    /// flight. A ring that outgrows the caches costs every message a trip to memory (an
    /// AMD EPYC with 512 KiB of L2 per core ran 1 MiB messages 1.04x to 1.41x faster in
    /// a 4 MiB ring than in a 16 MiB one; BENCHMARKS.md section 9); a ring smaller than
    /// two messages makes the two sides take turns. Two or three times the L2 cache, and
    /// at least two messages, is the rule of thumb.
    pub fn for_messages(size: u64) -> Self {
        Self::new().capacity(crate::os::cpu::stream_ring_bytes(size))
    }

    /// Carry records of type `T`: the header declares `T`'s schema, typed ends
    /// ([`Channel::attach_record`](crate::Channel::attach_record),
    /// [`Sender::send_record`](crate::Sender::send_record),
    /// [`Receiver::recv_record`](crate::Receiver::recv_record)) check it, and a message is
    /// exactly one `T`.
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{bytemuck, Channel, ChannelOptions, HeapMemory, Record};
    /// # #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    /// # #[bytemuck(crate = "shm_core::bytemuck")]
    /// # #[repr(C)]
    /// # struct Tick { n: u64, price: u64 }
    /// # impl Record for Tick { const NAME: &'static str = "Tick"; }
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let opts = ChannelOptions::new().capacity(4096).record::<Tick>();
    /// let mem = HeapMemory::new(opts.segment_len()? as usize);
    /// let view = mem.share();
    /// let mut tx = Channel::create(mem, &opts)?.sender(0)?;
    /// let mut rx = Channel::attach_record::<Tick>(view)?.receiver(0)?;
    /// tx.send_record(&Tick { n: 1, price: 100 })?;
    /// assert_eq!(rx.recv_record::<Tick>()?, Tick { n: 1, price: 100 });
    /// # Ok(()) }
    /// ```
    pub fn record<T: crate::format::record::Record>(mut self) -> Self {
        self.schema = Some(Schema::of::<T>());
        self
    }

    /// Carry records of `schema` (as [`record`](Self::record), without a Rust type: for
    /// a bridge that recreates a remote channel). The schema an untyped channel declares
    /// (`"channel"`) means messages of any bytes.
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = (schema != channel_schema()).then_some(Ok(schema));
        self
    }

    /// The capacity set (`None`: the largest that fits the segment).
    pub fn capacity_bytes(&self) -> Option<u64> {
        self.capacity
    }

    /// Bytes per ring: a power of two, at least 64. Default: the largest that fits.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// The segment size (header included) that holds these rings at the capacity set
    /// ([`capacity`](Self::capacity) or [`for_messages`](Self::for_messages)): what to
    /// ask a backend for.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when no capacity is set (the default sizes the rings to
    /// the segment it is given, so there is nothing to compute), for a capacity that is
    /// not a power of two of at least 64 or a ring count other than 1 or 2, or when the
    /// size does not fit in 64 bits.
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{Channel, ChannelOptions, HeapMemory};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let opts = ChannelOptions::new().rings(2).capacity(4096);
    /// let mem = HeapMemory::new(opts.segment_len()? as usize);
    /// let chan = Channel::create(mem, &opts)?;
    /// assert_eq!((chan.rings(), chan.capacity()), (2, 4096));
    /// # Ok(()) }
    /// ```
    pub fn segment_len(&self) -> Result<u64, Error> {
        let Some(capacity) = self.capacity else {
            return Err(Error::InvalidOption {
                option: "channel capacity",
                found: 0,
                expected: "a capacity set (ChannelOptions::capacity or for_messages) to size the segment for",
            });
        };
        if !capacity.is_power_of_two() || capacity < MIN_CAPACITY {
            // `create` refuses it too: sizing a segment for it would make `create` with
            // no capacity quietly lay a smaller ring into the memory.
            return Err(Error::InvalidOption {
                option: "channel capacity",
                found: capacity,
                expected: "a power of two, at least 64",
            });
        }
        if !(1..=2).contains(&self.rings) {
            return Err(Error::InvalidOption {
                option: "channel rings",
                found: self.rings.into(),
                expected: "1 or 2",
            });
        }
        payload_len(self.rings, capacity)
            .and_then(|p| p.checked_add(crate::format::layout::PAYLOAD_OFFSET as u64))
            .ok_or(too_large(capacity))
    }
}

pub(super) fn too_large(capacity: u64) -> Error {
    Error::InvalidOption {
        option: "channel capacity",
        found: capacity,
        expected: "a size whose rings fit in a segment of at most 2^64 bytes",
    }
}

/// Payload bytes a channel of `rings` rings of `cap` bytes needs, if that fits in a u64.
pub(super) fn payload_len(rings: u32, cap: u64) -> Option<u64> {
    RING_CONTROL
        .checked_add(cap)?
        .checked_mul(u64::from(rings))?
        .checked_add(CHANNEL_HEADER)
}
