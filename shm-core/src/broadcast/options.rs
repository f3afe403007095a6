//! How a broadcast is laid out: [`BroadcastOptions`], [`BroadcastMode`] and the limits.

use std::time::Duration;

use crate::format::error::Error;
use crate::format::layout::Expect;
use crate::format::record::Record;
use crate::format::schema::{Kind, Schema};

use super::layout::*;

/// The most subscribers a broadcast can be created for.
pub const MAX_SUBSCRIBERS: u32 = 1024;
/// The most slots a broadcast can be created with.
pub const MAX_SLOTS: u64 = 1 << 24;
/// The longest eviction timeout: a segment that claims more (a hostile creator's) is
/// refused, so a reliable publisher's wait always has an end.
pub const MAX_EVICT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Whether the publisher waits for subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastMode {
    /// Back-pressure: the publisher waits for the slowest live subscriber, and evicts one
    /// that is dead, stuck past the eviction timeout, or corrupt.
    Reliable,
    /// The publisher never waits; subscribers that fall behind get [`Error::Lagged`].
    Lossy,
}

impl BroadcastMode {
    pub(super) fn code(self) -> u32 {
        match self {
            BroadcastMode::Reliable => 1,
            BroadcastMode::Lossy => 2,
        }
    }
}

/// How long a subscriber of a [relayed](BroadcastOptions::relayed) broadcast spins before
/// it sleeps, by default (others spin as [`WaitMode::default`](crate::wait::WaitMode::default) says).
pub const RELAYED_SPIN: Duration = Duration::from_micros(2);

/// How a broadcast segment is laid out (builder; ends in [`Broadcast::create`](crate::Broadcast::create)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastOptions {
    pub(super) mode: BroadcastMode,
    pub(super) slots: u64,
    pub(super) max_message: Option<u64>,
    pub(super) max_subscribers: u32,
    pub(super) evict_timeout: Duration,
    pub(super) relayed: bool,
    /// The record's schema, or the error `Schema::of` gave (a name too long), reported
    /// by `create` and `segment_len` rather than lost.
    pub(super) schema: Option<Result<Schema, Error>>,
}

impl Default for BroadcastOptions {
    fn default() -> Self {
        BroadcastOptions {
            mode: BroadcastMode::Reliable,
            slots: 64,
            max_message: None,
            max_subscribers: 64,
            evict_timeout: Duration::from_secs(1),
            relayed: false,
            schema: None,
        }
    }
}

impl BroadcastOptions {
    /// Reliable, 64 slots of 4080-byte messages, 64 subscribers, 1 s eviction timeout,
    /// untyped messages.
    pub fn new() -> Self {
        Self::default()
    }
    /// Slots and `max_message` for `size`-byte messages on this machine: as many slots
    /// as fit in the ring a stream of such messages would use
    /// ([`stream_ring_bytes`](crate::os::cpu::stream_ring_bytes): about twice the L2
    /// cache), at least 4 and at most 4096. Subscribers that fall further behind than
    /// the ring holds lag (lossy) or hold the publisher back (reliable); a deeper ring
    /// absorbs longer stalls but no longer fits the caches.
    pub fn for_messages(size: u64) -> Self {
        let slot = slot_size(size).unwrap_or(u64::MAX);
        let slots = (crate::os::cpu::stream_ring_bytes(size) / slot)
            .clamp(4, 4096)
            .next_power_of_two()
            .min(4096);
        Self::new().slots(slots).max_message(size)
    }

    /// Reliable (back-pressure) or lossy.
    pub fn mode(mut self, mode: BroadcastMode) -> Self {
        self.mode = mode;
        self
    }
    /// Messages the ring holds: a power of two, 2 to [`MAX_SLOTS`].
    pub fn slots(mut self, slots: u64) -> Self {
        self.slots = slots;
        self
    }
    /// The largest message, in bytes (default 4080, or the record's size).
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = Some(bytes);
        self
    }
    /// How many subscribers may be joined at once: 1 to [`MAX_SUBSCRIBERS`].
    pub fn max_subscribers(mut self, n: u32) -> Self {
        self.max_subscribers = n;
        self
    }
    /// Reliable mode: how long the publisher waits for a live subscriber that does not
    /// move before it evicts it.
    pub fn evict_timeout(mut self, timeout: Duration) -> Self {
        self.evict_timeout = timeout;
        self
    }
    /// Marks the broadcast as **relayed**: its publisher republishes a stream that came
    /// from elsewhere (the `shm-zenoh` importer sets it). Bridges refuse to export a
    /// relayed broadcast, so an import is never sent back out: no loops, no echo. Its
    /// subscribers spin only [`RELAYED_SPIN`] before they sleep, by default
    /// ([`Subscriber::set_wait`](crate::broadcast::Subscriber::set_wait) changes it).
    pub fn relayed(mut self, relayed: bool) -> Self {
        self.relayed = relayed;
        self
    }
    /// Declare `schema` in the header without a Rust type for it (a relay republishing
    /// records it only carries as bytes); `max_message` defaults to the schema's size
    /// (or 4080 for a size of 0, untyped messages).
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = Some(Ok(schema));
        if self.max_message.is_none() && schema.size() > 0 {
            self.max_message = Some(schema.size());
        }
        self
    }
    /// Publish records of type `T`: the segment's header declares `T`'s schema, and
    /// `max_message` defaults to `size_of::<T>()`.
    pub fn record<T: Record>(mut self) -> Self {
        self.schema = Some(Schema::of::<T>());
        if self.max_message.is_none() {
            self.max_message = Some(std::mem::size_of::<T>() as u64);
        }
        self
    }

    pub(super) fn config(&self) -> Result<Config, Error> {
        let bad = |option, found, expected| Error::InvalidOption {
            option,
            found,
            expected,
        };
        if !(1..=MAX_SUBSCRIBERS).contains(&self.max_subscribers) {
            return Err(bad(
                "broadcast max_subscribers",
                self.max_subscribers.into(),
                "1 to 1024",
            ));
        }
        if !self.slots.is_power_of_two() || !(2..=MAX_SLOTS).contains(&self.slots) {
            return Err(bad(
                "broadcast slots",
                self.slots,
                "a power of two from 2 to 2^24",
            ));
        }
        if self.evict_timeout > MAX_EVICT_TIMEOUT {
            return Err(bad(
                "broadcast evict_timeout (ns)",
                u64::try_from(self.evict_timeout.as_nanos()).unwrap_or(u64::MAX),
                "at most one hour",
            ));
        }
        let max_message = self.max_message.unwrap_or(4096 - SLOT_HEADER);
        let schema = match self.schema {
            Some(s) => s?,
            None => bytes_schema(),
        };
        let cfg = Config {
            mode: self.mode,
            slots: self.slots,
            slot_size: slot_size(max_message).ok_or(bad(
                "broadcast max_message",
                max_message,
                "a size whose slots fit in 2^64 bytes",
            ))?,
            max_message,
            max_subscribers: self.max_subscribers,
            evict_timeout: self.evict_timeout,
            relayed: self.relayed,
            schema,
        };
        cfg.payload_len().ok_or(bad(
            "broadcast max_message",
            max_message,
            "a size whose slots fit in 2^64 bytes",
        ))?;
        Ok(cfg)
    }

    /// The segment size (header included) these options need: what to ask a backend for.
    pub fn segment_len(&self) -> Result<u64, Error> {
        let p = self.config()?.payload_len().expect("checked by config");
        p.checked_add(crate::format::layout::PAYLOAD_OFFSET as u64)
            .ok_or(Error::InvalidOption {
                option: "broadcast max_message",
                found: self.max_message.unwrap_or(0),
                expected: "a size whose slots fit in 2^64 bytes",
            })
    }
}

pub(super) fn bytes_schema() -> Schema {
    Schema::new("bytes", 1, 0, 1).expect("short name")
}

pub(super) fn slot_size(max_message: u64) -> Option<u64> {
    max_message
        .checked_add(SLOT_HEADER + 63)
        .map(|s| s / 64 * 64)
}

/// The validated shape of a broadcast segment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Config {
    pub(super) mode: BroadcastMode,
    pub(super) slots: u64,
    pub(super) slot_size: u64,
    pub(super) max_message: u64,
    pub(super) max_subscribers: u32,
    pub(super) evict_timeout: Duration,
    pub(super) relayed: bool,
    pub(super) schema: Schema,
}

impl Config {
    pub(super) fn slots_at(&self) -> u64 {
        MEMBERS_AT + LINE * u64::from(self.max_subscribers)
    }
    pub(super) fn payload_len(&self) -> Option<u64> {
        self.slots
            .checked_mul(self.slot_size)?
            .checked_add(self.slots_at())
    }
}

pub(super) fn expect(kind_schema: Schema, min_payload: u64, any_schema: bool) -> Expect {
    Expect {
        kind: Kind::Broadcast,
        schema: kind_schema,
        min_payload,
        any_schema,
    }
}
