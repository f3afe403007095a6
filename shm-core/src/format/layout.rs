//! The segment layout, version 1: a fixed 128-byte header at offset 0 of every segment.
//!
//! The layout is meant to be read by programs in any language, so here it is byte by byte.
//! All integers are in the host's native byte order (little-endian on x86-64 and
//! aarch64); a segment is never shared across machines.
//!
//! | offset | size | field            | meaning                                                        |
//! |-------:|-----:|------------------|----------------------------------------------------------------|
//! |      0 |    8 | `magic`          | `b"SHMCORE\0"`                                                 |
//! |      8 |    4 | `layout_version` | `1`                                                            |
//! |     12 |    4 | `header_size`    | `128`                                                          |
//! |     16 |    8 | `segment_size`   | bytes in the whole segment; at most the mapping's length       |
//! |     24 |    8 | `payload_offset` | `128` (a multiple of 64: the payload starts on a cache line)  |
//! |     32 |    8 | `payload_len`    | exactly `segment_size - payload_offset`                        |
//! |     40 |    4 | `kind`           | `1` record, `2` seqlock record, `3` channel, `4` broadcast     |
//! |     44 |    4 | `kind_version`   | version of that kind's payload layout: record `1`, seqlock `2`, channel `3`, broadcast `2` |
//! |     48 |    8 | `schema_size`    | `size_of` the record type (0 for a channel)                    |
//! |     56 |    8 | `schema_align`   | `align_of` the record type: a power of two, at most 64         |
//! |     64 |    4 | `schema_version` | the version the program gives its record type                  |
//! |     68 |    4 | `schema_name_len`| bytes used in `schema_name`, at most 40                        |
//! |     72 |   40 | `schema_name`    | UTF-8 name of the record type (`"MyData"`), zero-padded        |
//! |    112 |    4 | `creator_pid`    | pid of the process that created the segment                    |
//! |    116 |    4 | `flags`          | `0` (reserved)                                                 |
//! |    120 |    4 | `ready`          | `0` while initialising, then `0x5245_4459` (`b"YDER"` in LE)   |
//! |    124 |    4 | `reserved`       | `0`                                                            |
//!
//! ## Reading a segment from another language
//!
//! Everything a reader needs is on this page; `shm-demo/tests/peers/layout_reader.c` is a
//! C reader written from it alone, and the test suite runs it against our segments.
//!
//! 1. Open and map the segment (`shm_open` + `fstat` + `mmap`, read-only is enough to
//!    read); the mapped length is the file's size. Fewer than 128 bytes: not a segment.
//! 2. Load `ready` (4 bytes at offset 120) with **acquire** ordering (C11
//!    `atomic_load_explicit(..., memory_order_acquire)`): it pairs with the creator's
//!    release store. `0` means the creator is still initialising (retry for a while, then
//!    give up); `0x5245_4459` means ready; any other value is corrupt.
//! 3. Copy the 128 header bytes **once** into private memory and check only that copy,
//!    in this order: `magic`, `layout_version == 1`, `header_size == 128`,
//!    `128 <= segment_size <= mapped length`, `payload_offset == 128`,
//!    `payload_len == segment_size - 128`, `kind`, `kind_version` (per kind, below),
//!    then the record schema: `schema_size` and `schema_align` equal to your type's
//!    `sizeof` and `_Alignof`, `schema_version`, and `schema_name_len` bytes of
//!    `schema_name` equal to your type's name. A peer may rewrite the header at any time;
//!    never read it again after the check.
//! 4. Copy the record out of the payload at `payload_offset`; it is the C layout of the
//!    type (`#[repr(C)]` on the Rust side), in native byte order. Other processes may be
//!    writing it: a plain copy can mix two writes (use a seqlock segment, kind 2, for
//!    consistent snapshots: copy `seq` (acquire), the record, `seq` again, and keep the
//!    copy only if both are equal and even).
//!
//! Segments made by programs that do not speak this layout (no header, the record at
//! offset 0, as the tutorial's writer and Python's `multiprocessing.shared_memory` make
//! them) are read with [`Segment::attach_foreign`](crate::format::record::Segment::attach_foreign).
//!
//! ## Payload kinds
//!
//! * **Record (1)**: the record at `payload_offset`, followed by free bytes to the end of
//!   the segment (reachable with `read_at` / `write_at`).
//! * **Seqlock record (2)**, kind version 2: at `payload_offset`: `seq: u64` (even =
//!   stable, odd = a write is in progress), `owner: u32` (the pid of the writer holding the
//!   write lock, 0 when it is free; the lock is taken by a compare-and-swap of this word
//!   from 0 to the writer's pid), zero padding to 64 bytes, then the record, padded to a
//!   multiple of 8 bytes. (Version 1 kept the last writer's pid here after the write and
//!   locked with the sequence word alone.)
//! * **Channel (3)**, kind version 2: one or two message rings; the byte layout is in
//!   the [`channel`](crate::channel) module docs. (Version 1 kept an end's pid after the
//!   end was dropped; version 2 clears it, and an end is taken once per process.)
//! * **Broadcast (4)**, kind version 1: one publisher, many subscribers; the byte layout
//!   is in the [`broadcast`](crate::broadcast) module docs. The header's schema is the
//!   record type published (`"bytes"` v1, size 0, for untyped messages).
//!
//! ## The initialisation protocol
//!
//! The creator starts from zeroed memory, writes every header field with `ready = 0`,
//! initialises the payload, and only then stores `ready` with release ordering. An
//! opener loads `ready` with acquire ordering (pairing with that store): while it is 0
//! the segment is still being built and the opener waits a bounded time, then reports
//! [`Error::NotReady`] or, if the creator's pid is gone, [`Error::CreatorDied`]. Memory
//! with no header at all (no magic, no creator pid) that no other handle holds
//! ([`SharedMemory::held_elsewhere`](crate::SharedMemory::held_elsewhere) is
//! `Some(false)`) has no creator of ours writing it: [`Error::BadMagic`] at once. Once it
//! is ready, the opener copies the 128 header bytes once and validates that copy with
//! checked arithmetic; later changes to the header by a peer are never looked at again.
//!
//! ## Who writes each header word, and what a reader does with any other value ([`HEADER_WORDS`])
//!
#![doc = include_str!("header_words.md")]

use std::time::Duration;

use crate::format::error::Error;
use crate::format::schema::{Kind, Schema, SCHEMA_NAME_MAX};

/// The first eight bytes of every segment.
pub const MAGIC: [u8; 8] = *b"SHMCORE\0";
/// The layout version this build writes and accepts.
pub const LAYOUT_VERSION: u32 = 1;
/// Bytes in the header.
pub const HEADER_SIZE: usize = 128;
/// Where the payload starts.
pub const PAYLOAD_OFFSET: usize = 128;
/// The payload's alignment (a cache line), and the largest record alignment allowed.
pub const PAYLOAD_ALIGN: usize = 64;
/// The value of `ready` once the segment is fully initialised.
pub const READY: u32 = 0x5245_4459;
/// Offset of the `ready` word within the header.
pub const READY_OFFSET: usize = 120;

const ATTACH_REFUSES: &str = "attach refuses the segment with a typed error (`BadMagic`, `UnsupportedVersion`, `CorruptHeader`, `Truncated`, `KindMismatch`, `SchemaMismatch`, ...); ends already attached keep what they read and validated at attach";

/// Every header word another process can write (the whole header: see
/// [`crate::format::words`]). The creator writes it once, before `ready`; every attach
/// validates it.
pub const HEADER_WORDS: &[crate::format::words::Word] = {
    use crate::format::words::{Region::Header as H, Word};
    const C: &str = "the creator, once, before `ready`";
    &[
        Word { name: "magic", region: H, offset: 0, width: 8, writer: C, honest: "`SHMCORE\\0`", otherwise: ATTACH_REFUSES },
        Word { name: "layout_version", region: H, offset: 8, width: 4, writer: C, honest: "1", otherwise: ATTACH_REFUSES },
        Word { name: "header_size", region: H, offset: 12, width: 4, writer: C, honest: "128", otherwise: ATTACH_REFUSES },
        Word { name: "segment_size", region: H, offset: 16, width: 8, writer: C, honest: "at most the mapping's length", otherwise: ATTACH_REFUSES },
        Word { name: "payload_offset", region: H, offset: 24, width: 8, writer: C, honest: "128", otherwise: ATTACH_REFUSES },
        Word { name: "payload_len", region: H, offset: 32, width: 8, writer: C, honest: "`segment_size - payload_offset`", otherwise: ATTACH_REFUSES },
        Word { name: "kind", region: H, offset: 40, width: 4, writer: C, honest: "1 to 4", otherwise: ATTACH_REFUSES },
        Word { name: "kind_version", region: H, offset: 44, width: 4, writer: C, honest: "the kind's version", otherwise: ATTACH_REFUSES },
        Word { name: "schema_size", region: H, offset: 48, width: 8, writer: C, honest: "the record's size", otherwise: ATTACH_REFUSES },
        Word { name: "schema_align", region: H, offset: 56, width: 8, writer: C, honest: "a power of two, at most 64", otherwise: ATTACH_REFUSES },
        Word { name: "schema_version", region: H, offset: 64, width: 4, writer: C, honest: "the program's version of its record", otherwise: ATTACH_REFUSES },
        Word { name: "schema_name_len", region: H, offset: 68, width: 4, writer: C, honest: "at most 40", otherwise: ATTACH_REFUSES },
        Word { name: "schema_name", region: H, offset: 72, width: 40, writer: C, honest: "UTF-8, zero-padded", otherwise: ATTACH_REFUSES },
        Word { name: "creator_pid", region: H, offset: 112, width: 4, writer: C, honest: "the creator's pid", otherwise: "only read while `ready` is 0: a dead or impossible pid is `CreatorDied`, anything else `NotReady` at the ready timeout" },
        Word { name: "flags", region: H, offset: 116, width: 4, writer: C, honest: "0", otherwise: ATTACH_REFUSES },
        Word { name: "ready", region: H, offset: 120, width: 4, writer: C, honest: "0 while initialising, then `0x5245_4459`", otherwise: "0: attach waits its ready timeout (`NotReady` / `CreatorDied`), except with no magic, no creator pid and no other handle holding the memory (`SharedMemory::held_elsewhere`): `BadMagic` at once; any other value: `CorruptHeader`" },
        Word { name: "reserved", region: H, offset: 124, width: 4, writer: C, honest: "0", otherwise: ATTACH_REFUSES },
    ]
};

/// The header, as copied out of a segment. See the [module docs](self) for the layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[allow(missing_docs)] // each field is documented in the table above
pub struct Header {
    pub magic: [u8; 8],
    pub layout_version: u32,
    pub header_size: u32,
    pub segment_size: u64,
    pub payload_offset: u64,
    pub payload_len: u64,
    pub kind: u32,
    pub kind_version: u32,
    pub schema_size: u64,
    pub schema_align: u64,
    pub schema_version: u32,
    pub schema_name_len: u32,
    pub schema_name: [u8; SCHEMA_NAME_MAX],
    pub creator_pid: u32,
    pub flags: u32,
    pub ready: u32,
    pub reserved: u32,
}

const _: () = {
    assert!(std::mem::size_of::<Header>() == HEADER_SIZE);
    assert!(std::mem::offset_of!(Header, ready) == READY_OFFSET);
    assert!(std::mem::offset_of!(Header, creator_pid) == 112);
    assert!(std::mem::offset_of!(Header, schema_name) == 72);
    assert!(PAYLOAD_OFFSET.is_multiple_of(PAYLOAD_ALIGN) && PAYLOAD_OFFSET >= HEADER_SIZE);
};

impl Schema {
    /// A schema; fails if `name` is longer than [`SCHEMA_NAME_MAX`] bytes.
    ///
    /// # Errors
    /// [`Error::SchemaName`].
    pub fn new(name: &str, version: u32, size: u64, align: u64) -> Result<Schema, Error> {
        let bytes = name.as_bytes();
        if bytes.len() > SCHEMA_NAME_MAX {
            return Err(Error::SchemaName {
                max: SCHEMA_NAME_MAX,
                found: bytes.len(),
            });
        }
        Ok(Schema::from_parts(bytes, version, size, align))
    }

    pub(crate) fn from_header(h: &Header) -> Result<Schema, Error> {
        let len = h.schema_name_len as usize;
        if len > SCHEMA_NAME_MAX {
            return Err(corrupt(
                "schema_name_len",
                h.schema_name_len.into(),
                "at most 40",
            ));
        }
        let name = std::str::from_utf8(&h.schema_name[..len])
            .map_err(|_| corrupt("schema_name", len as u64, "valid UTF-8"))?;
        if h.schema_name[len..].iter().any(|&b| b != 0) {
            return Err(corrupt(
                "schema_name",
                len as u64,
                "zero padding after the name",
            ));
        }
        Schema::new(name, h.schema_version, h.schema_size, h.schema_align)
    }
}

/// How long an attach waits, and for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachOptions {
    pub(crate) ready_timeout: Duration,
    pub(crate) writer_timeout: Duration,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            ready_timeout: Duration::from_secs(1),
            writer_timeout: Duration::from_secs(1),
        }
    }
}

impl AttachOptions {
    /// The defaults: wait up to 1 s for a segment to become ready, and up to 1 s for a
    /// seqlock writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// How long to wait for a segment whose creator is still initialising it.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
    /// How long a seqlock reader or writer waits for a writer that holds the lock before
    /// reporting [`Error::WriterStuck`] or [`Error::WriterDied`].
    pub fn writer_timeout(mut self, timeout: Duration) -> Self {
        self.writer_timeout = timeout;
        self
    }
}

/// What an attach expects to find.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect {
    pub kind: Kind,
    pub schema: Schema,
    /// Payload bytes the kind needs.
    pub min_payload: u64,
    /// Accept whatever record schema the segment declares (a broadcast read as bytes).
    pub any_schema: bool,
}

fn corrupt(field: &'static str, found: u64, expected: &'static str) -> Error {
    Error::CorruptHeader {
        field,
        found,
        expected,
    }
}

/// Builds the header a creator writes for memory of `segment_size` bytes.
pub(crate) fn build_header(segment_size: u64, expect: &Expect, creator_pid: u32) -> Header {
    let s = &expect.schema;
    let mut name = [0u8; SCHEMA_NAME_MAX];
    let len = s.name().len();
    name[..len].copy_from_slice(s.name().as_bytes());
    Header {
        magic: MAGIC,
        layout_version: LAYOUT_VERSION,
        header_size: HEADER_SIZE as u32,
        segment_size,
        payload_offset: PAYLOAD_OFFSET as u64,
        payload_len: segment_size - PAYLOAD_OFFSET as u64,
        kind: expect.kind as u32,
        kind_version: expect.kind.version(),
        schema_size: s.size(),
        schema_align: s.align(),
        schema_version: s.version(),
        schema_name_len: len as u32,
        schema_name: name,
        creator_pid,
        flags: 0,
        ready: 0,
        reserved: 0,
    }
}

/// Checks that the creator can lay `expect` into `mem_len` bytes.
pub(crate) fn check_fits(mem_len: u64, expect: &Expect) -> Result<(), Error> {
    if expect.schema.align() > PAYLOAD_ALIGN as u64 {
        return Err(Error::Alignment {
            max: PAYLOAD_ALIGN as u64,
            found: expect.schema.align(),
        });
    }
    let needed = (PAYLOAD_OFFSET as u64).saturating_add(expect.min_payload);
    if mem_len < needed {
        return Err(Error::TooSmall {
            needed,
            found: mem_len,
        });
    }
    Ok(())
}

/// Validates a header snapshot copied out of a mapping of `mapped` bytes.
///
/// Every check uses checked arithmetic on values that a hostile peer may have chosen.
pub(crate) fn validate(h: &Header, mapped: u64, expect: &Expect) -> Result<(), Error> {
    if mapped < HEADER_SIZE as u64 {
        return Err(Error::TooSmall {
            needed: HEADER_SIZE as u64,
            found: mapped,
        });
    }
    if h.magic != MAGIC {
        return Err(Error::BadMagic {
            expected: MAGIC,
            found: h.magic,
        });
    }
    if h.layout_version != LAYOUT_VERSION {
        return Err(Error::UnsupportedVersion {
            expected: LAYOUT_VERSION,
            found: h.layout_version,
        });
    }
    if h.header_size as usize != HEADER_SIZE {
        return Err(corrupt("header_size", h.header_size.into(), "128"));
    }
    if h.ready != READY {
        return Err(corrupt("ready", h.ready.into(), "0x52454459 (ready)"));
    }
    if h.flags != 0 {
        return Err(corrupt("flags", h.flags.into(), "0"));
    }
    if h.reserved != 0 {
        return Err(corrupt("reserved", h.reserved.into(), "0"));
    }
    if h.segment_size > mapped {
        return Err(Error::Truncated {
            claimed: h.segment_size,
            mapped,
        });
    }
    if h.segment_size < HEADER_SIZE as u64 {
        return Err(corrupt(
            "segment_size",
            h.segment_size,
            "at least the header size (128)",
        ));
    }
    if h.payload_offset != PAYLOAD_OFFSET as u64 {
        return Err(corrupt("payload_offset", h.payload_offset, "128"));
    }
    // segment_size >= HEADER_SIZE == PAYLOAD_OFFSET was checked above: no underflow.
    if h.payload_len != h.segment_size - h.payload_offset {
        return Err(corrupt(
            "payload_len",
            h.payload_len,
            "segment_size - payload_offset",
        ));
    }
    if h.kind != expect.kind as u32 {
        return Err(Error::KindMismatch {
            expected: expect.kind,
            found: h.kind,
        });
    }
    if h.kind_version != expect.kind.version() {
        return Err(Error::KindVersion {
            kind: expect.kind,
            expected: expect.kind.version(),
            found: h.kind_version,
        });
    }
    if !h.schema_align.is_power_of_two() || h.schema_align > PAYLOAD_ALIGN as u64 {
        return Err(corrupt(
            "schema_align",
            h.schema_align,
            "a power of two, at most 64",
        ));
    }
    let found = Schema::from_header(h)?;
    if found != expect.schema && !expect.any_schema {
        return Err(Error::SchemaMismatch {
            found,
            expected: expect.schema,
        });
    }
    if h.payload_len < expect.min_payload {
        return Err(Error::PayloadTooSmall {
            kind: expect.kind,
            needed: expect.min_payload,
            found: h.payload_len,
        });
    }
    Ok(())
}
