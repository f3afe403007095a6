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
//! | 7 | 1 | `kind`: `0` a broadcast, `1` a channel (one importer; reliable) |
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
//! attachment). An importer that sees the numbers of its exporter jump, sees the
//! exporter's token come back after a cut, or has had nothing from its live exporter for
//! a second, asks from the next number it expects; it
//! checks each reply as it checks a sample and reports what the cache no longer held as
//! `Lagged`.
//!
//! ## Services, on the key `S`
//!
//! A service exporter declares a Zenoh queryable on `S` (complete: one exporter answers
//! a query whole) and a liveliness token `S/@shm/svc/<hex>`, `<hex>` being the lower-case
//! hex of a [`ServiceDescriptor`]'s 152 bytes:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `magic`: `b"SHMZ"` |
//! | 4 | 2 | `wire_version`: `1` |
//! | 6 | 1 | `3` (a service) |
//! | 7 | 1 | `0` |
//! | 8 | 8 | `exporter`: random per exporter start |
//! | 16 | 4 | `max_request` |
//! | 20 | 4 | `max_response` |
//! | 24 | 64 | the request schema, as bytes 24..88 of a descriptor; all zero: untyped |
//! | 88 | 64 | the response schema, the same way |
//!
//! One call is one Zenoh query: its **payload** is the request's bytes, its
//! **attachment** 16 bytes: `b"SHMQ"`, `wire_version` (2), flags (2; bit 0: idempotent),
//! and the time left to the request's deadline in nanoseconds (8; 0: none), which the
//! exporter gives the request it sends to its local servers. Each response is one reply:
//! payload the response's bytes, attachment 8 bytes: `b"SHMR"`, then `1` (more may
//! follow) or `2` (the last), then three zero bytes. A call that fails is one error
//! reply of 12 bytes: `b"SHME"`, a kind (`1`: the server answered with the error code
//! that follows; `2`: the server died holding the request, its pid follows; `3`: the
//! server dropped it unanswered; `4`: the request was refused: too large, malformed, no
//! slot before its deadline), three zero bytes, and the code (or pid; 4).
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

/// Bytes in a service descriptor (before hex encoding).
pub const SERVICE_DESCRIPTOR_LEN: usize = 152;
/// The key chunk after `@shm` under which service exporters declare their tokens.
pub const SERVICE_CHUNK: &str = "svc";
/// Bytes in a call's attachment.
pub const QUERY_HEADER_LEN: usize = 16;
/// Bytes in a response's attachment.
pub const REPLY_HEADER_LEN: usize = 8;
/// Bytes in an error reply.
pub const ERROR_LEN: usize = 12;

/// What a service exporter announces in its liveliness token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDescriptor {
    /// The exporter's identity.
    pub exporter: u64,
    /// The largest request.
    pub max_request: u32,
    /// The largest response.
    pub max_response: u32,
    /// The request record's schema (None: bytes).
    pub request: Option<Schema>,
    /// The response record's schema (None: bytes).
    pub response: Option<Schema>,
}

impl ServiceDescriptor {
    /// The 152 bytes.
    pub fn encode(&self) -> [u8; SERVICE_DESCRIPTOR_LEN] {
        let mut b = [0u8; SERVICE_DESCRIPTOR_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&WIRE_VERSION.to_le_bytes());
        b[6] = 3;
        b[8..16].copy_from_slice(&self.exporter.to_le_bytes());
        b[16..20].copy_from_slice(&self.max_request.to_le_bytes());
        b[20..24].copy_from_slice(&self.max_response.to_le_bytes());
        if let Some(s) = &self.request {
            b[24..88].copy_from_slice(&schema_bytes(s));
        }
        if let Some(s) = &self.response {
            b[88..152].copy_from_slice(&schema_bytes(s));
        }
        b
    }

    /// Parses 152 bytes.
    pub fn decode(b: &[u8]) -> Option<ServiceDescriptor> {
        if b.len() != SERVICE_DESCRIPTOR_LEN
            || b[0..4] != MAGIC
            || u16::from_le_bytes([b[4], b[5]]) != WIRE_VERSION
            || b[6] != 3
            || b[7] != 0
        {
            return None;
        }
        let schema = |part: &[u8]| -> Option<Option<Schema>> {
            if part.iter().all(|&x| x == 0) {
                Some(None)
            } else {
                schema_of(part).map(Some)
            }
        };
        Some(ServiceDescriptor {
            exporter: u64_at(b, 8),
            max_request: u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")),
            max_response: u32::from_le_bytes(b[20..24].try_into().expect("4 bytes")),
            request: schema(&b[24..88])?,
            response: schema(&b[88..152])?,
        })
    }

    /// The token key under `key`: `key/@shm/svc/<hex>`.
    pub fn token_key(&self, key: &str) -> String {
        format!(
            "{key}/{TOKEN_CHUNK}/{SERVICE_CHUNK}/{}",
            hex(&self.encode())
        )
    }

    /// Splits a token key into the service's key and the descriptor.
    pub fn from_token_key(token: &str) -> Option<(String, ServiceDescriptor)> {
        let marker = format!("/{TOKEN_CHUNK}/{SERVICE_CHUNK}/");
        let at = token.rfind(&marker)?;
        let mut b = [0u8; SERVICE_DESCRIPTOR_LEN];
        unhex(&token[at + marker.len()..], &mut b)?;
        Some((token[..at].to_owned(), ServiceDescriptor::decode(&b)?))
    }
}

/// A call's attachment: the time left to its deadline (0: none) and whether it is
/// idempotent.
pub fn encode_query(timeout_ns: u64, idempotent: bool) -> [u8; QUERY_HEADER_LEN] {
    let mut b = [0u8; QUERY_HEADER_LEN];
    b[0..4].copy_from_slice(b"SHMQ");
    b[4..6].copy_from_slice(&WIRE_VERSION.to_le_bytes());
    b[6..8].copy_from_slice(&u16::from(idempotent).to_le_bytes());
    b[8..16].copy_from_slice(&timeout_ns.to_le_bytes());
    b
}

/// Parses a call's attachment: `(timeout_ns, idempotent)`.
pub fn decode_query(b: &[u8]) -> Option<(u64, bool)> {
    if b.len() != QUERY_HEADER_LEN
        || &b[0..4] != b"SHMQ"
        || u16::from_le_bytes([b[4], b[5]]) != WIRE_VERSION
    {
        return None;
    }
    let flags = u16::from_le_bytes([b[6], b[7]]);
    if flags & !1 != 0 {
        return None;
    }
    Some((u64_at(b, 8), flags & 1 != 0))
}

/// A response's attachment.
pub fn encode_reply(last: bool) -> [u8; REPLY_HEADER_LEN] {
    let mut b = [0u8; REPLY_HEADER_LEN];
    b[0..4].copy_from_slice(b"SHMR");
    b[4] = if last { 2 } else { 1 };
    b
}

/// Parses a response's attachment: whether it is the last.
pub fn decode_reply(b: &[u8]) -> Option<bool> {
    if b.len() != REPLY_HEADER_LEN || &b[0..4] != b"SHMR" || b[5..8] != [0, 0, 0] {
        return None;
    }
    match b[4] {
        1 => Some(false),
        2 => Some(true),
        _ => None,
    }
}

/// Why a call across the bridge failed on the exporter's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteError {
    /// The remote server answered with this error code.
    Server(u32),
    /// The remote server, this process on the exporter's host, died holding the request.
    PeerDied(u32),
    /// The remote server dropped the request unanswered.
    Closed,
    /// The exporter refused the request (too large, malformed, no slot in time).
    Refused,
}

/// An error reply's payload.
pub fn encode_error(e: RemoteError) -> [u8; ERROR_LEN] {
    let (kind, code) = match e {
        RemoteError::Server(c) => (1, c),
        RemoteError::PeerDied(pid) => (2, pid),
        RemoteError::Closed => (3, 0),
        RemoteError::Refused => (4, 0),
    };
    let mut b = [0u8; ERROR_LEN];
    b[0..4].copy_from_slice(b"SHME");
    b[4] = kind;
    b[8..12].copy_from_slice(&code.to_le_bytes());
    b
}

/// Parses an error reply's payload.
pub fn decode_error(b: &[u8]) -> Option<RemoteError> {
    if b.len() != ERROR_LEN || &b[0..4] != b"SHME" || b[5..8] != [0, 0, 0] {
        return None;
    }
    let code = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
    match b[4] {
        1 => Some(RemoteError::Server(code)),
        2 => Some(RemoteError::PeerDied(code)),
        3 => Some(RemoteError::Closed),
        4 => Some(RemoteError::Refused),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

fn unhex(hex: &str, out: &mut [u8]) -> Option<()> {
    if hex.len() != 2 * out.len() {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

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

/// What an export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A broadcast: any number of importers, each with its own subscribers.
    Broadcast,
    /// A channel: one importer, one receiver on the far side, back-pressure end to end.
    Channel,
}

/// What an exporter announces in its liveliness token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Broadcast or channel.
    pub kind: Kind,
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
        b[7] = match self.kind {
            Kind::Broadcast => 0,
            Kind::Channel => 1,
        };
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
        {
            return None;
        }
        let kind = match b[7] {
            0 => Kind::Broadcast,
            1 => Kind::Channel,
            _ => return None,
        };
        let mode = mode_of(b[6])?;
        let schema = schema_of(&b[24..88])?;
        Some(Descriptor {
            kind,
            exporter: u64_at(b, 8),
            mode,
            max_message: u64_at(b, 16),
            schema,
        })
    }

    /// The token key under `key`: `key/@shm/<hex>`.
    pub fn token_key(&self, key: &str) -> String {
        format!("{key}/{TOKEN_CHUNK}/{}", hex(&self.encode()))
    }

    /// Splits a token key into the exported key and the descriptor.
    pub fn from_token_key(token: &str) -> Option<(String, Descriptor)> {
        let marker = format!("/{TOKEN_CHUNK}/");
        let at = token.rfind(&marker)?;
        let mut b = [0u8; DESCRIPTOR_LEN];
        unhex(&token[at + marker.len()..], &mut b)?;
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

/// The schema in 64 bytes laid out as [`schema_bytes`] writes them.
fn schema_of(b: &[u8]) -> Option<Schema> {
    let name_len = usize::from(b[4]);
    if name_len > 40 || b[5..8] != [0, 0, 0] {
        return None;
    }
    let name = std::str::from_utf8(&b[24..24 + name_len]).ok()?;
    Schema::new(
        name,
        u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
        u64_at(b, 8),
        u64_at(b, 16),
    )
    .ok()
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
            kind: Kind::Broadcast,
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
        let c = Descriptor {
            kind: Kind::Channel,
            ..d
        };
        assert_eq!(Descriptor::decode(&c.encode()), Some(c));
        let mut raw = c.encode();
        raw[7] = 2;
        assert_eq!(Descriptor::decode(&raw), None);
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
