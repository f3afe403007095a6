//! The conformance suite: tests written once, generic over [`SharedMemory`], that every
//! backend crate runs against itself with [`conformance_tests!`](crate::conformance_tests).
//!
//! ```ignore
//! // in shm-posix/tests/conformance.rs
//! shm_core::conformance_tests!(PosixBackend::default());
//! ```
#![allow(unsafe_code)]

use std::time::Duration;

use crate::format::error::Error;
use crate::format::layout::AttachOptions;
use crate::format::layout::{self, Header, HEADER_SIZE, MAGIC, READY};
use crate::format::memory::SharedMemory;
use crate::format::record::{Record, Segment};
use crate::format::schema::Kind;
use crate::seqlock::SeqLock;

mod families;
mod hostile;
mod service;
pub use families::{
    broadcast_across_handles, broadcast_across_processes, channel_across_processes,
    channel_peer_death_across_processes, event_across_processes, event_flood_across_processes,
    waitset_across_processes,
};
pub use hostile::{
    hostile_broadcast_words, hostile_channel_words, hostile_event_words, hostile_seqlock_words,
    hostile_service_words,
};
pub use service::{
    service_across_processes, service_fan_out_across_processes, service_kills_across_processes,
};

/// What the suite needs from a backend.
pub trait Backend {
    /// The backend's memory handle.
    type Mem: SharedMemory + Send + 'static;
    /// Fresh, zeroed memory of `len` bytes that this handle owns.
    fn create(&mut self, len: usize) -> Self::Mem;
    /// A second, independent handle onto the memory behind `mem`, made the way a second
    /// process would make it (open the name again, receive the fd, map it again).
    fn reopen(&mut self, mem: &Self::Mem) -> Self::Mem;
    /// Whether a forked child shares the memory (true for every real backend: their
    /// mappings are `MAP_SHARED`). The hostile-word test's peer is then a forked process;
    /// for process-private memory (the heap backend) it is a thread.
    fn shared_across_fork(&self) -> bool {
        true
    }
}

/// Instantiates every conformance test for a backend: `$backend` is an expression that
/// makes a fresh [`Backend`] for each test.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr) => {
        $crate::conformance_tests!(@each $backend;
            layout_round_trip, record_read_write, byte_ranges, corrupted_headers_are_rejected,
            mismatched_types_are_rejected, too_small_memory, already_initialized,
            never_ready_segment_times_out, creator_died_during_init, seqlock_snapshots,
            seqlock_writer_died, four_gib_segment_is_lazy, foreign_segments,
            broadcast_across_handles, broadcast_across_processes, channel_across_processes,
            channel_peer_death_across_processes, hostile_broadcast_words,
            hostile_channel_words, hostile_seqlock_words, hostile_event_words,
            event_across_processes, waitset_across_processes, event_flood_across_processes,
            service_across_processes, service_kills_across_processes, hostile_service_words,
            service_fan_out_across_processes);
    };
    (@each $backend:expr; $($name:ident),*) => {$(
        #[test]
        fn $name() {
            let mut backend = $backend;
            $crate::conformance::$name(&mut backend);
        }
    )*};
}

/// The record the suite stores.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Sample {
    /// A word.
    pub a: u64,
    /// Half a word.
    pub b: u32,
    /// Half a word.
    pub c: u32,
    /// Bytes.
    pub d: [u8; 16],
}

impl Record for Sample {
    const NAME: &'static str = "Sample";
    const VERSION: u32 = 3;
}

const SAMPLE: Sample = Sample {
    a: 100,
    b: 876,
    c: 8021,
    d: *b"conformance test",
};

/// Writes `bytes` at `offset` of `mem`, as a hostile peer would.
///
/// # Panics
/// If the range is outside the memory.
pub fn poke(mem: &impl SharedMemory, offset: usize, bytes: &[u8]) {
    assert!(offset
        .checked_add(bytes.len())
        .is_some_and(|e| e <= mem.len()));
    // SAFETY: the range is inside the mapping (asserted above).
    unsafe { crate::format::copy::store_bytes(mem.as_ptr().add(offset), bytes) }
}

/// Copies `buf.len()` bytes at `offset` of `mem` into `buf`, as they are now.
///
/// # Panics
/// If the range is outside the memory.
pub fn peek(mem: &impl SharedMemory, offset: usize, buf: &mut [u8]) {
    assert!(offset
        .checked_add(buf.len())
        .is_some_and(|e| e <= mem.len()));
    // SAFETY: the range is inside the mapping (asserted above).
    unsafe { crate::format::copy::load_bytes(mem.as_ptr().add(offset), buf) }
}

/// Reads the header bytes of `mem` as they are now.
pub fn peek_header(mem: &impl SharedMemory) -> Header {
    assert!(mem.len() >= HEADER_SIZE);
    // SAFETY: the mapping holds at least the header (asserted above).
    unsafe { crate::format::copy::load_pod(mem.as_ptr(), core::sync::atomic::Ordering::Relaxed) }
}

/// The pid of a process that has exited and been reaped.
pub fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn `true`");
    let pid = child.id();
    child.wait().expect("wait for `true`");
    pid
}

fn quick() -> AttachOptions {
    AttachOptions::new()
        .ready_timeout(Duration::from_millis(50))
        .writer_timeout(Duration::from_millis(50))
}

/// A created segment attaches through a second handle with the same header.
pub fn layout_round_trip<B: Backend>(b: &mut B) {
    let len = 64 * 1024;
    let seg = Segment::create(b.create(len), &SAMPLE).expect("create");
    let other = b.reopen(seg.raw().memory());
    assert!(
        !other.is_owner(),
        "a reopened handle must not own the segment"
    );
    let att = Segment::<Sample, _>::attach(other).expect("attach");
    let h = *att.raw().header();
    assert_eq!(&h, seg.raw().header());
    assert_eq!(h, peek_header(att.raw().memory()));
    assert_eq!(h.magic, MAGIC);
    assert_eq!(h.layout_version, 1);
    assert_eq!(h.segment_size, len as u64);
    assert_eq!(h.payload_offset, 128);
    assert_eq!(h.payload_len, len as u64 - 128);
    assert_eq!(h.kind, Kind::Record as u32);
    assert_eq!(h.creator_pid, std::process::id());
    assert_eq!(h.ready, READY);
    assert_eq!(&h.schema_name[..6], b"Sample");
    assert_eq!(
        (h.schema_size, h.schema_align, h.schema_version),
        (32, 8, 3)
    );
    assert_eq!(att.read(), Ok(SAMPLE));
}

/// Records written through one handle read back through the other, both ways.
pub fn record_read_write<B: Backend>(b: &mut B) {
    let seg = Segment::create(b.create(4096), &SAMPLE).expect("create");
    let att = Segment::<Sample, _>::attach(b.reopen(seg.raw().memory())).expect("attach");
    for i in 0..100u64 {
        let v = Sample {
            a: i,
            b: i as u32 * 3,
            c: !(i as u32),
            d: [i as u8; 16],
        };
        if i % 2 == 0 {
            seg.write(&v).expect("write");
            assert_eq!(att.read(), Ok(v));
        } else {
            att.write(&v).expect("write");
            assert_eq!(seg.read(), Ok(v));
        }
    }
}

/// Headerless ("foreign") segments: the record at offset 0 and nothing else; the only
/// check is the size, and a segment with our header is readable as raw bytes too.
pub fn foreign_segments<B: Backend>(b: &mut B) {
    let seg = Segment::create_foreign(b.create(4096), &SAMPLE).expect("create_foreign");
    let mem = b.reopen(seg.raw().memory());
    let mut first = [0u8; 40];
    // SAFETY: the memory is 4096 bytes long.
    unsafe { crate::format::copy::load_bytes(mem.as_ptr(), &mut first) };
    assert_eq!(
        &first[..32],
        bytemuck::bytes_of(&SAMPLE),
        "the record at offset 0"
    );
    assert_eq!(&first[32..], &[0u8; 8], "and nothing else");
    // Our header check refuses it (no magic: a fresh-looking segment never gets ready).
    let quick = AttachOptions::new().ready_timeout(Duration::from_millis(20));
    assert!(Segment::<Sample, _>::attach_with(b.reopen(&mem), &quick).is_err());
    let att = Segment::<Sample, _>::attach_foreign(mem).expect("attach_foreign");
    assert!(att.raw().is_foreign());
    assert_eq!(att.read(), Ok(SAMPLE));
    assert_eq!(att.payload_len(), 4096);
    att.write_at(4090, &[1; 6])
        .expect("the whole mapping is the payload");
    assert!(matches!(
        att.write_at(4091, &[1; 6]),
        Err(Error::OutOfBounds { .. })
    ));
    // Too small for the record: TooSmall, for both.
    let small = b.create(31);
    let e = Segment::<Sample, _>::attach_foreign(b.reopen(&small)).err();
    assert_eq!(
        e,
        Some(Error::TooSmall {
            needed: 32,
            found: 31
        })
    );
    assert!(Segment::create_foreign(small, &SAMPLE).is_err());
}

/// Byte ranges in the payload round-trip; ranges that leave it are errors.
pub fn byte_ranges<B: Backend>(b: &mut B) {
    let seg = Segment::create(b.create(8192), &SAMPLE).expect("create");
    let att = Segment::<Sample, _>::attach(b.reopen(seg.raw().memory())).expect("attach");
    let plen = seg.payload_len();
    assert_eq!(plen, 8192 - 128);
    for (off, len) in [
        (32usize, 1usize),
        (33, 7),
        (40, 64),
        (plen - 9, 9),
        (0, plen),
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + off) as u8).collect();
        seg.write_at(off, &data).expect("in-range write");
        let mut back = vec![0u8; len];
        att.read_at(off, &mut back).expect("in-range read");
        assert_eq!(back, data, "offset {off}, len {len}");
    }
    let mut one = [0u8; 1];
    for (off, len) in [
        (plen, 1usize),
        (plen - 1, 2),
        (usize::MAX, 1),
        (1, usize::MAX),
    ] {
        let expect = Error::OutOfBounds {
            offset: off as u64,
            len: len as u64,
            payload_len: plen as u64,
        };
        if len == 1 {
            assert_eq!(att.read_at(off, &mut one), Err(expect));
        }
        assert_eq!(seg.check_write_range(off, len), Err(expect));
    }
    assert_eq!(
        seg.write_at(plen, &[1]).unwrap_err().to_string(),
        format!("out of bounds: 1 bytes at offset {plen} do not fit in a payload of {plen} bytes")
    );
}

impl<T: Record, M: SharedMemory> Segment<T, M> {
    fn check_write_range(&self, off: usize, len: usize) -> Result<(), Error> {
        self.raw().check_range(off, len)
    }
}

/// Every single-field corruption of a valid header is refused with the right error.
pub fn corrupted_headers_are_rejected<B: Backend>(b: &mut B) {
    let len = 8192u64;
    type Check = fn(&Error) -> bool;
    let cases: Vec<(&str, usize, Vec<u8>, Check)> = vec![
        ("magic", 0, b"NOTOURS\0".to_vec(), |e| {
            matches!(e, Error::BadMagic { .. })
        }),
        ("version", 8, 2u32.to_ne_bytes().to_vec(), |e| {
            matches!(
                e,
                Error::UnsupportedVersion {
                    expected: 1,
                    found: 2
                }
            )
        }),
        ("header_size", 12, 64u32.to_ne_bytes().to_vec(), |e| {
            matches!(
                e,
                Error::CorruptHeader {
                    field: "header_size",
                    ..
                }
            )
        }),
        (
            "segment_size > mapping",
            16,
            (len + 1).to_ne_bytes().to_vec(),
            |e| {
                matches!(
                    e,
                    Error::Truncated {
                        claimed: 8193,
                        mapped: 8192
                    }
                )
            },
        ),
        (
            "segment_size max",
            16,
            u64::MAX.to_ne_bytes().to_vec(),
            |e| matches!(e, Error::Truncated { .. }),
        ),
        ("segment_size tiny", 16, 64u64.to_ne_bytes().to_vec(), |e| {
            matches!(
                e,
                Error::CorruptHeader {
                    field: "segment_size",
                    ..
                }
            )
        }),
        (
            "payload_offset unaligned",
            24,
            130u64.to_ne_bytes().to_vec(),
            |e| {
                matches!(
                    e,
                    Error::CorruptHeader {
                        field: "payload_offset",
                        ..
                    }
                )
            },
        ),
        (
            "payload_offset inside header",
            24,
            64u64.to_ne_bytes().to_vec(),
            |e| {
                matches!(
                    e,
                    Error::CorruptHeader {
                        field: "payload_offset",
                        ..
                    }
                )
            },
        ),
        (
            "payload_len overflow",
            32,
            (u64::MAX - 64).to_ne_bytes().to_vec(),
            |e| {
                matches!(
                    e,
                    Error::CorruptHeader {
                        field: "payload_len",
                        ..
                    }
                )
            },
        ),
        (
            "payload_len past end",
            32,
            len.to_ne_bytes().to_vec(),
            |e| {
                matches!(
                    e,
                    Error::CorruptHeader {
                        field: "payload_len",
                        ..
                    }
                )
            },
        ),
        (
            "payload_len too small",
            32,
            8u64.to_ne_bytes().to_vec(),
            |e| {
                matches!(
                    e,
                    Error::CorruptHeader {
                        field: "payload_len",
                        ..
                    }
                )
            },
        ),
        // A segment claiming to be smaller than its record (and consistent otherwise).
        (
            "segment too small for the record",
            16,
            [
                136u64.to_ne_bytes(),
                128u64.to_ne_bytes(),
                8u64.to_ne_bytes(),
            ]
            .concat(),
            |e| {
                matches!(
                    e,
                    Error::PayloadTooSmall {
                        needed: 32,
                        found: 8,
                        ..
                    }
                )
            },
        ),
        ("kind", 40, 3u32.to_ne_bytes().to_vec(), |e| {
            matches!(
                e,
                Error::KindMismatch {
                    expected: Kind::Record,
                    found: 3
                }
            )
        }),
        ("kind unknown", 40, 99u32.to_ne_bytes().to_vec(), |e| {
            matches!(e, Error::KindMismatch { found: 99, .. })
        }),
        ("kind_version", 44, 7u32.to_ne_bytes().to_vec(), |e| {
            matches!(e, Error::KindVersion { found: 7, .. })
        }),
        ("schema_size", 48, 16u64.to_ne_bytes().to_vec(), |e| {
            matches!(e, Error::SchemaMismatch { .. })
        }),
        ("schema_align", 56, 3u64.to_ne_bytes().to_vec(), |e| {
            matches!(
                e,
                Error::CorruptHeader {
                    field: "schema_align",
                    ..
                }
            )
        }),
        ("schema_version", 64, 4u32.to_ne_bytes().to_vec(), |e| {
            matches!(e, Error::SchemaMismatch { .. })
        }),
        ("schema_name_len", 68, 200u32.to_ne_bytes().to_vec(), |e| {
            matches!(
                e,
                Error::CorruptHeader {
                    field: "schema_name_len",
                    ..
                }
            )
        }),
        ("schema_name", 72, b"Sampla".to_vec(), |e| {
            matches!(e, Error::SchemaMismatch { .. })
        }),
        ("schema_name utf-8", 72, vec![0xff], |e| {
            matches!(
                e,
                Error::CorruptHeader {
                    field: "schema_name",
                    ..
                }
            )
        }),
        ("schema_name padding", 100, vec![1], |e| {
            matches!(
                e,
                Error::CorruptHeader {
                    field: "schema_name",
                    ..
                }
            )
        }),
        ("flags", 116, 1u32.to_ne_bytes().to_vec(), |e| {
            matches!(e, Error::CorruptHeader { field: "flags", .. })
        }),
        ("ready", 120, 7u32.to_ne_bytes().to_vec(), |e| {
            matches!(e, Error::CorruptHeader { field: "ready", .. })
        }),
        ("reserved", 124, 1u32.to_ne_bytes().to_vec(), |e| {
            matches!(
                e,
                Error::CorruptHeader {
                    field: "reserved",
                    ..
                }
            )
        }),
    ];
    for (what, off, bytes, check) in cases {
        let seg = Segment::create(b.create(len as usize), &SAMPLE).expect("create");
        poke(seg.raw().memory(), off, &bytes);
        match Segment::<Sample, _>::attach_with(b.reopen(seg.raw().memory()), &quick()) {
            Ok(_) => panic!("{what}: a corrupt header was accepted"),
            Err(e) => assert!(check(&e), "{what}: unexpected error {e:?} ({e})"),
        }
    }
}

/// A reader with another record type or another kind gets a typed error naming both.
pub fn mismatched_types_are_rejected<B: Backend>(b: &mut B) {
    let seg = Segment::create(b.create(4096), &SAMPLE).expect("create");
    let err = Segment::<[u64; 2], _>::attach(b.reopen(seg.raw().memory())).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"schema mismatch: segment holds "Sample" v3 (32 bytes, align 8), caller expects "array" v1 (16 bytes, align 8)"#
    );
    let err = SeqLock::<Sample, _>::attach(b.reopen(seg.raw().memory())).unwrap_err();
    assert_eq!(
        err,
        Error::KindMismatch {
            expected: Kind::SeqLock,
            found: Kind::Record as u32
        }
    );
    assert_eq!(
        err.to_string(),
        "wrong segment kind: segment holds a record, caller expects a seqlock record"
    );
}

/// Memory smaller than the header (or than header + record) is refused at create and attach.
pub fn too_small_memory<B: Backend>(b: &mut B) {
    let small = b.create(100);
    assert_eq!(
        Segment::create(b.reopen(&small), &SAMPLE).unwrap_err(),
        Error::TooSmall {
            needed: 160,
            found: 100
        }
    );
    assert_eq!(
        Segment::<Sample, _>::attach(small).unwrap_err(),
        Error::TooSmall {
            needed: 128,
            found: 100
        }
    );
    let just_header = b.create(HEADER_SIZE + 8);
    assert_eq!(
        Segment::create(just_header, &SAMPLE).unwrap_err(),
        Error::TooSmall {
            needed: 160,
            found: 136
        }
    );
}

/// `create` refuses memory that already holds a segment.
pub fn already_initialized<B: Backend>(b: &mut B) {
    let seg = Segment::create(b.create(4096), &SAMPLE).expect("create");
    let again = Segment::create(b.reopen(seg.raw().memory()), &SAMPLE).unwrap_err();
    assert_eq!(again, Error::AlreadyInitialized);
    assert_eq!(
        Segment::<Sample, _>::attach(b.reopen(seg.raw().memory()))
            .unwrap()
            .read(),
        Ok(SAMPLE)
    );
}

/// Zeroed memory (a creator that never wrote its header) times out as `NotReady`.
pub fn never_ready_segment_times_out<B: Backend>(b: &mut B) {
    let mem = b.create(4096);
    let opts = quick();
    let err = Segment::<Sample, _>::attach_with(b.reopen(&mem), &opts).unwrap_err();
    // It gave up only once its own ready timeout had passed (what the error reports is
    // compared with the option it was given, not with a speed).
    assert!(
        matches!(err, Error::NotReady { creator_pid: 0, waited } if waited >= opts.ready_timeout),
        "{err:?}"
    );
}

/// A header whose `ready` is still 0 and whose creator is dead is `CreatorDied`; with a
/// live creator it is `NotReady`.
pub fn creator_died_during_init<B: Backend>(b: &mut B) {
    let seg = Segment::create(b.create(4096), &SAMPLE).expect("create");
    poke(
        seg.raw().memory(),
        layout::READY_OFFSET,
        &0u32.to_ne_bytes(),
    );
    let err =
        Segment::<Sample, _>::attach_with(b.reopen(seg.raw().memory()), &quick()).unwrap_err();
    assert!(
        matches!(err, Error::NotReady { creator_pid, .. } if creator_pid == std::process::id()),
        "{err:?}"
    );
    let pid = dead_pid();
    poke(seg.raw().memory(), 112, &pid.to_ne_bytes());
    let err =
        Segment::<Sample, _>::attach_with(b.reopen(seg.raw().memory()), &quick()).unwrap_err();
    assert_eq!(err, Error::CreatorDied { pid });
}

/// A reader on another handle never sees a half-written record while a writer stores.
pub fn seqlock_snapshots<B: Backend>(b: &mut B) {
    type Rec = [u64; 16];
    let writer = SeqLock::create(b.create(4096), &[0u64; 16]).expect("create");
    let reader = SeqLock::<Rec, _>::attach(b.reopen(writer.raw().memory())).expect("attach");
    let rounds = 20_000u64;
    let w = std::thread::spawn(move || {
        for i in 1..=rounds {
            writer.store(&[i; 16]).expect("store");
        }
        writer
    });
    let mut last = 0;
    let mut torn = 0;
    while last < rounds {
        let v = reader.load().expect("load");
        if v.iter().any(|&x| x != v[0]) {
            torn += 1;
        }
        assert!(v[0] >= last, "went back in time: {} after {last}", v[0]);
        last = v[0];
    }
    let writer = w.join().expect("writer thread");
    assert_eq!(torn, 0, "torn snapshots seen");
    writer.update(|v| v[3] = 42).expect("update");
    assert_eq!(reader.load().expect("load")[3], 42);
}

/// A sequence left odd by a dead writer is `WriterDied` for readers, and the next store
/// takes the lock over and repairs the record.
pub fn seqlock_writer_died<B: Backend>(b: &mut B) {
    let writer = SeqLock::create(b.create(4096), &7u64).expect("create");
    let reader =
        SeqLock::<u64, _>::attach_with(b.reopen(writer.raw().memory()), &quick()).expect("attach");
    let pid = dead_pid();
    poke(writer.raw().memory(), 128, &1u64.to_ne_bytes());
    poke(writer.raw().memory(), 136, &pid.to_ne_bytes());
    assert_eq!(reader.try_load(), None);
    assert_eq!(reader.load(), Err(Error::WriterDied { pid }));
    writer
        .store(&9)
        .expect("store takes over the abandoned lock");
    assert_eq!(reader.load(), Ok(9));
    // A live "writer" holding the lock (our own pid) is WriterStuck, not WriterDied.
    poke(writer.raw().memory(), 128, &5u64.to_ne_bytes());
    poke(
        writer.raw().memory(),
        136,
        &std::process::id().to_ne_bytes(),
    );
    assert!(matches!(reader.load(), Err(Error::WriterStuck { .. })));
}

/// A 4 GiB segment can be created and used at both ends without touching the rest.
pub fn four_gib_segment_is_lazy<B: Backend>(b: &mut B) {
    let len = 4usize << 30;
    let seg = Segment::create(b.create(len), &SAMPLE).expect("create 4 GiB");
    let att = Segment::<Sample, _>::attach(b.reopen(seg.raw().memory())).expect("attach 4 GiB");
    let last = seg.payload_len() - 8;
    seg.write_at(last, b"lastbyte").expect("write at the end");
    let mut back = [0u8; 8];
    att.read_at(last, &mut back).expect("read at the end");
    assert_eq!(&back, b"lastbyte");
    assert_eq!(att.read(), Ok(SAMPLE));
    // Only the pages touched (the header's, the record's, the last one's) are resident,
    // through either handle: far below a megabyte of the 4 GiB.
    for mem in [seg.raw().memory(), att.raw().memory()] {
        let resident = crate::format::memory::resident_bytes(mem).expect("mincore");
        assert!(resident < 1 << 20, "{resident} bytes resident of 4 GiB");
    }
}
