//! The channel between a parent and a forked child over anonymous shared memory.

use shm_core::{RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use shm_anon::{fork, AnonShm};
use shm_core::{Channel, ChannelOptions, Error, WaitMode};

fn msg(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 131 + j * 7 + len) as u8).collect()
}

fn channel(len: usize, opts: ChannelOptions) -> Channel<AnonShm> {
    Channel::create(AnonShm::create(len).unwrap(), &opts).unwrap()
}

/// Opens the child's own view (a fresh mapping of the same pages) of `chan`.
fn child_view(chan: &Channel<AnonShm>) -> Option<Channel<AnonShm>> {
    Channel::attach(chan.raw().memory().alias().ok()?).ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Any sequence of sizes, from 0 to the largest message, sent by a forked child,
    /// arrives here in order and byte-exact.
    #[test]
    fn any_sizes_cross_fork_in_order(sizes in prop::collection::vec(
        prop_oneof![0usize..64, 0usize..=4080, Just(4080usize)], 1..80)) {
        let chan = channel(1 << 16, ChannelOptions::new().capacity(4096));
        prop_assert_eq!(chan.max_message(), 4080);
        let expected: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &l)| msg(i, l)).collect();
        // SAFETY: the child maps an alias, sends prepared buffers and exits: no allocation.
        let mut child = unsafe {
            fork(|| {
                let Some(view) = child_view(&chan) else { return 2 };
                let Ok(mut tx) = view.sender(0) else { return 3 };
                for m in &expected {
                    if tx.send(m).is_err() {
                        return 4;
                    }
                }
                0
            })
        }
        .unwrap();
        let mut rx = chan.receiver(0).unwrap();
        let mut buf = Vec::new();
        for (i, m) in expected.iter().enumerate() {
            let n = rx.recv_into(&mut buf).unwrap();
            prop_assert_eq!(n, m.len(), "message {}", i);
            prop_assert_eq!(&buf, m, "message {}", i);
        }
        prop_assert_eq!(child.wait().unwrap().code(), Some(0));
        prop_assert_eq!(rx.recv().err(), Some(RecvError::Closed));
    }
}

#[test]
fn a_million_small_messages_with_both_sides_blocking() {
    let chan = channel(1 << 16, ChannelOptions::new().capacity(4096));
    let n = 1_000_000u64;
    let block = WaitMode::Block {
        spin: Duration::from_micros(2),
    };
    // SAFETY: the child only sends through the channel.
    let mut child = unsafe {
        fork(|| {
            let Some(view) = child_view(&chan) else {
                return 2;
            };
            let Ok(mut tx) = view.sender(0) else { return 3 };
            tx.set_wait(block);
            for i in 0..n {
                if tx.send(&i.to_ne_bytes()).is_err() {
                    return 4;
                }
            }
            0
        })
    }
    .unwrap();
    let mut rx = chan.receiver(0).unwrap();
    rx.set_wait(block);
    // Watchdog: no timing assertion, only a bound against a hang.
    let deadline = Duration::from_secs(120);
    let start = Instant::now();
    let mut word = [0u8; 8];
    for i in 0..n {
        let m = rx
            .recv_timeout(deadline.saturating_sub(start.elapsed()))
            .expect("hang or loss");
        m.read(0, &mut word).unwrap();
        assert_eq!(u64::from_ne_bytes(word), i, "lost, duplicated or reordered");
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(rx.recv().err(), Some(RecvError::Closed));
}

#[test]
fn receiver_blocked_on_a_killed_sender_gets_peer_died() {
    let chan = channel(1 << 16, ChannelOptions::new());
    // SAFETY: the child takes the sending end, sends one message and sleeps.
    let mut child = unsafe {
        fork(|| {
            let Some(view) = child_view(&chan) else {
                return 2;
            };
            let Ok(mut tx) = view.sender(0) else { return 3 };
            let _ = tx.send(b"before");
            loop {
                libc::sleep(100);
            }
        })
    }
    .unwrap();
    let mut rx = chan.receiver(0).unwrap();
    rx.set_wait(WaitMode::default());
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)).unwrap().to_vec(),
        b"before"
    );
    let pid = child.pid();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        child.kill().unwrap();
        child.wait().unwrap();
    });
    // Bounded by its own timeout: a Timeout here would fail as the wrong error.
    let err = rx.recv_timeout(Duration::from_secs(30)).err().unwrap();
    assert_eq!(err, RecvTimeoutError::PeerDied { pid });
}

#[test]
fn sender_blocked_on_a_full_ring_of_a_killed_receiver_gets_peer_died() {
    let chan = channel(1 << 12, ChannelOptions::new().capacity(256));
    // SAFETY: the child takes the receiving end and sleeps.
    let mut child = unsafe {
        fork(|| {
            let Some(view) = child_view(&chan) else {
                return 2;
            };
            // The parent probes the end below by taking and dropping it; retry while a
            // probe holds it.
            let mut tries = 0;
            let _rx = loop {
                match view.receiver(0) {
                    Ok(rx) => break rx,
                    Err(_) if tries < 100_000 => tries += 1,
                    Err(_) => return 3,
                }
                libc::usleep(100);
            };
            loop {
                libc::sleep(100);
            }
        })
    }
    .unwrap();
    let mut tx = chan.sender(0).unwrap();
    // Wait for the child to take its end, then fill the ring.
    let t = Instant::now();
    while chan.receiver(0).is_ok() {
        assert!(t.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(1));
    }
    while tx.try_send(&[0; 64]).is_ok() {}
    let pid = child.pid();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        child.kill().unwrap();
        child.wait().unwrap();
    });
    let err = tx
        .send_timeout(&[0; 64], Duration::from_secs(30))
        .err()
        .unwrap();
    assert_eq!(err, SendTimeoutError::PeerDied { pid });
}

#[test]
fn a_scribbling_peer_process_never_crashes_or_hangs_the_receiver() {
    let chan = channel(1 << 14, ChannelOptions::new().capacity(1024));
    let mut tx = chan.sender(0).unwrap();
    for i in 0..40 {
        let _ = tx.try_send(&msg(i, 20));
    }
    // The child writes pseudo-random words over the ring's control lines and data.
    // SAFETY: the child only does atomic stores into the region and arithmetic.
    let mut child = unsafe {
        fork(|| {
            let Some(view) = child_view(&chan) else {
                return 2;
            };
            let base = 128 + 128; // header + channel header: the ring starts here
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            for _ in 0..2_000_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let off = ((x >> 40) as usize % (384 + 1024)) & !7;
                let _ = view
                    .raw()
                    .atomic_u64(base - 128 + off)
                    .map(|w| w.store(x, std::sync::atomic::Ordering::Relaxed));
            }
            0
        })
    }
    .unwrap();
    let (mut ok, mut corrupt, mut quiet) = (0u64, 0u64, 0u64);
    // Taking the end reads the positions too: Corrupt is a fine answer there as well.
    let mut rx = match chan.receiver(0) {
        Ok(rx) => Some(rx),
        Err(Error::Corrupt { .. }) => {
            corrupt += 1;
            None
        }
        Err(e) => panic!("unexpected {e:?}"),
    };
    // Until the scribbler is done (bounded: a watchdog far above its run time), every
    // call returns (bounded by its timeout) a message within the ring, `Corrupt` (final:
    // then the end stays broken), or a quiet `Timeout` (or what a scribbled holder word
    // reads as); nothing else.
    let start = Instant::now();
    while child.wait_timeout(Duration::ZERO).unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the scribbler hung"
        );
        let Some(r) = rx.as_mut() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let got = r.recv_timeout(Duration::from_millis(5)).map(|m| m.len());
        match got {
            Ok(len) => {
                assert!(len <= 1024, "a message longer than the ring: {len}");
                ok += 1;
            }
            Err(RecvTimeoutError::Failed(e @ Error::Corrupt { .. })) => {
                corrupt += 1;
                assert_eq!(
                    r.try_recv().err(),
                    Some(TryRecvError::Failed(e)),
                    "Corrupt is final for the end"
                );
                rx = None;
            }
            // A scribbled holder word reads as a dead or closed sender (the word table).
            Err(
                RecvTimeoutError::Timeout { .. }
                | RecvTimeoutError::PeerDied { .. }
                | RecvTimeoutError::Closed,
            ) => quiet += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the scribbler did not run its 2,000,000 writes"
    );
    println!("valid messages {ok}, corrupt {corrupt}, quiet {quiet}");
    // Forty messages were queued and the ring's control lines were scribbled: the
    // receiver either read messages or said the ring is corrupt.
    assert!(
        corrupt == 1 || ok > 0,
        "ok {ok}, corrupt {corrupt}, quiet {quiet}"
    );
}

/// A sender that closes and then exits at once, while the receiver waits: the receiver
/// checks its peer every millisecond, and a close that lands between its look at the
/// close bit and its liveness check (the process then already gone) was reported as
/// `PeerDied`. A clean close is `Closed`, whenever it lands: 1,000 children close at
/// random points of the receiver's check cycle (0 to 3 ms after it starts waiting).
#[test]
fn a_sender_that_closes_and_exits_at_once_is_closed_not_peer_died() {
    for i in 0..1000u64 {
        let chan = channel(1 << 14, ChannelOptions::new().capacity(4096));
        let mut rx = chan.receiver(0).unwrap();
        rx.set_wait(WaitMode::default());
        let delay_us = (i * 7919) % 3000;
        // SAFETY: the child only uses the inherited mapping, sleeps, and exits.
        let mut child = unsafe {
            fork(|| {
                let Some(view) = child_view(&chan) else {
                    return 2;
                };
                let Ok(tx) = view.sender(0) else { return 3 };
                std::thread::sleep(Duration::from_micros(delay_us));
                drop(tx); // close
                0 // and exit at once
            })
        }
        .unwrap();
        let mut buf = Vec::new();
        let r = rx.recv_into_timeout(&mut buf, Duration::from_secs(10));
        assert_eq!(
            r,
            Err(RecvTimeoutError::Closed),
            "child {i} (delay {delay_us} us)"
        );
        assert!(child.wait().unwrap().success());
    }
}
