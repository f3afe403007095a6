//! Arbitrary arguments at every public constructor and method (issue 10): each call gives
//! a typed error or correct behaviour, never a panic, a signal or a hang. Any of those
//! fails the test (a panic is caught by proptest; a signal kills the test binary; the
//! calls that wait are given timeouts drawn from zero to `Duration::MAX`, and only ever
//! wait where a message or room can never come, so they must end by the timeout... or
//! else by the other end being absent, which is asserted).

use shm_core::{RecvTimeoutError, SendTimeoutError, TrySendError};
use std::time::Duration;

use proptest::prelude::*;
use shm_core::{
    AttachOptions, Channel, ChannelOptions, Error, HeapMemory, RawSegment, Schema, Segment,
    SeqLock, SharedMemory, WaitMode,
};

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        (0u64..2_000_000).prop_map(Duration::from_nanos),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn any_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(usize::MAX),
        Just(usize::MAX - 7),
        Just(isize::MAX as usize),
        0usize..20_000,
        any::<usize>(),
    ]
}

fn any_capacity() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1u64 << 63),
        Just(u64::MAX),
        (0u32..64).prop_map(|b| 1u64 << b),
        any::<u64>(),
    ]
}

/// Timeouts that a test can afford to wait out: zero to 20 ms, or one that never expires
/// for calls that must end for another reason.
fn short(d: Duration) -> Duration {
    d.min(Duration::from_millis(20))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn channel_options_and_create(rings in any::<u32>(), cap in any_capacity(), mem in 0usize..20_000) {
        let opts = ChannelOptions::new().rings(rings).capacity(cap);
        match opts.segment_len() {
            Ok(len) => prop_assert!(len > cap),
            Err(e) => prop_assert!(matches!(e, Error::InvalidOption { .. }), "{e:?}"),
        }
        match Channel::create(HeapMemory::new(mem), &opts) {
            Ok(chan) => {
                // Whatever was accepted is usable, in bounds.
                prop_assert!(chan.capacity() == cap && (1..=2).contains(&rings));
                let mut tx = chan.sender(0).unwrap();
                let big = vec![7u8; (chan.max_message() as usize).min(1 << 16)];
                prop_assert!(tx.try_send(&big).is_ok());
                let no_such = matches!(chan.sender(rings), Err(Error::NoSuchRing { .. }));
                prop_assert!(no_such, "ring {} of {}", rings, rings);
            }
            Err(e) => prop_assert!(matches!(
                e,
                Error::InvalidOption { .. } | Error::CorruptHeader { .. } | Error::TooSmall { .. }
            ), "{e:?}"),
        }
        // Without a capacity: the largest that fits, or TooSmall.
        let opts = ChannelOptions::new().rings(rings);
        if let Err(e) = Channel::create(HeapMemory::new(mem), &opts) {
            prop_assert!(matches!(e, Error::InvalidOption { .. } | Error::TooSmall { .. }), "{e:?}");
        }
    }

    #[test]
    fn channel_calls(len in any_len(), off in any_len(), t in any_duration(), spin in any_duration()) {
        let mem = HeapMemory::new(1 << 14);
        let view = mem.share();
        let a = Channel::create(mem, &ChannelOptions::new().capacity(4096)).unwrap();
        let b = Channel::attach(view).unwrap();
        let mut tx = a.sender(0).unwrap();
        let mut rx = b.receiver(0).unwrap();
        for mode in [WaitMode::Spin, WaitMode::Block { spin }] {
            tx.set_wait(mode);
            rx.set_wait(mode);
            // An empty ring with a live sender: the wait ends by its timeout.
            match rx.recv_timeout(short(t)) {
                Err(RecvTimeoutError::Timeout { .. }) => {}
                other => prop_assert!(false, "{:?}", other.map(|m| m.len())),
            }
            // An empty ring: it fits, or it is too large, or (a message that must wrap to
            // the start) `Full` once, with a PAD published that the receiver has not
            // passed yet; once it has, the message fits.
            let first = match tx.try_reserve(len) {
                Err(TrySendError::Full) => {
                    prop_assert!(rx.try_recv().is_err(), "a PAD is no message");
                    tx.try_reserve(len)
                }
                other => other,
            };
            match first {
                Ok(slot) => {
                    prop_assert!(len as u64 <= a.max_message());
                    let r = slot.write(off, &[1, 2, 3]);
                    prop_assert_eq!(r.is_ok(), off.checked_add(3).is_some_and(|e| e <= len));
                    let _abandoned = slot;
                }
                Err(e) => prop_assert!(matches!(e, TrySendError::MessageTooLarge { .. }), "{e:?}"),
            }
            // Fill the ring; the next send of any size waits out its timeout, or is too large.
            // (Empty messages last: after them not even 16 bytes are free.)
            while tx.try_send(&[9u8; 64]).is_ok() {}
            while tx.try_send(&[]).is_ok() {}
            match tx.send_timeout(&vec![0u8; len.min(1 << 16)], short(t)) {
                Err(SendTimeoutError::Timeout { .. } | SendTimeoutError::MessageTooLarge { .. }) => {}
                other => prop_assert!(false, "{other:?}"),
            }
            while let Ok(m) = rx.try_recv() {
                let mut buf = vec![0u8; len.min(1 << 16)];
                let r = m.read(off, &mut buf);
                prop_assert_eq!(
                    r.is_ok(),
                    off.checked_add(buf.len()).is_some_and(|e| e <= m.len())
                );
            }
        }
        // A receiver with no sender at all (dropped): Closed at once, whatever the timeout.
        drop(tx);
        let r = rx.recv_timeout(t).map(|m| m.len());
        prop_assert_eq!(r, Err(RecvTimeoutError::Closed));
    }

    #[test]
    fn segment_and_raw_ranges(off in any_len(), len in 0usize..5000, mem in 0usize..9000) {
        let heap = HeapMemory::new(mem);
        match Segment::create(heap, &[1u64, 2, 3]) {
            Ok(seg) => {
                let mut buf = vec![0u8; len];
                let fits = off.checked_add(len).is_some_and(|e| e <= seg.payload_len());
                prop_assert_eq!(seg.read_at(off, &mut buf).is_ok(), fits);
                prop_assert_eq!(seg.write_at(off, &buf).is_ok(), fits);
                let raw: &RawSegment<HeapMemory> = seg.raw();
                let r = raw.atomic_u64(off);
                prop_assert_eq!(r.is_ok(), off % 8 == 0 && off.checked_add(8).is_some_and(|e| e <= raw.payload_len()));
            }
            Err(e) => prop_assert!(matches!(e, Error::TooSmall { .. }), "{e:?}"),
        }
    }

    #[test]
    fn attach_and_seqlock_timeouts(ready in any_duration(), writer in any_duration(), name in ".{0,60}", ver in any::<u32>(), size in any::<u64>(), align in any::<u64>()) {
        // Fresh memory never becomes ready: attach ends by its (short) ready timeout.
        let mem = HeapMemory::new(4096);
        let opts = AttachOptions::new().ready_timeout(short(ready)).writer_timeout(writer);
        match Segment::<u64, _>::attach_with(mem.share(), &opts) {
            Err(Error::NotReady { .. }) => {}
            other => prop_assert!(false, "{other:?}"),
        }
        // A seqlock with any writer timeout: stores and loads work when uncontended.
        let lock = SeqLock::create(mem, &[0u64; 2]).unwrap();
        let other = SeqLock::<[u64; 2], _>::attach_with(lock.raw().memory().share(), &opts).unwrap();
        other.store(&[5, 5]).unwrap();
        prop_assert_eq!(lock.load().unwrap(), [5, 5]);
        // Schema: any name, version, size and alignment is accepted or a typed error.
        match Schema::new(&name, ver, size, align) {
            Ok(s) => prop_assert_eq!(s.name(), name.as_str()),
            Err(e) => prop_assert!(matches!(e, Error::SchemaName { .. }), "{e:?}"),
        }
    }
}

#[test]
fn the_case_that_overflowed() {
    // Issue 10, case 4: this used to succeed on an 8 KiB mapping and then write out of
    // bounds.
    let opts = ChannelOptions::new().rings(2).capacity(1 << 63);
    assert!(matches!(
        opts.segment_len(),
        Err(Error::InvalidOption { .. })
    ));
    let e = Channel::create(HeapMemory::new(8192), &opts).err().unwrap();
    assert!(matches!(e, Error::InvalidOption { .. }), "{e:?}");
    let opts = ChannelOptions::new().rings(1).capacity(1 << 62);
    let e = Channel::create(HeapMemory::new(8192), &opts).err().unwrap();
    assert!(matches!(e, Error::TooSmall { .. }), "{e:?}");
    assert!(HeapMemory::new(0).is_empty());
}
