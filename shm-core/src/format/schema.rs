//! What a segment holds and what record type it declares: [`Kind`] and [`Schema`]. A
//! leaf of the format layer (the error type names both), so it imports nothing of the
//! crate. The constructors that can fail live beside what they check:
//! [`Schema::new`] and the header's reading in [`layout`](crate::format::layout),
//! [`Schema::of`] with the [`Record`](crate::format::record::Record) trait.

use std::fmt;

/// Longest record type name a header holds.
pub const SCHEMA_NAME_MAX: usize = 40;

/// What a segment's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// A plain record ([`crate::format::record::Segment`]).
    Record = 1,
    /// A record behind a seqlock ([`crate::SeqLock`]).
    SeqLock = 2,
    /// A message channel.
    Channel = 3,
    /// A one-to-many broadcast ([`crate::Broadcast`]).
    Broadcast = 4,
    /// Payload-free notifications by id ([`crate::event::Event`]).
    Event = 5,
    /// Request/response between clients and servers ([`crate::service::Service`]).
    Service = 6,
}

impl Kind {
    /// The payload layout version of this kind that this build writes and accepts.
    pub const fn version(self) -> u32 {
        match self {
            Kind::Record => 1,
            Kind::SeqLock => 2,
            Kind::Channel => 3,
            Kind::Broadcast => 2,
            Kind::Event => 1,
            Kind::Service => 1,
        }
    }
    fn from_u32(raw: u32) -> Option<Kind> {
        match raw {
            1 => Some(Kind::Record),
            2 => Some(Kind::SeqLock),
            3 => Some(Kind::Channel),
            4 => Some(Kind::Broadcast),
            5 => Some(Kind::Event),
            6 => Some(Kind::Service),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Record => "a record",
            Kind::SeqLock => "a seqlock record",
            Kind::Channel => "a channel",
            Kind::Broadcast => "a broadcast",
            Kind::Event => "an event",
            Kind::Service => "a service",
        })
    }
}

pub(crate) fn kind_name(raw: u32) -> String {
    match Kind::from_u32(raw) {
        Some(k) => k.to_string(),
        None => format!("unknown kind {raw}"),
    }
}

/// What a record type is called, its version, size and alignment: what a writer and a
/// reader compiled as separate programs compare to agree on the type.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    name: [u8; SCHEMA_NAME_MAX],
    name_len: u8,
    version: u32,
    size: u64,
    align: u64,
}

impl Schema {
    /// A schema from its parts (`name` at most [`SCHEMA_NAME_MAX`] bytes: checked by
    /// [`Schema::new`], the public constructor).
    pub(crate) fn from_parts(name: &[u8], version: u32, size: u64, align: u64) -> Schema {
        let mut buf = [0u8; SCHEMA_NAME_MAX];
        let len = name.len().min(SCHEMA_NAME_MAX);
        buf[..len].copy_from_slice(&name[..len]);
        Schema {
            name: buf,
            name_len: len as u8,
            version,
            size,
            align,
        }
    }

    /// The record type's name.
    pub fn name(&self) -> &str {
        std::str::from_utf8(&self.name[..self.name_len as usize]).unwrap_or("<invalid utf-8>")
    }
    /// The record type's version.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// `size_of` the record type.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// `align_of` the record type.
    pub fn align(&self) -> u64 {
        self.align
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"{}\" v{} ({} bytes, align {})",
            self.name(),
            self.version,
            self.size,
            self.align
        )
    }
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
