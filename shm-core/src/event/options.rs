//! How an event segment is laid out: [`EventOptions`].

use super::layout::*;
use crate::format::error::Error;

/// How an event segment is laid out: how many ids it carries and how many notifier
/// processes it has lines for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventOptions {
    pub(super) max_ids: u32,
    pub(super) max_notifiers: u32,
}

impl Default for EventOptions {
    fn default() -> Self {
        EventOptions {
            max_ids: 64,
            max_notifiers: 16,
        }
    }
}

impl EventOptions {
    /// 64 ids, 16 notifiers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ids `0 .. max_ids` can be notified (1 to [`MAX_IDS`]; default 64).
    pub fn max_ids(mut self, max_ids: u32) -> Self {
        self.max_ids = max_ids;
        self
    }

    /// How many notifiers may hold ends at once (1 to [`MAX_NOTIFIERS`]; default 16).
    pub fn max_notifiers(mut self, max_notifiers: u32) -> Self {
        self.max_notifiers = max_notifiers;
        self
    }

    /// The ids the event carries.
    pub fn ids(&self) -> u32 {
        self.max_ids
    }

    /// The notifier lines the event has.
    pub fn notifiers(&self) -> u32 {
        self.max_notifiers
    }

    pub(super) fn check(&self) -> Result<(), Error> {
        if !(1..=MAX_IDS).contains(&self.max_ids) {
            return Err(Error::InvalidOption {
                option: "event max_ids",
                found: self.max_ids.into(),
                expected: "1 to 4096",
            });
        }
        if !(1..=MAX_NOTIFIERS).contains(&self.max_notifiers) {
            return Err(Error::InvalidOption {
                option: "event max_notifiers",
                found: self.max_notifiers.into(),
                expected: "1 to 1024",
            });
        }
        Ok(())
    }

    /// The segment size (header included) these options need: what to ask a backend for.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a `max_ids` or `max_notifiers` out of range.
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{Event, EventOptions, HeapMemory};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let opts = EventOptions::new().max_ids(256);
    /// let ev = Event::create(HeapMemory::new(opts.segment_len()? as usize), &opts)?;
    /// assert_eq!(ev.max_ids(), 256);
    /// # Ok(()) }
    /// ```
    pub fn segment_len(&self) -> Result<u64, Error> {
        self.check()?;
        Ok(
            (crate::format::layout::PAYLOAD_OFFSET + payload_len(self.max_ids, self.max_notifiers))
                as u64,
        )
    }
}
