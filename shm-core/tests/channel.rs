//! The channel on heap memory: wrap-around, sizes, errors, hostile indices.
#![cfg(not(loom))]

use shm_core::testing::block_on;

use shm_core::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use std::future::Future;
use std::time::Duration;

use proptest::prelude::*;
use shm_core::{Channel, ChannelOptions, Error, HeapMemory, WaitMode};

fn pair(
    len: usize,
    opts: ChannelOptions,
) -> (Channel<HeapMemory>, Channel<HeapMemory>, HeapMemory) {
    let mem = HeapMemory::new(len);
    let spy = mem.share();
    let view = mem.share();
    let a = Channel::create(mem, &opts).unwrap();
    let b = Channel::attach(view).unwrap();
    (a, b, spy)
}

fn msg(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect()
}

#[test]
fn layout_and_capacity() {
    let (a, b, _) = pair(1 << 16, ChannelOptions::new());
    assert_eq!(a.capacity(), 32768);
    assert_eq!(b.capacity(), 32768);
    assert_eq!(a.max_message(), 32752);
    // segment_len is exactly what create lays out: one byte less is too small.
    let opts = ChannelOptions::new().rings(2).capacity(4096);
    let len = opts.segment_len().unwrap();
    assert_eq!(len, 128 + 128 + 2 * (384 + 4096));
    assert!(Channel::create(HeapMemory::new(len as usize), &opts).is_ok());
    let e = Channel::create(HeapMemory::new(len as usize - 1), &opts)
        .err()
        .unwrap();
    assert!(matches!(e, Error::TooSmall { .. }), "{e:?}");
    let (a, _, _) = pair(1 << 16, ChannelOptions::new().rings(2).capacity(4096));
    assert_eq!((a.rings(), a.capacity()), (2, 4096));
    assert!(matches!(
        a.sender(2),
        Err(Error::NoSuchRing { ring: 2, rings: 2 })
    ));
    let e = Channel::create(HeapMemory::new(4096), &ChannelOptions::new().capacity(100))
        .err()
        .unwrap();
    assert!(matches!(
        e,
        Error::InvalidOption {
            option: "channel capacity",
            ..
        }
    ));
    let e = Channel::create(
        HeapMemory::new(4096),
        &ChannelOptions::new().capacity(1 << 20),
    )
    .err()
    .unwrap();
    assert!(matches!(e, Error::TooSmall { .. }), "{e:?}");
}

#[test]
fn a_record_segment_is_not_a_channel_and_vice_versa() {
    let mem = HeapMemory::new(4096);
    let view = mem.share();
    let _seg = shm_core::Segment::create(mem, &7u64).unwrap();
    let e = Channel::attach(view).err().unwrap();
    assert_eq!(
        e.to_string(),
        "wrong segment kind: segment holds a record, caller expects a channel"
    );
    let (a, _, _) = pair(4096, ChannelOptions::new());
    let e = shm_core::Segment::<u64, _>::attach(a.raw().memory().share()).unwrap_err();
    assert!(matches!(e, Error::KindMismatch { found: 3, .. }));
}

#[test]
fn messages_cross_the_wrap_point_in_order() {
    let (a, b, _) = pair(4096, ChannelOptions::new().capacity(256));
    let mut tx = a.sender(0).unwrap();
    let mut rx = b.receiver(0).unwrap();
    let mut buf = Vec::new();
    for i in 0..2000u64 {
        let len = (i * 13 % 120) as usize;
        tx.try_send(&msg(i, len)).unwrap();
        assert_eq!(rx.recv_into(&mut buf).unwrap(), len);
        assert_eq!(buf, msg(i, len), "message {i}");
    }
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
}

#[test]
fn full_empty_too_large_and_zero_length() {
    let (a, b, _) = pair(4096, ChannelOptions::new().capacity(128));
    let mut tx = a.sender(0).unwrap();
    let mut rx = b.receiver(0).unwrap();
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(tx.max_message(), 112);
    assert_eq!(
        tx.try_send(&[0; 113]),
        Err(TrySendError::MessageTooLarge { len: 113, max: 112 })
    );
    tx.try_send(&[1; 112]).unwrap();
    assert_eq!(tx.try_send(&[]), Err(TrySendError::Full));
    assert!(matches!(
        tx.send_timeout(&[2], Duration::from_millis(30)),
        Err(SendTimeoutError::Timeout { .. })
    ));
    assert_eq!(rx.recv().unwrap().to_vec(), vec![1; 112]);
    tx.try_send(&[]).unwrap();
    let m = rx.try_recv().unwrap();
    assert!(m.is_empty());
    drop(m);
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(30)),
        Err(RecvTimeoutError::Timeout { .. })
    ));
}

#[test]
fn zero_copy_slots_are_bounds_checked() {
    let (a, b, _) = pair(4096, ChannelOptions::new());
    let mut tx = a.sender(0).unwrap();
    let mut rx = b.receiver(0).unwrap();
    let slot = tx.reserve(10).unwrap();
    assert!(matches!(
        slot.write(5, &[0; 6]),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        slot.write(usize::MAX, &[0; 2]),
        Err(Error::OutOfBounds { .. })
    ));
    slot.write(0, b"01234").unwrap();
    slot.write(5, b"56789").unwrap();
    slot.commit();
    // A slot that goes out of scope without commit sends nothing: the sender goes on
    // (its next message takes the same space) and the receiver never sees the bytes.
    {
        let abandoned = tx.reserve(3).unwrap();
        abandoned.write(0, b"xyz").unwrap();
    }
    tx.send(b"after").unwrap();
    let m = rx.recv().unwrap();
    let mut part = [0u8; 4];
    m.read(3, &mut part).unwrap();
    assert_eq!(&part, b"3456");
    assert!(matches!(
        m.read(8, &mut part),
        Err(Error::OutOfBounds { .. })
    ));
    drop(m);
    assert_eq!(rx.recv().unwrap().to_vec(), b"after");
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
}

#[test]
fn close_is_told_apart_and_delivered_after_pending_messages() {
    let (a, b, _) = pair(4096, ChannelOptions::new());
    let mut tx = a.sender(0).unwrap();
    let mut rx = b.receiver(0).unwrap();
    tx.send(b"last words").unwrap();
    drop(tx);
    assert_eq!(rx.recv().unwrap().to_vec(), b"last words");
    assert_eq!(rx.recv().err(), Some(RecvError::Closed));
    assert_eq!(rx.try_recv().err(), Some(TryRecvError::Closed));
    // The sending end can be taken again, and the close is forgotten.
    let mut tx = a.sender(0).unwrap();
    tx.send(b"again").unwrap();
    assert_eq!(rx.recv().unwrap().to_vec(), b"again");
    drop(rx);
    assert_eq!(tx.send(b"x"), Err(SendError::Closed));
}

#[test]
fn ends_are_exclusive_to_one_live_process() {
    let (a, b, _) = pair(4096, ChannelOptions::new());
    let tx = a.sender(0).unwrap();
    // Not even this process may take an end it already holds (issue 10, case 9)...
    let me = std::process::id();
    assert_eq!(
        b.sender(0).err(),
        Some(Error::RoleTaken {
            role: "sending",
            ring: 0,
            pid: me
        })
    );
    assert!(
        a.sender(0).is_err(),
        "the same handle cannot take it twice either"
    );
    // ...until it lets it go.
    drop(tx);
    let _tx = a.sender(0).expect("a dropped end can be taken again");
    // A live other pid holds it: taken.
    let pid_off = 128 + 128 + 8; // payload + channel header + producer line + 8
    shm_core::conformance::poke(a.raw().memory(), pid_off, &1u32.to_ne_bytes());
    let e = b.sender(0).err().unwrap();
    assert_eq!(
        e,
        Error::RoleTaken {
            role: "sending",
            ring: 0,
            pid: 1
        }
    );
    let dead = shm_core::conformance::dead_pid();
    shm_core::conformance::poke(a.raw().memory(), pid_off, &dead.to_ne_bytes());
    assert!(b.sender(0).is_ok(), "a dead holder's end can be taken over");
}

#[test]
fn threads_block_and_wake_across_handles() {
    let (a, b, _) = pair(1 << 14, ChannelOptions::new().capacity(1024));
    let n = 200_000u64;
    let producer = std::thread::spawn(move || {
        let mut tx = a.sender(0).unwrap();
        tx.set_wait(WaitMode::Block {
            spin: Duration::from_micros(1),
        });
        for i in 0..n {
            tx.send(&i.to_ne_bytes()).unwrap();
        }
    });
    let mut rx = b.receiver(0).unwrap();
    rx.set_wait(WaitMode::Block {
        spin: Duration::from_micros(1),
    });
    let mut buf = Vec::new();
    for i in 0..n {
        rx.recv_into(&mut buf).unwrap();
        assert_eq!(u64::from_ne_bytes(buf[..8].try_into().unwrap()), i);
    }
    producer.join().unwrap();
    assert_eq!(rx.recv().err(), Some(RecvError::Closed));
}

/// Offsets of ring 0's words, from the start of the memory.
const TAIL: usize = 128 + 128;
const HEAD: usize = TAIL + 128;
const DATA: usize = TAIL + 384;

#[test]
fn hostile_indices_and_lengths_are_corrupt_not_crashes() {
    // A sender position far ahead of the receiver's: refused when the end is taken.
    let (a, b, spy) = pair(4096, ChannelOptions::new().capacity(256));
    let _tx = a.sender(0).unwrap();
    shm_core::conformance::poke(&spy, TAIL, &10_000u64.to_ne_bytes());
    let e = b.receiver(0).err().unwrap();
    assert_eq!(
        e,
        Error::Corrupt {
            what: "the sender's position",
            found: 10_000
        }
    );
    // A header without the valid bit, or with a length past the end of the ring.
    for bad in [7u64, (1 << 63) | 300, (1 << 63) | (1 << 40)] {
        let (a, b, spy) = pair(4096, ChannelOptions::new().capacity(256));
        let _tx = a.sender(0).unwrap();
        let mut rx = b.receiver(0).unwrap();
        shm_core::conformance::poke(&spy, DATA, &bad.to_ne_bytes());
        let e = Error::from(rx.try_recv().err().unwrap());
        assert_eq!(
            e,
            Error::Corrupt {
                what: "a message header",
                found: bad
            }
        );
        assert_eq!(
            rx.recv().err(),
            Some(RecvError::Failed(e)),
            "the endpoint stays broken"
        );
    }
    // Head moved backwards by the receiver side: the sender notices.
    let (a, b, spy) = pair(4096, ChannelOptions::new().capacity(256));
    let mut tx = a.sender(0).unwrap();
    let _rx = b.receiver(0).unwrap();
    shm_core::conformance::poke(&spy, HEAD, &u64::MAX.to_ne_bytes());
    tx.try_send(&[0; 8]).unwrap_or(());
    for _ in 0..40 {
        if let Err(e) = tx.try_send(&[0; 8]) {
            assert!(
                matches!(
                    Error::from(e),
                    Error::Corrupt {
                        what: "the receiver's position",
                        ..
                    }
                ),
                "{e:?}"
            );
            return;
        }
    }
    panic!("a sender with a corrupt head must fail once it needs the head");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// A peer scribbling random values over the control lines and the data: the receiver
    /// returns messages or errors, never panics, never loops forever.
    #[test]
    fn scribbled_rings_never_crash_the_receiver(
        sends in prop::collection::vec(0usize..200, 0..20),
        scribbles in prop::collection::vec((0usize..(384 + 256), any::<u64>()), 1..8),
    ) {
        let (a, b, spy) = pair(4096, ChannelOptions::new().capacity(256));
        let mut tx = a.sender(0).unwrap();
        let mut rx = b.receiver(0).unwrap();
        for (i, len) in sends.iter().enumerate() {
            let _ = tx.try_send(&msg(i as u64, *len));
        }
        for (off, v) in &scribbles {
            shm_core::conformance::poke(&spy, TAIL + (off & !7), &v.to_ne_bytes());
        }
        for _ in 0..64 {
            match rx.try_recv() {
                Ok(m) => { let _ = m.to_vec(); }
                // A scribbled holder word naming a dead process is that end's death.
                Err(TryRecvError::Empty | TryRecvError::Closed | TryRecvError::PeerDied { .. } | TryRecvError::Failed(Error::Corrupt { .. })) => break,
                Err(e) => prop_assert!(false, "unexpected {:?}", e),
            }
        }
        for _ in 0..64 {
            match tx.try_send(&[9; 40]) {
                Ok(()) => {}
                Err(TrySendError::Full | TrySendError::Closed | TrySendError::PeerDied { .. } | TrySendError::Failed(Error::Corrupt { .. }) | TrySendError::MessageTooLarge { .. }) => break,
                Err(e) => prop_assert!(false, "unexpected {:?}", e),
            }
        }
    }

    /// Any sequence of sizes arrives in order and byte-exact.
    #[test]
    fn any_sizes_round_trip(sizes in prop::collection::vec(0usize..=240, 1..60)) {
        let (a, b, _) = pair(4096, ChannelOptions::new().capacity(256));
        let mut tx = a.sender(0).unwrap();
        let mut rx = b.receiver(0).unwrap();
        let mut buf = Vec::new();
        for (i, len) in sizes.iter().enumerate() {
            // A message that must wrap leaves a PAD that holds its space until the receiver
            // passes it: then try_send says Full, and a receive attempt skips the PAD.
            let mut tries = 0;
            while let Err(e) = tx.try_send(&msg(i as u64, *len)) {
                prop_assert_eq!(e, TrySendError::Full);
                prop_assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
                tries += 1;
                prop_assert!(tries < 2, "one skipped PAD must make room");
            }
            prop_assert_eq!(rx.recv_into(&mut buf).unwrap(), *len);
            prop_assert_eq!(&buf, &msg(i as u64, *len));
        }
    }
}

#[test]
fn futures_run_on_a_plain_block_on() {
    let (a, b, _) = pair(1 << 14, ChannelOptions::new().capacity(1024));
    let producer = std::thread::spawn(move || {
        let mut tx = a.sender(0).unwrap();
        for i in 0..20_000u64 {
            block_on(tx.send_async(&i.to_ne_bytes())).unwrap();
        }
    });
    let mut rx = b.receiver(0).unwrap();
    let mut buf = Vec::new();
    for i in 0..20_000u64 {
        block_on(rx.recv_into_async(&mut buf)).unwrap();
        assert_eq!(buf, i.to_ne_bytes());
    }
    producer.join().unwrap();
    assert_eq!(
        block_on(rx.recv_into_async(&mut buf)),
        Err(RecvError::Closed)
    );
}

/// A future woken by a message but dropped before it is polled again loses nothing: the
/// next call gets that message. Likewise a pending reserve leaks no space.
#[test]
fn a_woken_future_dropped_before_its_next_poll_loses_nothing() {
    struct Flag(std::sync::atomic::AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let (a, b, _) = pair(1 << 14, ChannelOptions::new().capacity(256));
    let mut tx = a.sender(0).unwrap();
    let mut rx = b.receiver(0).unwrap();
    rx.set_wait(WaitMode::Block {
        spin: Duration::ZERO,
    });
    let flag = std::sync::Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
    let waker = std::task::Waker::from(flag.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    {
        let mut f = std::pin::pin!(rx.recv_async());
        assert!(
            f.as_mut().poll(&mut cx).is_pending(),
            "nothing there yet: it parks"
        );
        tx.send(b"hello").unwrap();
        let t = std::time::Instant::now();
        while !flag.0.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(t.elapsed() < Duration::from_secs(10), "woken by the send");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Dropped here, woken but not polled again.
    }
    assert_eq!(rx.try_recv().unwrap().to_vec(), b"hello");
    // Fill the ring, park a reserve, drop it: the space is all still there.
    while tx.try_send(&[0; 40]).is_ok() {}
    tx.set_wait(WaitMode::Block {
        spin: Duration::ZERO,
    });
    {
        let mut f = std::pin::pin!(tx.reserve_async(40));
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    assert!(n > 0);
    let mut again = 0;
    while tx.try_send(&[0; 40]).is_ok() {
        again += 1;
    }
    assert_eq!(again, n, "the dropped reserve took no space");
}

/// A sender descheduled between its two stores (the frame's header, then its position)
/// leaves its stored position one frame behind the receiver, which has already read the
/// frame: for as long as it stays descheduled that is a delay, never `Corrupt` (a loaded
/// two-core machine showed it in a ping-pong as "a message header ... is 97920"). One
/// frame further behind than that is a forged frame, and is reported.
#[test]
fn a_sender_paused_between_its_two_stores_is_a_delay_not_corruption() {
    let (a, b, spy) = pair(4096, ChannelOptions::new().capacity(256));
    let mut tx = a.sender(0).unwrap();
    let mut rx = b.receiver(0).unwrap();
    let mut buf = Vec::new();
    tx.send(&[1u8; 8]).unwrap();
    assert_eq!(rx.recv_into(&mut buf), Ok(8));
    tx.send(&[2u8; 24]).unwrap(); // a frame of 8 + 24 bytes, at position 16
    let mut tail = [0u8; 8];
    shm_core::conformance::peek(&spy, TAIL, &mut tail);
    let tail = u64::from_ne_bytes(tail);
    assert_eq!(tail, 16 + 32);
    // The sender's position as it stands before its second store: one frame back.
    shm_core::conformance::poke(&spy, TAIL, &16u64.to_ne_bytes());
    assert_eq!(
        rx.recv_into(&mut buf),
        Ok(24),
        "the header is there: read it"
    );
    // Waited through many peer checks (1 ms apart): a timeout, not Corrupt.
    let e = rx.recv_into_timeout(&mut buf, Duration::from_millis(60));
    assert!(matches!(e, Err(RecvTimeoutError::Timeout { .. })), "{e:?}");
    // The sender's second store lands: the stream goes on.
    shm_core::conformance::poke(&spy, TAIL, &tail.to_ne_bytes());
    tx.send(&[3u8; 8]).unwrap();
    assert_eq!(rx.recv_into(&mut buf), Ok(8));
    assert_eq!(buf, [3u8; 8]);

    // Two frames behind is not a paused sender: reported, at the second look.
    let (a, b, spy) = pair(4096, ChannelOptions::new().capacity(256));
    let mut tx = a.sender(0).unwrap();
    let mut rx = b.receiver(0).unwrap();
    tx.send(&[1u8; 8]).unwrap();
    tx.send(&[2u8; 8]).unwrap();
    assert_eq!(rx.recv_into(&mut buf), Ok(8));
    assert_eq!(rx.recv_into(&mut buf), Ok(8));
    shm_core::conformance::poke(&spy, TAIL, &0u64.to_ne_bytes());
    let e = rx.recv_into_timeout(&mut buf, Duration::from_secs(5));
    assert!(
        matches!(
            e,
            Err(RecvTimeoutError::Failed(Error::Corrupt {
                what: "a message header (none where the sender wrote one, or frames read past the sender's position)",
                found: 32
            }))
        ),
        "{e:?}"
    );
}

/// A held message (for bindings): read in place until released, no other receive while
/// it is held (so nothing is delivered twice), then the next one.
#[test]
fn a_held_message_stays_until_released_and_blocks_other_receives() {
    use shm_core::{Channel, ChannelOptions, Error, HeapMemory};
    let opts = ChannelOptions::new().capacity(1024);
    let chan =
        Channel::create(HeapMemory::new(opts.segment_len().unwrap() as usize), &opts).unwrap();
    let (mut tx, mut rx) = (chan.sender(0).unwrap(), chan.receiver(0).unwrap());
    tx.send(b"first").unwrap();
    tx.send(b"second").unwrap();
    let m = rx.recv_held(Some(std::time::Duration::ZERO)).unwrap();
    assert_eq!(m.len(), 5);
    let p = rx.held_ptr(&m).unwrap();
    let mut got = [0u8; 5];
    // SAFETY: the held message's 5 bytes, in heap memory this test alone writes, read
    // before the release.
    unsafe { std::ptr::copy_nonoverlapping(p, got.as_mut_ptr(), 5) };
    assert_eq!(&got, b"first");
    assert!(matches!(
        rx.try_recv().err(),
        Some(shm_core::TryRecvError::Failed(Error::InvalidOption { .. }))
    ));
    assert!(matches!(
        rx.recv_held(None),
        Err(Error::InvalidOption { .. })
    ));
    let mut v = Vec::new();
    assert!(rx.try_recv_into(&mut v).is_err());
    rx.release_held(m).unwrap();
    let m2 = rx.recv_held(None).unwrap();
    assert_eq!(m2.len(), 6);
    rx.release_held(m2).unwrap();
    assert_eq!(rx.try_recv().err(), Some(shm_core::TryRecvError::Empty));
    // Nothing held: an empty try is Empty, not a held message.
    assert!(matches!(
        rx.recv_held(Some(std::time::Duration::ZERO)),
        Err(Error::Empty)
    ));
}
