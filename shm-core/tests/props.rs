//! Property tests over the layout and byte access, on heap memory.
#![cfg(not(loom))]

use std::time::Duration;

use proptest::prelude::*;
use shm_core::{
    bytemuck, AttachOptions, Error, HeapMemory, Record, Segment, SeqLock, SharedMemory,
};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "shm_core::bytemuck")]
struct MyData {
    col1: u64,
    col2: u64,
    col3: u64,
}
impl Record for MyData {
    const NAME: &'static str = "MyData";
}

fn no_wait() -> AttachOptions {
    AttachOptions::new().ready_timeout(Duration::ZERO)
}

fn dump(mem: &HeapMemory) -> Vec<u8> {
    let seg = Segment::<MyData, _>::attach(mem.share()).expect("attach own segment");
    let mut out = vec![0u8; mem.len()];
    // Header bytes via a raw view: the payload read gives the rest.
    out[..128].copy_from_slice(bytemuck::bytes_of(seg.raw().header()));
    seg.read_at(0, &mut out[128..]).expect("read payload");
    out
}

/// An independent statement of what a valid header for `MyData` (a plain record) in a
/// mapping of `bytes.len()` bytes is, reading fields straight from the bytes.
fn oracle_valid(bytes: &[u8]) -> bool {
    if bytes.len() < 128 {
        return false;
    }
    let u32_at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_ne_bytes(bytes[o..o + 8].try_into().unwrap());
    let len = bytes.len() as u128;
    let (seg, poff, plen) = (u64_at(16) as u128, u64_at(24) as u128, u64_at(32) as u128);
    let name_len = u32_at(68) as usize;
    &bytes[0..8] == b"SHMCORE\0"
        && u32_at(8) == 1
        && u32_at(12) == 128
        && seg <= len
        && seg >= 128
        && poff == 128
        && poff + plen == seg
        && plen >= 24
        && u32_at(40) == 1
        && u32_at(44) == 1
        && u64_at(48) == 24
        && u64_at(56) == 8
        && u32_at(64) == 1
        && name_len == 6
        && &bytes[72..78] == b"MyData"
        && bytes[78..112].iter().all(|&b| b == 0)
        && u32_at(116) == 0
        && u32_at(120) == 0x5245_4459
        && u32_at(124) == 0
}

fn valid_segment_bytes(len: usize) -> Vec<u8> {
    let mem = HeapMemory::new(len);
    let _seg = Segment::create(
        mem.share(),
        &MyData {
            col1: 100,
            col2: 876,
            col3: 8021,
        },
    )
    .unwrap();
    dump(&mem)
}

/// Mutations of a valid segment aimed at the header: single bytes, and whole fields set
/// to values near the edges (0, 1, powers of two, near overflow).
fn mutated_valid() -> impl Strategy<Value = Vec<u8>> {
    let edge = prop_oneof![
        Just(0u64),
        Just(1),
        Just(63),
        Just(64),
        Just(128),
        Just(4096),
        Just(u32::MAX as u64),
        Just(u64::MAX),
        Just(u64::MAX - 127),
        Just(i64::MAX as u64),
        any::<u64>(),
    ];
    let field = prop_oneof![
        Just((8usize, 4usize)),
        Just((12, 4)),
        Just((16, 8)),
        Just((24, 8)),
        Just((32, 8)),
        Just((40, 4)),
        Just((44, 4)),
        Just((48, 8)),
        Just((56, 8)),
        Just((64, 4)),
        Just((68, 4)),
        Just((112, 4)),
        Just((116, 4)),
        Just((120, 4)),
        Just((124, 4))
    ];
    let mutation = prop_oneof![
        (0usize..128, any::<u8>()).prop_map(|(o, b)| (o, vec![b])),
        (field, edge).prop_map(|((o, w), v)| (o, v.to_ne_bytes()[..w].to_vec())),
    ];
    (
        prop_oneof![Just(4096usize), Just(160), Just(152), 128usize..16384],
        prop::collection::vec(mutation, 0..4),
    )
        .prop_map(|(len, muts)| {
            let mut bytes = valid_segment_bytes(len.max(152));
            for (o, b) in muts {
                bytes[o..o + b.len()].copy_from_slice(&b);
            }
            // Sometimes the mapping is shorter than when the header was written.
            bytes.truncate(len);
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// (1) Every header built by create attaches and round-trips.
    #[test]
    fn created_segments_attach_and_round_trip(
        extra in 0usize..65536,
        value in any::<[u64; 3]>(),
        seqlock in any::<bool>(),
    ) {
        let v = MyData { col1: value[0], col2: value[1], col3: value[2] };
        if seqlock {
            let len = 128 + 64 + 24 + extra;
            let mem = HeapMemory::new(len);
            let w = SeqLock::create(mem.share(), &v).unwrap();
            let r = SeqLock::<MyData, _>::attach(mem.share()).unwrap();
            prop_assert_eq!(r.raw().header(), w.raw().header());
            prop_assert_eq!(r.load().unwrap(), v);
        } else {
            let len = 128 + 24 + extra;
            let mem = HeapMemory::new(len);
            let w = Segment::create(mem.share(), &v).unwrap();
            let r = Segment::<MyData, _>::attach(mem.share()).unwrap();
            prop_assert_eq!(r.raw().header(), w.raw().header());
            prop_assert_eq!(r.raw().header().segment_size, len as u64);
            prop_assert_eq!(r.payload_len(), len - 128);
            prop_assert_eq!(r.read(), Ok(v));
            prop_assert!(oracle_valid(&dump(&mem)));
        }
    }

    /// (2a) Random bytes: attach is Ok exactly when the oracle says the header is valid,
    /// and never panics.
    #[test]
    fn random_bytes_attach_only_if_valid(bytes in prop::collection::vec(any::<u8>(), 0..16384)) {
        let ok = Segment::<MyData, _>::attach_with(HeapMemory::from_bytes(&bytes), &no_wait()).is_ok();
        prop_assert_eq!(ok, oracle_valid(&bytes));
    }

    /// (3) Writes through one handle read back byte-exact through another; out-of-range
    /// writes are errors and change nothing.
    #[test]
    fn byte_writes_round_trip_between_handles(
        len in 152usize..8192,
        writes in prop::collection::vec((0usize..9000, prop::collection::vec(any::<u8>(), 0..300)), 0..40),
    ) {
        let mem = HeapMemory::new(len);
        let a = Segment::create(mem.share(), &MyData { col1: 1, col2: 2, col3: 3 }).unwrap();
        let b = Segment::<MyData, _>::attach(mem.share()).unwrap();
        let plen = len - 128;
        let mut model = vec![0u8; plen];
        a.read_at(0, &mut model).unwrap();
        for (off, data) in &writes {
            let res = a.write_at(*off, data);
            if off + data.len() <= plen {
                prop_assert!(res.is_ok());
                model[*off..off + data.len()].copy_from_slice(data);
            } else {
                let is_oob = matches!(res, Err(Error::OutOfBounds { .. }));
                prop_assert!(is_oob, "{:?}", res);
            }
        }
        let mut back = vec![0u8; plen];
        b.read_at(0, &mut back).unwrap();
        prop_assert_eq!(back, model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// (2b) Mutated valid segments: the same, where most mutations are near misses.
    /// 10,000 cases (its own config below).
    #[test]
    fn mutated_headers_attach_only_if_valid(bytes in mutated_valid()) {
        let res = Segment::<MyData, _>::attach_with(HeapMemory::from_bytes(&bytes), &no_wait());
        prop_assert_eq!(res.is_ok(), oracle_valid(&bytes), "attach said {:?}", res.err());
    }
}
