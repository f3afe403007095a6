//! Broadcast across real processes on named POSIX segments: crashes, hostile subscribers,
//! joins at full rate, leaks, and random schedules checked against a model.

use shm_core::testing::numbered;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use shm_core::testing::{dev_shm_entries, fd_count, unique_name, within, Peer, ROLE_VAR};
use shm_core::{Broadcast, BroadcastMode, BroadcastOptions, Error, RecvError};
use shm_posix::{PosixShm, ShmOptions};

const BOUND: Duration = Duration::from_secs(20);
/// A call that takes longer than this hung (a watchdog, not a speed).
const HUNG: Duration = Duration::from_secs(20);

/// Message `n`: `n` in its first 8 bytes, then bytes derived from `n`.
fn msg(n: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (n as usize * 13 + i) as u8).collect();
    v[..8].copy_from_slice(&n.to_ne_bytes());
    v
}

fn env<T: std::str::FromStr>(k: &str, default: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn open(name: &str) -> Broadcast<PosixShm> {
    Broadcast::attach(ShmOptions::new(name).open().unwrap()).unwrap()
}

#[test]
#[ignore = "entry point for child processes spawned by the other tests"]
fn peer() {
    let role = std::env::var(ROLE_VAR).expect("run by Peer::start");
    let name = std::env::var("SHM_NAME").unwrap();
    match role.as_str() {
        "join-leave-cycles" => join_leave_cycles(),
        // Subscribes, then receives up to COUNT messages (or to the end), sleeping
        // DELAY_US between them; checks each; prints what it saw.
        "subscriber" => {
            let b = open(&name);
            let mut s = b.subscriber().unwrap();
            let first = s.next_message();
            println!("RESULT ready");
            let count: u64 = env("COUNT", u64::MAX);
            let delay = Duration::from_micros(env("DELAY_US", 0));
            let (mut got, mut missed, mut last) = (Vec::new(), 0u64, None::<u64>);
            let mut buf = Vec::new();
            let end = loop {
                if got.len() as u64 >= count {
                    break "left".to_owned();
                }
                match numbered(&mut s, |s| {
                    s.recv_into_timeout(&mut buf, Duration::from_secs(30))
                }) {
                    Ok(n) => {
                        assert_eq!(buf, msg(n, buf.len()), "message {n} torn");
                        assert!(last.is_none_or(|l| n > l), "out of order");
                        last = Some(n);
                        got.push(n);
                    }
                    Err(Error::Lagged { missed: m }) => missed += m,
                    Err(e) => break format!("{e:?}"),
                }
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
            };
            let first_got = got.first().copied().unwrap_or(u64::MAX);
            let last = last.unwrap_or(u64::MAX);
            let contiguous = got.windows(2).all(|w| w[1] == w[0] + 1);
            println!(
                "RESULT joined {first} first {first_got} last {last} got {} missed {missed} contiguous {contiguous} end {end}",
                got.len()
            );
        }
        // Publishes COUNT messages of SIZE bytes, then dies by SIGKILL without closing.
        "publisher-dies" => {
            let b = open(&name);
            let mut p = b.publisher().unwrap();
            println!("RESULT ready");
            let size: usize = env("SIZE", 64);
            for n in 0..env("COUNT", 10u64) {
                p.publish(&msg(n, size)).unwrap();
            }
            std::mem::forget(p);
            // SAFETY: SIGKILL to ourselves: the process ends here, as a crash would.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        // Publishes as fast as it can until killed.
        "flood" => {
            let b = open(&name);
            let mut p = b.publisher().unwrap();
            println!("RESULT ready");
            let mut n = 0u64;
            loop {
                p.publish(&msg(n, 64)).unwrap();
                n += 1;
            }
        }
        // Subscribes, then keeps writing adversarial values into its own line.
        "scribbler" => {
            let b = open(&name);
            let _s = b.subscriber().unwrap();
            let shm = ShmOptions::new(&name).open().unwrap();
            println!("RESULT ready");
            let line = 128 + 640; // payload + first subscriber line (this one's, see test)
            let values = [u64::MAX, 1 << 62, 0, 5, u64::MAX - 1];
            let t = Instant::now();
            let mut i = 0;
            while t.elapsed() < Duration::from_secs(3) {
                let v = values[i % values.len()];
                shm_core::conformance::poke(&shm, line + 8, &v.to_ne_bytes());
                shm_core::conformance::poke(&shm, line + 4, &0u32.to_ne_bytes());
                i += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn create(opts: &BroadcastOptions) -> (String, Broadcast<PosixShm>) {
    let name = unique_name("/shm-bcast");
    let shm = ShmOptions::new(&name)
        .size(opts.segment_len().unwrap())
        .create()
        .unwrap();
    (name.clone(), Broadcast::create(shm, opts).unwrap())
}

/// `joined J first F last L got G missed M contiguous C end E` as numbers and words.
struct Report {
    joined: u64,
    first: u64,
    last: u64,
    got: u64,
    missed: u64,
    contiguous: bool,
    end: String,
}

fn report(peer: &mut Peer) -> Report {
    let line = peer
        .next_result(Duration::from_secs(60))
        .expect("a subscriber report");
    let w: Vec<&str> = line.split(' ').collect();
    Report {
        joined: w[1].parse().unwrap(),
        first: w[3].parse().unwrap(),
        last: w[5].parse().unwrap(),
        got: w[7].parse().unwrap(),
        missed: w[9].parse().unwrap(),
        contiguous: w[11] == "true",
        end: w[13..].join(" "),
    }
}

/// Reliable: a subscriber process killed while it reads is evicted within the timeout;
/// the others get every message.
#[test]
fn killed_subscriber_is_evicted_and_the_others_lose_nothing() {
    let opts = BroadcastOptions::new()
        .slots(8)
        .max_message(256)
        .evict_timeout(Duration::from_millis(300));
    let (name, b) = create(&opts);
    let mut victim = Peer::start(
        "peer",
        "subscriber",
        &[("SHM_NAME", &name), ("DELAY_US", "2000")],
    );
    let mut good = Peer::start("peer", "subscriber", &[("SHM_NAME", &name)]);
    let mut p = b.publisher().unwrap();
    let n = 3000u64;
    let t = Instant::now();
    for i in 0..n {
        if i == 50 {
            victim.kill();
        }
        p.publish(&msg(i, 200)).unwrap();
    }
    drop(p);
    // A hang watchdog (no speed): a dead subscriber is evicted, never waited on for good.
    assert!(
        t.elapsed() < HUNG,
        "the publisher hung on the killed subscriber"
    );
    let r = report(&mut good);
    assert_eq!((r.first, r.got, r.missed, r.contiguous), (0, n, 0, true));
    assert_eq!(r.end, "Closed");
}

/// The publisher dies without closing: every subscriber reads what was published, then
/// gets `PeerDied` within the bounded wait.
#[test]
fn publisher_killed_is_peer_died_for_every_subscriber() {
    let opts = BroadcastOptions::new().slots(16).max_message(64);
    let (name, b) = create(&opts);
    let mut subs: Vec<_> = (0..3).map(|_| b.subscriber().unwrap()).collect();
    let mut publisher = Peer::start(
        "peer",
        "publisher-dies",
        &[("SHM_NAME", &name), ("COUNT", "10")],
    );
    let pid = publisher.pid();
    assert!(publisher.wait(BOUND).is_some());
    for s in subs.iter_mut() {
        let mut buf = Vec::new();
        for i in 0..10 {
            assert_eq!(numbered(s, |s| s.recv_into_timeout(&mut buf, BOUND)), Ok(i));
        }
    }
    let results = within(
        BOUND,
        "subscribers waiting on a dead publisher",
        move || {
            subs.iter_mut()
                .map(|s| s.recv_into(&mut Vec::new()).err())
                .collect::<Vec<_>>()
        },
    );
    for r in results {
        assert_eq!(r, Some(RecvError::PeerDied { pid }));
    }
}

/// A subscriber process scribbles adversarial positions into its line while the publisher
/// publishes: the publisher never waits past the timeout and never leaves the segment;
/// an honest subscriber gets everything.
#[test]
fn scribbling_subscriber_cannot_stall_or_derail_the_publisher() {
    let opts = BroadcastOptions::new()
        .slots(8)
        .max_message(64)
        .max_subscribers(2)
        .evict_timeout(Duration::from_millis(100));
    let (name, b) = create(&opts);
    // The scribbler takes line 0 (it subscribes first), the honest one line 1.
    let _scribbler = Peer::start("peer", "scribbler", &[("SHM_NAME", &name)]);
    let mut good = Peer::start("peer", "subscriber", &[("SHM_NAME", &name)]);
    let mut p = b.publisher().unwrap();
    let n = 2000u64;
    let t = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 0..n {
        let t1 = Instant::now();
        p.publish(&msg(i, 64)).unwrap();
        worst = worst.max(t1.elapsed());
    }
    drop(p);
    // Hang watchdogs only (no speed): one publish waits about the eviction timeout
    // (100 ms) at most; 200 times it means hung.
    assert!(t.elapsed() < HUNG, "the publisher hung");
    assert!(worst < HUNG, "one publish hung ({worst:?})");
    let r = report(&mut good);
    assert_eq!((r.first, r.got, r.contiguous), (0, n, true));
}

/// Subscribers join and leave while a publisher process floods the ring (lossy): each one
/// starts at its join point and sees an increasing run, its misses accounted for.
#[test]
fn joining_while_messages_flow_at_full_rate() {
    let opts = BroadcastOptions::new()
        .mode(BroadcastMode::Lossy)
        .slots(64)
        .max_message(64);
    let (name, b) = create(&opts);
    let _flood = Peer::start("peer", "flood", &[("SHM_NAME", &name)]);
    let mut buf = Vec::new();
    for _ in 0..200 {
        let mut s = b.subscriber().unwrap();
        let joined = s.next_message();
        // What the numbers skipped, and what the library said it skipped (`Lagged`).
        let (mut last, mut got, mut skipped, mut reported) = (None::<u64>, 0u64, 0u64, 0u64);
        while got < 50 {
            match numbered(&mut s, |s| s.recv_into_timeout(&mut buf, BOUND)) {
                Ok(n) => {
                    assert_eq!(buf, msg(n, 64));
                    assert!(n >= joined);
                    assert!(last.is_none_or(|l| n > l));
                    skipped += match last {
                        None => n - joined,
                        Some(l) => n - l - 1,
                    };
                    last = Some(n);
                    got += 1;
                }
                Err(Error::Lagged { missed }) => reported += missed,
                Err(e) => panic!("{e}"),
            }
        }
        // Every message it did not get was reported missed, exactly.
        assert_eq!(reported, skipped, "joined at {joined}, last {last:?}");
    }
}

/// 10,000 attach / subscribe / leave cycles leave fds, mappings and /dev/shm as they were
/// (counted in a child process of its own: parallel tests open fds in this one).
#[test]
fn ten_thousand_join_leave_cycles_leak_nothing() {
    let out = shm_core::testing::spawn_self("peer", "join-leave-cycles", &[("SHM_NAME", "-")], "");
    shm_core::testing::assert_counts_unchanged(&out, &["fds", "mappings", "/dev/shm entries"]);
}

fn join_leave_cycles() {
    let opts = BroadcastOptions::new().slots(4).max_message(16);
    let (name, b) = create(&opts);
    let mut p = b.publisher().unwrap();
    let maps = || {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&name[1..]))
            .count()
    };
    // Only this process's names: parallel tests make others.
    let mine = format!("shm-bcast-{}-", std::process::id());
    let (fds, mapped, entries) = (fd_count(), maps(), dev_shm_entries(&mine).len());
    let mut buf = Vec::new();
    for i in 0..10_000u64 {
        let other = open(&name);
        let mut s = other.subscriber().unwrap();
        p.publish(&msg(i, 16)).unwrap();
        assert_eq!(numbered(&mut s, |s| s.recv_into(&mut buf)), Ok(i));
    }
    println!(
        "RESULT {fds} {} {mapped} {} {entries} {}",
        fd_count(),
        maps(),
        dev_shm_entries(&mine).len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Random schedules of joins (after `join_at` messages), reads (`count`, with a
    /// delay between them) and leaves, by real subscriber processes, checked against the
    /// model: reliable subscribers see exactly the messages published while they were
    /// joined, in order; lossy ones an increasing subsequence whose misses add up.
    #[test]
    fn random_schedules_match_the_model(
        lossy in any::<bool>(),
        slots_log in 2u32..5,
        total in 40u64..200,
        subs in proptest::collection::vec((0u64..40, 1u64..80, 0u64..300), 1..4),
    ) {
        let mode = if lossy { BroadcastMode::Lossy } else { BroadcastMode::Reliable };
        let opts = BroadcastOptions::new()
            .mode(mode)
            .slots(1 << slots_log)
            .max_message(64)
            .evict_timeout(Duration::from_secs(20));
        let (name, b) = create(&opts);
        let mut p = b.publisher().unwrap();
        let mut order: Vec<_> = subs.iter().enumerate().collect();
        order.sort_by_key(|(_, s)| s.0);
        let mut peers = Vec::new();
        let mut published = 0u64;
        for (_, &(join_at, count, delay)) in &order {
            while published < join_at.min(total) {
                p.publish(&msg(published, 64)).unwrap();
                published += 1;
            }
            let (c, d) = (count.to_string(), delay.to_string());
            let peer = Peer::start(
                "peer",
                "subscriber",
                &[("SHM_NAME", &name), ("COUNT", &c), ("DELAY_US", &d)],
            );
            peers.push((peer, count, published));
        }
        while published < total {
            p.publish(&msg(published, 64)).unwrap();
            published += 1;
        }
        drop(p);
        for (mut peer, count, joined_after) in peers {
            let r = report(&mut peer);
            // The parent publishes nothing while a child joins: it joins exactly there.
            prop_assert_eq!(r.joined, joined_after);
            let expected = count.min(total - r.joined);
            prop_assert!(r.end == "left" || r.end == "Closed", "{}", r.end);
            if lossy {
                // An increasing subsequence (checked by the child) whose misses add up.
                prop_assert!(r.got <= expected);
                if r.got > 0 {
                    prop_assert_eq!(r.joined + r.got + r.missed, r.last + 1);
                    prop_assert!(r.last < total);
                }
            } else {
                prop_assert_eq!(r.missed, 0);
                prop_assert_eq!(r.got, expected);
                prop_assert!(r.contiguous, "reliable gap");
                if r.got > 0 {
                    prop_assert_eq!(r.first, r.joined);
                }
            }
        }
    }
}
