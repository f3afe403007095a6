//! The wire format: what a bridge puts on Zenoh, byte by byte, so that a program in
//! another language can produce or consume an exported stream.
//!
//! All integers are **little-endian** (a stream crosses machines).
//!
//! ## Data samples, on the key `K`
//!
//! One Zenoh `put` per message. The **payload** is the message's bytes exactly as the
//! local publisher published them (a record's C layout for a typed broadcast). The
//! **attachment** is a 32-byte header:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `magic`: `b"SHMZ"` |
//! | 4 | 2 | `wire_version`: `1` |
//! | 6 | 1 | `mode`: `1` reliable, `2` lossy (the source broadcast's) |
//! | 7 | 1 | `flags`: bit 0 `END`: the source closed; no payload, `number` = messages it published. Other bits 0 |
//! | 8 | 8 | `exporter`: the exporter's identity, random per exporter start |
//! | 16 | 8 | `number`: the message's number in the source broadcast (0, 1, 2, … from its first message) |
//! | 24 | 8 | `schema`: the [`fingerprint`] of the record schema |
//!
//! An importer delivers a sample only if all of it checks out: magic, version, a mode
//! equal to its local broadcast's, no unknown flag, the schema fingerprint of its local
//! broadcast, a payload no longer than its local `max_message`, and a `number` not below
//! the next one it expects from that exporter. A `number` above it means messages were
//! lost (a lossy drop, a reconnect, an exporter restart): the importer's subscribers get
//! `Lagged { missed }` with the exact difference, never a re-delivery or a reordering.
//!
//! ## Liveliness token, on `K/@shm/<descriptor>`
//!
//! Each exporter declares one Zenoh liveliness token while it runs; `<descriptor>` is
//! the lower-case hex of these 88 bytes (176 characters):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `magic`: `b"SHMZ"` |
//! | 4 | 2 | `wire_version`: `1` |
//! | 6 | 1 | `mode`: `1` reliable, `2` lossy |
//! | 7 | 1 | `0` |
//! | 8 | 8 | `exporter` (as in the samples) |
//! | 16 | 8 | `max_message`: the source broadcast's largest message |
//! | 24 | 4 | `schema_version` |
//! | 28 | 1 | `schema_name_len`: at most 40 |
//! | 29 | 3 | `0` |
//! | 32 | 8 | `schema_size`: the record's size (0 for untyped messages) |
//! | 40 | 8 | `schema_align` |
//! | 48 | 40 | `schema_name`: UTF-8, zero-padded (`"bytes"` for untyped messages) |
//!
//! ## Recovery queries, on `K/@shm/cache/<exporter>`
//!
//! A reliable exporter with a cache declares a Zenoh queryable on
//! `K/@shm/cache/<exporter>` (`<exporter>`: 16 lower-case hex digits). A query with the
//! parameter `from=<n>` (decimal) is answered with one reply per cached message numbered
//! `n` or later, oldest first, each exactly as its data sample was (payload and 32-byte
//! attachment). An importer that sees the numbers of its exporter jump, or sees the
//! exporter's token come back after a cut, asks from the next number it expects; it
//! checks each reply as it checks a sample and reports what the cache no longer held as
//! `Lagged`.
//!
//! The [`fingerprint`] of a schema is the 64-bit FNV-1a hash of bytes 24..88 of its
//! descriptor. The `@shm` chunk is verbatim (it starts with `@`): wildcards on `K/**` do
//! not match it, so the tokens never mix with data.

use shm_core::{BroadcastMode, Schema};

/// `b"SHMZ"`.
pub const MAGIC: [u8; 4] = *b"SHMZ";
/// The wire format's version.
pub const WIRE_VERSION: u16 = 1;
/// Bytes in a data sample's attachment.
pub const HEADER_LEN: usize = 32;
/// Bytes in a descriptor (before hex encoding).
pub const DESCRIPTOR_LEN: usize = 88;
/// Sample flag: the source closed.
pub const FLAG_END: u8 = 1;
/// The key chunk under which exporters declare their liveliness tokens.
pub const TOKEN_CHUNK: &str = "@shm";

/// The key of an exporter's recovery queryable: `key/@shm/cache/<exporter as 16 hex>`.
pub fn cache_key(key: &str, exporter: u64) -> String {
    format!("{key}/{TOKEN_CHUNK}/cache/{exporter:016x}")
}

/// The header in a data sample's attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleHeader {
    /// The source broadcast's mode.
    pub mode: BroadcastMode,
    /// [`FLAG_END`] or 0.
    pub flags: u8,
    /// The exporter's identity.
    pub exporter: u64,
    /// The message's number in the source broadcast.
    pub number: u64,
    /// The schema's [`fingerprint`].
    pub schema: u64,
}

/// Why a sample was not delivered (each has its own counter in
/// [`ImportStats`](crate::ImportStats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// No attachment, or one that is not 32 bytes.
    Header,
    /// Wrong magic or version.
    Magic,
    /// A mode other than the local broadcast's, or an unknown flag.
    Mode,
    /// Another record schema.
    Schema,
    /// A payload longer than the local `max_message` (or an `END` with a payload).
    TooLong,
    /// A number below the next one expected from that exporter.
    Regressing,
    /// From an exporter other than the live one the importer follows.
    Foreign,
    /// A message a recovery from the exporter's cache already delivered, arriving live
    /// (not an error: counted as a duplicate, not as rejected).
    Duplicate,
}

fn mode_code(mode: BroadcastMode) -> u8 {
    match mode {
        BroadcastMode::Reliable => 1,
        BroadcastMode::Lossy => 2,
    }
}

fn mode_of(code: u8) -> Option<BroadcastMode> {
    match code {
        1 => Some(BroadcastMode::Reliable),
        2 => Some(BroadcastMode::Lossy),
        _ => None,
    }
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

impl SampleHeader {
    /// The 32 bytes of the attachment.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&WIRE_VERSION.to_le_bytes());
        b[6] = mode_code(self.mode);
        b[7] = self.flags;
        b[8..16].copy_from_slice(&self.exporter.to_le_bytes());
        b[16..24].copy_from_slice(&self.number.to_le_bytes());
        b[24..32].copy_from_slice(&self.schema.to_le_bytes());
        b
    }

    /// Parses an attachment.
    ///
    /// # Errors
    /// [`Reject::Header`], [`Reject::Magic`], [`Reject::Mode`].
    pub fn decode(b: &[u8]) -> Result<SampleHeader, Reject> {
        if b.len() != HEADER_LEN {
            return Err(Reject::Header);
        }
        if b[0..4] != MAGIC || u16::from_le_bytes([b[4], b[5]]) != WIRE_VERSION {
            return Err(Reject::Magic);
        }
        let mode = mode_of(b[6]).ok_or(Reject::Mode)?;
        if b[7] & !FLAG_END != 0 {
            return Err(Reject::Mode);
        }
        Ok(SampleHeader {
            mode,
            flags: b[7],
            exporter: u64_at(b, 8),
            number: u64_at(b, 16),
            schema: u64_at(b, 24),
        })
    }
}

/// What an exporter announces in its liveliness token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// The exporter's identity.
    pub exporter: u64,
    /// The source broadcast's mode.
    pub mode: BroadcastMode,
    /// The source broadcast's largest message.
    pub max_message: u64,
    /// The record schema.
    pub schema: Schema,
}

impl Descriptor {
    /// The 88 bytes.
    pub fn encode(&self) -> [u8; DESCRIPTOR_LEN] {
        let mut b = [0u8; DESCRIPTOR_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&WIRE_VERSION.to_le_bytes());
        b[6] = mode_code(self.mode);
        b[8..16].copy_from_slice(&self.exporter.to_le_bytes());
        b[16..24].copy_from_slice(&self.max_message.to_le_bytes());
        b[24..88].copy_from_slice(&schema_bytes(&self.schema));
        b
    }

    /// Parses 88 bytes.
    pub fn decode(b: &[u8]) -> Option<Descriptor> {
        if b.len() != DESCRIPTOR_LEN
            || b[0..4] != MAGIC
            || u16::from_le_bytes([b[4], b[5]]) != WIRE_VERSION
            || b[7] != 0
        {
            return None;
        }
        let mode = mode_of(b[6])?;
        let name_len = usize::from(b[28]);
        if name_len > 40 || b[29..32] != [0, 0, 0] {
            return None;
        }
        let name = std::str::from_utf8(&b[48..48 + name_len]).ok()?;
        let schema = Schema::new(
            name,
            u32::from_le_bytes(b[24..28].try_into().expect("4 bytes")),
            u64_at(b, 32),
            u64_at(b, 40),
        )
        .ok()?;
        Some(Descriptor {
            exporter: u64_at(b, 8),
            mode,
            max_message: u64_at(b, 16),
            schema,
        })
    }

    /// The token key under `key`: `key/@shm/<hex>`.
    pub fn token_key(&self, key: &str) -> String {
        let mut s = String::with_capacity(key.len() + 6 + 2 * DESCRIPTOR_LEN);
        s.push_str(key);
        s.push('/');
        s.push_str(TOKEN_CHUNK);
        s.push('/');
        for byte in self.encode() {
            s.push_str(&format!("{byte:02x}"));
        }
        s
    }

    /// Splits a token key into the exported key and the descriptor.
    pub fn from_token_key(token: &str) -> Option<(String, Descriptor)> {
        let marker = format!("/{TOKEN_CHUNK}/");
        let at = token.rfind(&marker)?;
        let hex = &token[at + marker.len()..];
        if hex.len() != 2 * DESCRIPTOR_LEN {
            return None;
        }
        let mut b = [0u8; DESCRIPTOR_LEN];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some((token[..at].to_owned(), Descriptor::decode(&b)?))
    }
}

/// Bytes 24..88 of a descriptor: the schema part.
fn schema_bytes(s: &Schema) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0..4].copy_from_slice(&s.version().to_le_bytes());
    let name = s.name().as_bytes();
    b[4] = name.len() as u8; // at most 40: a `Schema` holds no longer name
    b[8..16].copy_from_slice(&s.size().to_le_bytes());
    b[16..24].copy_from_slice(&s.align().to_le_bytes());
    b[24..24 + name.len()].copy_from_slice(name);
    b
}

/// The 64-bit FNV-1a hash of a schema's 64 descriptor bytes (offsets 24..88).
pub fn fingerprint(s: &Schema) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema_bytes(s) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_descriptors_round_trip_and_reject_garbage() {
        let s = Schema::new("MyData", 3, 12, 4).unwrap();
        let h = SampleHeader {
            mode: BroadcastMode::Lossy,
            flags: FLAG_END,
            exporter: 0x1122_3344_5566_7788,
            number: 42,
            schema: fingerprint(&s),
        };
        assert_eq!(SampleHeader::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[0] = b'X';
        assert_eq!(SampleHeader::decode(&bad), Err(Reject::Magic));
        let mut bad = h.encode();
        bad[6] = 9;
        assert_eq!(SampleHeader::decode(&bad), Err(Reject::Mode));
        let mut bad = h.encode();
        bad[7] = 0x80;
        assert_eq!(SampleHeader::decode(&bad), Err(Reject::Mode));
        assert_eq!(SampleHeader::decode(&h.encode()[..31]), Err(Reject::Header));
        assert_eq!(SampleHeader::decode(&[]), Err(Reject::Header));

        let d = Descriptor {
            exporter: 7,
            mode: BroadcastMode::Reliable,
            max_message: 4096,
            schema: s,
        };
        let key = d.token_key("shm/cam");
        assert!(key.starts_with("shm/cam/@shm/"));
        assert_eq!(
            Descriptor::from_token_key(&key),
            Some(("shm/cam".into(), d))
        );
        assert_eq!(Descriptor::from_token_key("shm/cam/@shm/00"), None);
        let mut raw = d.encode();
        raw[28] = 41;
        assert_eq!(Descriptor::decode(&raw), None);
        // The fingerprint tells schemas apart by every field.
        let others = [
            Schema::new("MyData", 4, 12, 4).unwrap(),
            Schema::new("MyData", 3, 16, 4).unwrap(),
            Schema::new("MyData", 3, 12, 8).unwrap(),
            Schema::new("MyDatb", 3, 12, 4).unwrap(),
        ];
        for o in others {
            assert_ne!(fingerprint(&o), fingerprint(&s), "{o:?}");
        }
    }
}
