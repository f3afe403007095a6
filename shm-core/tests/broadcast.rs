//! Broadcast within one process (threads over `HeapMemory`): delivery, lag, eviction,
//! hostile subscriber lines, typed use. The cross-process tests are in the backends.

use shm_core::testing::numbered;
use shm_core::{RecvError, RecvTimeoutError, SendError, TryRecvError};
use std::time::{Duration, Instant};

use shm_core::testing::{MyData, TUTORIAL};
use shm_core::{
    Broadcast, BroadcastMode, BroadcastOptions, Error, HeapMemory, Record, SharedMemory,
};

fn make(opts: BroadcastOptions) -> (Broadcast<HeapMemory>, HeapMemory) {
    let mem = HeapMemory::new(opts.segment_len().unwrap() as usize);
    let view = mem.share();
    (Broadcast::create(mem, &opts).unwrap(), view)
}

/// Message `n` of `len` bytes: every byte derived from `n`, so a mix of two is visible.
fn msg(n: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (n as usize * 7 + i) as u8).collect();
    if len >= 8 {
        v[..8].copy_from_slice(&n.to_ne_bytes());
    }
    v
}

fn check(n: u64, buf: &[u8]) {
    assert_eq!(buf, msg(n, buf.len()), "message {n} torn or wrong");
}

/// A call that takes longer than this hung (a watchdog, not a speed).
const HUNG: Duration = Duration::from_secs(60);
#[test]
fn reliable_every_subscriber_gets_every_message_in_order() {
    let (b, view) = make(
        BroadcastOptions::new()
            .slots(16)
            .max_message(300)
            .max_subscribers(4),
    );
    let n = 20_000u64;
    let subs: Vec<_> = (0..3)
        .map(|_| {
            Broadcast::attach(view.share())
                .unwrap()
                .subscriber()
                .unwrap()
        })
        .collect();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                for i in 0..n {
                    assert_eq!(numbered(&mut s, |s| s.recv_into(&mut buf)).unwrap(), i);
                    check(i, &buf);
                }
                numbered(&mut s, |s| s.recv_into(&mut buf)).err()
            })
        })
        .collect();
    let mut p = b.publisher().unwrap();
    for i in 0..n {
        p.publish(&msg(i, (i % 300) as usize)).unwrap();
    }
    drop(p);
    for r in readers {
        assert_eq!(r.join().unwrap(), Some(Error::Closed));
    }
}

#[test]
fn lossy_slow_subscriber_is_told_how_many_it_missed() {
    let (b, view) = make(
        BroadcastOptions::new()
            .mode(BroadcastMode::Lossy)
            .slots(8)
            .max_message(64),
    );
    let mut s = Broadcast::attach(view).unwrap().subscriber().unwrap();
    let mut p = b.publisher().unwrap();
    for i in 0..20 {
        p.publish(&msg(i, 64)).unwrap();
    }
    let mut buf = Vec::new();
    // 20 published into 8 slots: 0..12 are gone (12 is being... no: 13..19 are safe).
    assert_eq!(
        numbered(&mut s, |s| s.recv_into(&mut buf)),
        Err(Error::Lagged { missed: 13 })
    );
    for i in 13..20 {
        assert_eq!(numbered(&mut s, |s| s.recv_into(&mut buf)).unwrap(), i);
        check(i, &buf);
    }
    assert_eq!(
        numbered(&mut s, |s| s.try_recv_into(&mut buf)),
        Err(Error::Empty)
    );
}

#[test]
fn lossy_reader_racing_the_publisher_never_sees_a_torn_message() {
    let (b, view) = make(
        BroadcastOptions::new()
            .mode(BroadcastMode::Lossy)
            .slots(4)
            .max_message(4096),
    );
    let n = 200_000u64;
    // Joined before the first publish, so every message is delivered or counted missed.
    let mut s = Broadcast::attach(view).unwrap().subscriber().unwrap();
    let publisher = std::thread::spawn(move || {
        let mut p = b.publisher().unwrap();
        for i in 0..n {
            p.publish(&msg(i, if i % 3 == 0 { 4096 } else { 100 }))
                .unwrap();
        }
    });
    let (got, missed) = receive_until_closed(&mut s);
    publisher.join().unwrap();
    assert_eq!(got + missed, n, "delivered + missed adds up");
}

/// Receives until the publisher closes, checking every message whole and in order;
/// returns how many were delivered and how many reported missed.
fn receive_until_closed(s: &mut shm_core::Subscriber<HeapMemory>) -> (u64, u64) {
    let mut buf = Vec::new();
    let (mut got, mut missed, mut last) = (0u64, 0u64, None);
    loop {
        match numbered(s, |s| s.recv_into_timeout(&mut buf, HUNG)) {
            Ok(i) => {
                check(i, &buf);
                assert!(last.is_none_or(|l| i > l), "out of order");
                last = Some(i);
                got += 1;
            }
            Err(Error::Lagged { missed: m }) => missed += m,
            Err(Error::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    (got, missed)
}

#[test]
fn reliable_stuck_subscriber_is_evicted_and_told() {
    let (b, view) = make(
        BroadcastOptions::new()
            .slots(4)
            .max_message(8)
            .evict_timeout(Duration::from_millis(100)),
    );
    let mut stuck = Broadcast::attach(view.share())
        .unwrap()
        .subscriber()
        .unwrap();
    let mut good = Broadcast::attach(view).unwrap().subscriber().unwrap();
    let mut p = b.publisher().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        (0..20)
            .map(|_| numbered(&mut good, |s| s.recv_into(&mut buf)).unwrap())
            .collect::<Vec<_>>()
    });
    let t = Instant::now();
    for i in 0..20u64 {
        p.publish(&i.to_ne_bytes()).unwrap();
    }
    // A hang watchdog only: the eviction timeout is what the publisher waits.
    assert!(t.elapsed() < HUNG, "the publisher hung");
    assert_eq!(reader.join().unwrap(), (0..20).collect::<Vec<_>>());
    let mut buf = Vec::new();
    let e = numbered(&mut stuck, |s| s.recv_into(&mut buf)).unwrap_err();
    assert!(matches!(e, Error::Evicted { .. }), "{e}");
    assert!(e.to_string().contains("behind"), "{e}");
    assert_eq!(
        numbered(&mut stuck, |s| s.recv_into(&mut buf)).unwrap_err(),
        e,
        "and stays evicted"
    );
    // try_publish with room: fine; a full ring with no one behind: never Full.
    p.try_publish(b"x").unwrap();
}

#[test]
fn hostile_positions_are_evicted_not_trusted() {
    let opts = BroadcastOptions::new()
        .slots(4)
        .max_message(8)
        .max_subscribers(2)
        .evict_timeout(Duration::from_millis(200));
    let (b, view) = make(opts);
    let mut p = b.publisher().unwrap();
    for value in [u64::MAX, 1 << 40, 3, 0] {
        let mut s = Broadcast::attach(view.share())
            .unwrap()
            .subscriber()
            .unwrap();
        // Subscriber line 0 is at payload offset 640; position at +8. Scribble it.
        shm_core::conformance::poke(&view, 128 + 640 + 8, &value.to_ne_bytes());
        let t = Instant::now();
        for _ in 0..12u64 {
            p.publish(&[1u8; 8]).unwrap();
        }
        // A hang watchdog, far above the 200 ms eviction timeout (no speed is asserted).
        assert!(t.elapsed() < HUNG, "{value}: the publisher hung");
        let mut buf = Vec::new();
        let r = numbered(&mut s, |s| s.recv_into(&mut buf));
        let why = if value > 12 * 4 {
            "it wrote a position no honest subscriber writes"
        } else {
            "it stayed behind longer than the eviction timeout"
        };
        assert_eq!(r, Err(Error::Evicted { reason: why }), "{value}");
        drop(s);
    }
    // Scribbled state words and pids on a line nobody holds change nothing either.
    shm_core::conformance::poke(&view, 128 + 640, &[0xff; 16]);
    for _ in 0..12u64 {
        p.publish(&[2u8; 8]).unwrap();
    }
}

#[test]
fn typed_records_and_schema_checked_at_join() {
    #[repr(C)]
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct Other {
        a: u64,
    }
    impl Record for Other {
        const NAME: &'static str = "Other";
    }
    let opts = BroadcastOptions::new().record::<MyData>().slots(4);
    let (b, view) = make(opts);
    assert_eq!(b.max_message(), 24);
    let e = Broadcast::<HeapMemory>::attach_record::<Other>(view.share()).err();
    assert!(matches!(e, Some(Error::SchemaMismatch { .. })), "{e:?}");
    let mut s = Broadcast::attach_record::<MyData>(view.share())
        .unwrap()
        .subscriber()
        .unwrap();
    let mut p = b.publisher().unwrap();
    assert!(matches!(
        p.publish_record(&Other { a: 1 }),
        Err(SendError::Failed(Error::SchemaMismatch { .. }))
    ));
    p.publish_record(&TUTORIAL).unwrap();
    assert_eq!(s.recv_record::<MyData>().unwrap(), TUTORIAL);
    assert!(matches!(
        s.recv_record::<Other>(),
        Err(RecvError::Failed(Error::SchemaMismatch { .. }))
    ));
    // A bytes subscriber may read a typed broadcast.
    let mut raw = Broadcast::attach(view).unwrap().subscriber().unwrap();
    p.publish_record(&TUTORIAL).unwrap();
    let mut buf = Vec::new();
    numbered(&mut raw, |s| s.recv_into(&mut buf)).unwrap();
    assert_eq!(buf, bytemuck::bytes_of(&TUTORIAL));
}

#[test]
fn capacity_roles_and_close() {
    let (b, view) = make(BroadcastOptions::new().max_subscribers(2).slots(2));
    let s1 = b.subscriber().unwrap();
    let _s2 = b.subscriber().unwrap();
    assert_eq!(
        b.subscriber().err(),
        Some(Error::SubscribersFull { max: 2 })
    );
    drop(s1);
    let mut s3 = b.subscriber().unwrap();
    let p = b.publisher().unwrap();
    assert!(matches!(b.publisher(), Err(Error::RoleTaken { .. })));
    let other = Broadcast::attach(view).unwrap();
    assert!(matches!(other.publisher(), Err(Error::RoleTaken { .. })));
    drop(p);
    let mut buf = Vec::new();
    assert_eq!(
        numbered(&mut s3, |s| s.recv_into(&mut buf)),
        Err(Error::Closed)
    );
    assert!(
        other.publisher().is_ok(),
        "a closed publisher's role is free"
    );
}

#[test]
fn bad_options_and_sizes_are_typed_errors() {
    for opts in [
        BroadcastOptions::new().slots(3),
        BroadcastOptions::new().slots(0),
        BroadcastOptions::new().slots(1 << 30),
        BroadcastOptions::new().max_subscribers(0),
        BroadcastOptions::new().max_subscribers(5000),
        BroadcastOptions::new().max_message(u64::MAX),
        BroadcastOptions::new().max_message(u64::MAX - 70),
        BroadcastOptions::new().slots(1 << 24).max_message(1 << 50),
        BroadcastOptions::new().evict_timeout(Duration::from_secs(3601)),
        BroadcastOptions::new().evict_timeout(Duration::MAX),
    ] {
        assert!(
            matches!(opts.segment_len(), Err(Error::InvalidOption { .. })),
            "{opts:?}"
        );
        assert!(Broadcast::create(HeapMemory::new(4096), &opts).is_err());
    }
    let opts = BroadcastOptions::new();
    let len = opts.segment_len().unwrap() as usize;
    assert!(matches!(
        Broadcast::create(HeapMemory::new(len - 1), &opts),
        Err(Error::TooSmall { .. })
    ));
    let (b, _) = make(BroadcastOptions::new().max_message(10));
    let mut p = b.publisher().unwrap();
    assert!(matches!(
        p.publish(&[0; 11]),
        Err(SendError::MessageTooLarge { len: 11, max: 10 })
    ));
    assert!(p.publish(&[]).is_ok());
    let mut s = b.subscriber().unwrap();
    p.publish(b"").unwrap();
    let mut buf = vec![1, 2, 3];
    numbered(&mut s, |s| s.recv_into(&mut buf)).unwrap();
    assert!(buf.is_empty());
}

#[test]
fn corrupt_broadcast_headers_are_refused() {
    let (b, view) = make(BroadcastOptions::new().slots(4).max_message(8));
    drop(b);
    for (off, bytes) in [
        (128usize, 7u32.to_ne_bytes().to_vec()),      // mode
        (132, 0u32.to_ne_bytes().to_vec()),           // max_subscribers
        (136, 6u64.to_ne_bytes().to_vec()),           // slots
        (144, 4096u64.to_ne_bytes().to_vec()),        // slot_size
        (152, (u64::MAX - 8).to_ne_bytes().to_vec()), // max_message
    ] {
        let copy = HeapMemory::new(view.len());
        let mut all = vec![0u8; view.len()];
        shm_core::conformance::peek(&view, 0, &mut all);
        shm_core::conformance::poke(&copy, 0, &all);
        shm_core::conformance::poke(&copy, off, &bytes);
        let e = Broadcast::attach(copy).err();
        assert!(
            matches!(e, Some(Error::CorruptHeader { .. })),
            "offset {off}: {e:?}"
        );
    }
}

#[test]
fn hostile_tails_are_corrupt_not_overflows() {
    let (b, view) = make(BroadcastOptions::new().slots(4).max_message(8));
    let mut s = b.subscriber().unwrap();
    {
        let mut p = b.publisher().unwrap();
        p.publish(&[1; 8]).unwrap();
    }
    // The tail word (payload offset 128) scribbled to values near the top.
    for tail in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 62) + 1] {
        shm_core::conformance::poke(&view, 128 + 128, &tail.to_ne_bytes());
        assert!(
            matches!(b.publisher(), Err(Error::Corrupt { .. })),
            "{tail}"
        );
        assert!(
            matches!(b.subscriber(), Err(Error::Corrupt { .. })),
            "{tail}"
        );
        // A subscriber whose slot shows a newer stamp reads the tail to resume: corrupt.
        shm_core::conformance::poke(&view, 128 + 640 + 128 * 64, &u64::MAX.to_ne_bytes());
        let mut buf = Vec::new();
        let r = numbered(&mut s, |s| s.try_recv_into(&mut buf));
        assert_eq!(
            r,
            Err(Error::Corrupt {
                what: "the broadcast's message count (tail)",
                found: tail
            }),
            "{tail}"
        );
    }
}

#[test]
fn recv_slice_copies_once_and_leaves_a_message_too_large_for_the_slice() {
    let (b, _) = make(BroadcastOptions::new().slots(4).max_message(64));
    let mut p = b.publisher().unwrap();
    let mut s = b.subscriber().unwrap();
    p.publish(&msg(0, 40)).unwrap();
    p.publish(&msg(1, 10)).unwrap();
    let mut small = [0u8; 16];
    assert_eq!(
        s.recv_into_slice_timeout(&mut small, Duration::from_secs(5)),
        Err(RecvTimeoutError::MessageTooLarge { len: 40, max: 16 })
    );
    assert_eq!(
        s.try_recv_into_slice(&mut small),
        Err(TryRecvError::MessageTooLarge { len: 40, max: 16 })
    );
    let mut big = [0u8; 64];
    assert_eq!(s.recv_into_slice(&mut big), Ok(40));
    assert_eq!(s.last_number(), Some(0));
    check(0, &big[..40]);
    assert_eq!(s.recv_into_slice(&mut small), Ok(10));
    assert_eq!(s.last_number(), Some(1));
    check(1, &small[..10]);
    assert!(matches!(
        s.recv_into_slice_timeout(&mut big, Duration::from_millis(20)),
        Err(RecvTimeoutError::Timeout { .. })
    ));
    assert_eq!(s.try_recv_into_slice(&mut big), Err(TryRecvError::Empty));
}

/// A relay's notices: a gap of `k` is `Lagged { missed: k }` exactly and moves the
/// numbering on by `k` (the relay keeps its source's numbers); an upstream outage is
/// `UpstreamLost` once, after everything published, and takes no number; both modes; the
/// subscriber goes on after each; the reliable publisher still waits for the notice's slot
/// to be read.
#[test]
fn gap_and_upstream_lost_notices_reach_every_subscriber_in_order() {
    for mode in [BroadcastMode::Reliable, BroadcastMode::Lossy] {
        let (b, view) = make(BroadcastOptions::new().mode(mode).slots(8).max_message(64));
        let mut publisher = b.publisher().unwrap();
        let attached = Broadcast::attach(view).unwrap();
        let mut subs = [
            attached.subscriber().unwrap(),
            attached.subscriber().unwrap(),
        ];
        publisher.publish(b"a").unwrap();
        publisher.publish_gap(5).unwrap(); // numbers 1..=5 lost
        publisher.publish(b"b").unwrap(); // number 6
        publisher.publish_gap(0).unwrap(); // nothing at all
        publisher.publish_upstream_lost().unwrap();
        assert_eq!(publisher.next_message(), 7, "{mode:?}");
        let mut buf = Vec::new();
        for sub in &mut subs {
            assert_eq!(
                numbered(sub, |s| s
                    .recv_into_timeout(&mut buf, Duration::from_secs(5))),
                Ok(0)
            );
            assert_eq!(buf, b"a");
            assert_eq!(
                numbered(sub, |s| s
                    .recv_into_timeout(&mut buf, Duration::from_secs(5))),
                Err(Error::Lagged { missed: 5 })
            );
            assert_eq!(
                numbered(sub, |s| s
                    .recv_into_timeout(&mut buf, Duration::from_secs(5))),
                Ok(6)
            );
            assert_eq!(buf, b"b");
            assert_eq!(
                numbered(sub, |s| s
                    .recv_into_timeout(&mut buf, Duration::from_secs(5))),
                Err(Error::UpstreamLost)
            );
            assert_eq!(
                numbered(sub, |s| s.try_recv_into(&mut buf)),
                Err(Error::Empty),
                "{mode:?}: told once, nothing after"
            );
        }
        publisher.upstream_restored().unwrap();
        // After the notices the stream goes on: a reliable publisher fills the ring
        // again only as the subscribers read.
        for i in 0..10u8 {
            publisher.publish(&[i]).unwrap();
            for sub in &mut subs {
                assert_eq!(
                    numbered(sub, |s| s
                        .recv_into_timeout(&mut buf, Duration::from_secs(5))),
                    Ok(7 + u64::from(i))
                );
                assert_eq!(buf, [i]);
            }
        }
        // A gap longer than the ring: the next message lands past the notice's slot
        // once every subscriber has read the notice (a reliable publisher waits for it).
        publisher.publish_gap(9).unwrap();
        for sub in &mut subs {
            assert_eq!(
                numbered(sub, |s| s
                    .recv_into_timeout(&mut buf, Duration::from_secs(5))),
                Err(Error::Lagged { missed: 9 })
            );
        }
        publisher.publish(b"c").unwrap();
        for sub in &mut subs {
            assert_eq!(
                numbered(sub, |s| s
                    .recv_into_timeout(&mut buf, Duration::from_secs(5))),
                Ok(26)
            );
            assert_eq!(buf, b"c");
        }
    }
}

/// A relay starts at its source's number: subscribers that joined before go on from
/// there with nothing missed; a joiner during an outage is told once; `start_at` after a
/// publish is refused.
#[test]
fn start_at_and_an_outage_under_way_at_join() {
    for mode in [BroadcastMode::Reliable, BroadcastMode::Lossy] {
        let (b, view) = make(BroadcastOptions::new().mode(mode).slots(4).max_message(8));
        let attached = Broadcast::attach(view).unwrap();
        let mut early = attached.subscriber().unwrap();
        let mut publisher = b.publisher().unwrap();
        publisher.start_at(1_000_000).unwrap();
        let mut buf = Vec::new();
        for i in 0..6u64 {
            publisher.publish(&i.to_le_bytes()).unwrap();
            assert_eq!(
                numbered(&mut early, |s| s
                    .recv_into_timeout(&mut buf, Duration::from_secs(5))),
                Ok(1_000_000 + i),
                "{mode:?}"
            );
        }
        assert!(matches!(
            publisher.start_at(5),
            Err(Error::InvalidOption { .. })
        ));
        publisher.publish_upstream_lost().unwrap();
        let mut late = attached.subscriber().unwrap();
        assert_eq!(
            numbered(&mut late, |s| s.try_recv_into(&mut buf)),
            Err(Error::UpstreamLost)
        );
        assert_eq!(
            numbered(&mut late, |s| s.try_recv_into(&mut buf)),
            Err(Error::Empty)
        );
        publisher.upstream_restored().unwrap();
        publisher.publish(b"x").unwrap();
        assert_eq!(
            numbered(&mut late, |s| s
                .recv_into_timeout(&mut buf, Duration::from_secs(5))),
            Ok(1_000_006)
        );
        // One that did not look while the outage lasted is not told of it afterwards
        // (what was lost, if anything, comes as `Lagged`).
        assert_eq!(
            numbered(&mut early, |s| s
                .recv_into_timeout(&mut buf, Duration::from_secs(5))),
            Ok(1_000_006)
        );
    }
}

/// A lossy subscriber that falls more than the ring behind, over a relay's gap notices,
/// still counts exactly: every number is either received or missed, once.
#[test]
fn a_lagging_lossy_subscriber_counts_exactly_across_gap_notices() {
    let (b, view) = make(
        BroadcastOptions::new()
            .mode(BroadcastMode::Lossy)
            .slots(4)
            .max_message(8),
    );
    let mut publisher = b.publisher().unwrap();
    let mut sub = Broadcast::attach(view).unwrap().subscriber().unwrap();
    let mut buf = Vec::new();
    let (mut got, mut missed) = (0u64, 0u64);
    let mut last = None;
    let mut drain =
        |sub: &mut shm_core::Subscriber<HeapMemory>, got: &mut u64, missed: &mut u64| loop {
            match numbered(sub, |s| s.try_recv_into(&mut buf)) {
                Ok(n) => {
                    assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), n);
                    if let Some(l) = last {
                        assert!(n > l, "in order");
                    }
                    last = Some(n);
                    *got += 1;
                }
                Err(Error::Lagged { missed: m }) => *missed += m,
                Err(Error::Empty) => break,
                Err(e) => panic!("{e:?}"),
            }
        };
    // Bursts longer than the ring, with gaps of every size in between.
    for round in 0..50u64 {
        for _ in 0..(round % 7) {
            let n = publisher.next_message();
            publisher.publish(&n.to_le_bytes()).unwrap();
        }
        publisher.publish_gap(round % 5 + (round % 3) * 4).unwrap();
        if round % 4 == 0 {
            drain(&mut sub, &mut got, &mut missed);
        }
    }
    let n = publisher.next_message();
    publisher.publish(&n.to_le_bytes()).unwrap();
    drain(&mut sub, &mut got, &mut missed);
    assert_eq!(
        got + missed,
        publisher.next_message(),
        "got {got}, missed {missed}"
    );
}

/// A slot length with the notice bit but an unknown kind (or a gap of 0) is corrupt, not
/// a notice: a forged length cannot pass as one.
#[test]
fn malformed_notices_decode_as_nothing() {
    use shm_core::protocol::broadcast::{Notice, MAX_GAP, NOTICE};
    assert_eq!(
        Notice::decode(Notice::Gap(7).encode()),
        Some(Notice::Gap(7))
    );
    assert_eq!(
        Notice::decode(Notice::Gap(MAX_GAP).encode()),
        Some(Notice::Gap(MAX_GAP))
    );
    for bad in [
        NOTICE,
        NOTICE | (1 << 56),
        NOTICE | (3 << 56),
        NOTICE | (2 << 56) | 1,
        u64::MAX,
        64,
    ] {
        assert_eq!(Notice::decode(bad), None, "{bad:#x}");
    }
}

/// `relayed` is written at create and read back by every attach (bridges refuse to export
/// a relayed broadcast); a forged value is a corrupt header, not a guess.
#[test]
fn relayed_is_kept_in_the_segment() {
    for relayed in [false, true] {
        let (b, view) = make(
            BroadcastOptions::new()
                .slots(4)
                .max_message(8)
                .relayed(relayed),
        );
        assert_eq!(b.relayed(), relayed);
        assert_eq!(Broadcast::attach(view).unwrap().relayed(), relayed);
    }
    let (_b, view) = make(BroadcastOptions::new().slots(4).max_message(8));
    shm_core::conformance::poke(&view, 128 + 40, &7u32.to_ne_bytes());
    assert!(matches!(
        Broadcast::attach(view),
        Err(Error::CorruptHeader {
            field: "broadcast relayed",
            found: 7,
            ..
        })
    ));
}

/// Zero-copy publish: the message written in place, in pieces, arrives whole and in
/// order in both modes; a write outside the message and a message too large are typed
/// errors that publish nothing.
#[test]
fn reserve_writes_in_place_in_both_modes() {
    for mode in [BroadcastMode::Reliable, BroadcastMode::Lossy] {
        let (b, view) = make(BroadcastOptions::new().mode(mode).slots(8).max_message(64));
        let mut s = Broadcast::attach(view).unwrap().subscriber().unwrap();
        let mut p = b.publisher().unwrap();
        let mut buf = Vec::new();
        for i in 0..100u64 {
            let m = msg(i, 1 + (i as usize % 64));
            let slot = p.reserve(m.len()).unwrap();
            assert_eq!((slot.len(), slot.number()), (m.len(), i));
            let half = m.len() / 2;
            slot.write(half, &m[half..]).unwrap();
            slot.write(0, &m[..half]).unwrap();
            assert!(matches!(
                slot.write(m.len(), b"x"),
                Err(Error::OutOfBounds { .. })
            ));
            assert!(matches!(
                slot.write(usize::MAX, b"x"),
                Err(Error::OutOfBounds { .. })
            ));
            slot.commit();
            assert_eq!(numbered(&mut s, |s| s.recv_into(&mut buf)).unwrap(), i);
            assert_eq!(buf, m);
        }
        assert!(matches!(
            p.try_reserve(65),
            Err(shm_core::TrySendError::MessageTooLarge { len: 65, max: 64 })
        ));
        assert_eq!(
            p.next_message(),
            100,
            "{mode:?}: a refused reserve takes no number"
        );
        let empty = p.try_reserve(0).unwrap();
        assert!(empty.is_empty());
        empty.commit();
        assert_eq!(numbered(&mut s, |s| s.recv_into(&mut buf)).unwrap(), 100);
        assert!(buf.is_empty());
    }
}

/// A reservation dropped without a commit publishes nothing and leaves no
/// hole: the subscriber sees no message, the number is reused by the next publish, and
/// the numbering it receives has no gap.
#[test]
fn a_dropped_reservation_publishes_nothing_and_leaves_no_hole() {
    for mode in [BroadcastMode::Reliable, BroadcastMode::Lossy] {
        let (b, view) = make(BroadcastOptions::new().mode(mode).slots(4).max_message(64));
        let mut s = Broadcast::attach(view).unwrap().subscriber().unwrap();
        let mut p = b.publisher().unwrap();
        let mut buf = Vec::new();
        for round in 0..20u64 {
            {
                let slot = p.reserve(8).unwrap();
                slot.write(0, &u64::MAX.to_ne_bytes()).unwrap();
            } // dropped without a commit
            assert_eq!(s.try_recv_into(&mut buf), Err(TryRecvError::Empty));
            assert_eq!(p.next_message(), round);
            p.publish(&msg(round, 8)).unwrap();
            assert_eq!(numbered(&mut s, |s| s.recv_into(&mut buf)).unwrap(), round);
            check(round, &buf);
        }
    }
}

/// Lossy: what an open slot cost a subscriber a whole ring behind is the message the
/// slot held, reported as `Lagged` and exactly counted (as the publish would have).
#[test]
fn lossy_dropped_reservation_costs_a_ring_behind_reader_an_exact_lag() {
    let (b, view) = make(
        BroadcastOptions::new()
            .mode(BroadcastMode::Lossy)
            .slots(4)
            .max_message(8),
    );
    let mut s = Broadcast::attach(view).unwrap().subscriber().unwrap();
    let mut p = b.publisher().unwrap();
    for i in 0..4 {
        p.publish(&msg(i, 8)).unwrap();
    }
    let _ = p.reserve(8).unwrap(); // opens message 4's slot (message 0's), dropped at once
    let mut buf = Vec::new();
    assert_eq!(s.recv_into(&mut buf), Err(RecvError::Lagged { missed: 1 }));
    for i in 1..4 {
        assert_eq!(numbered(&mut s, |s| s.recv_into(&mut buf)).unwrap(), i);
        check(i, &buf);
    }
    assert_eq!(s.try_recv_into(&mut buf), Err(TryRecvError::Empty));
}

/// Reliable: the four forms wait for room as publish does: `Full`, `Timeout`, and the
/// async form completes once the subscriber reads; a pending async reserve dropped
/// publishes nothing.
#[test]
fn reliable_reserve_waits_for_room_in_every_form() {
    use shm_core::testing::block_on;
    use shm_core::{SendTimeoutError, TrySendError};
    use std::future::Future;
    let (b, view) = make(BroadcastOptions::new().slots(2).max_message(8));
    let mut s = Broadcast::attach(view).unwrap().subscriber().unwrap();
    let mut p = b.publisher().unwrap();
    for i in 0..2 {
        p.publish(&msg(i, 8)).unwrap();
    }
    assert!(matches!(p.try_reserve(8), Err(TrySendError::Full)));
    assert!(matches!(
        p.reserve_timeout(8, Duration::from_millis(20)),
        Err(SendTimeoutError::Timeout { .. })
    ));
    {
        // Polled once (no room), then dropped: cancellation publishes nothing.
        let mut fut = std::pin::pin!(p.reserve_async(8));
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(p.next_message(), 2);
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(numbered(&mut s, |s| s.recv_into_timeout(&mut buf, HUNG)).unwrap());
        }
        got
    });
    let slot = block_on(p.reserve_async(8)).unwrap();
    slot.write(0, &msg(2, 8)).unwrap();
    slot.commit();
    assert_eq!(reader.join().unwrap(), vec![0, 1, 2]);
}

/// A reader racing a publisher that writes each message in place in two pieces, with a
/// yield between them, never takes a torn or half-written message, and delivered +
/// missed adds up to what was committed.
#[test]
fn lossy_reader_racing_in_place_writes_never_sees_a_torn_message() {
    let (b, view) = make(
        BroadcastOptions::new()
            .mode(BroadcastMode::Lossy)
            .slots(4)
            .max_message(512),
    );
    let n = 50_000u64;
    let mut s = Broadcast::attach(view).unwrap().subscriber().unwrap();
    let publisher = std::thread::spawn(move || {
        let mut p = b.publisher().unwrap();
        for i in 0..n {
            let m = msg(i, if i % 5 == 0 { 512 } else { 40 });
            let slot = p.reserve(m.len()).unwrap();
            slot.write(0, &m[..m.len() / 2]).unwrap();
            if i % 64 == 0 {
                std::thread::yield_now();
            }
            slot.write(m.len() / 2, &m[m.len() / 2..]).unwrap();
            slot.commit();
        }
    });
    let (got, missed) = receive_until_closed(&mut s);
    publisher.join().unwrap();
    assert_eq!(got + missed, n, "delivered + missed adds up");
}

/// A detached reservation (for bindings): written through its address, committed with
/// its number; nothing else publishes while it is outstanding; abandoned, it publishes
/// nothing and its number is the next publish's.
#[test]
fn a_detached_reservation_is_the_only_publish_until_committed_or_abandoned() {
    let (b, view) = make(
        BroadcastOptions::new()
            .mode(BroadcastMode::Lossy)
            .slots(4)
            .max_message(64),
    );
    let mut s = Broadcast::attach(view).unwrap().subscriber().unwrap();
    let mut p = b.publisher().unwrap();
    let m = msg(0, 16);
    let d = p.reserve_detached(16, None).unwrap();
    assert_eq!((d.len(), d.number()), (16, 0));
    let ptr = p.detached_ptr(&d).unwrap();
    // SAFETY: the reservation's 16 bytes in heap memory only this test writes, before
    // its commit.
    unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), ptr, 16) };
    assert!(matches!(
        p.try_publish(b"x"),
        Err(shm_core::TrySendError::Failed(Error::InvalidOption { .. }))
    ));
    assert!(matches!(
        p.reserve_detached(8, None),
        Err(Error::InvalidOption { .. })
    ));
    p.commit_detached(d).unwrap();
    let mut buf = Vec::new();
    assert_eq!(numbered(&mut s, |s| s.recv_into(&mut buf)).unwrap(), 0);
    assert_eq!(buf, m);
    let d = p.reserve_detached(8, Some(Duration::ZERO)).unwrap();
    p.abandon_detached(d);
    assert_eq!(s.try_recv_into(&mut buf), Err(TryRecvError::Empty));
    p.publish(&msg(1, 8)).unwrap();
    assert_eq!(numbered(&mut s, |s| s.recv_into(&mut buf)).unwrap(), 1);
}
