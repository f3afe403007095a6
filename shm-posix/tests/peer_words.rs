//! The nine promises issue 26 found broken in words a peer writes, each tried again the
//! way it broke: with real processes (this test binary, run as a role) that die, forge a
//! word or race the cleaner. Every call is bounded; no test asserts a speed (a bound that
//! fails is a hang watchdog, far above any honest time).

use shm_core::testing::numbered;
use shm_core::{RecvError, SendError, TryRecvError, TrySendError};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shm_core::testing::{unique_name, within, Peer, ROLE_VAR, TUTORIAL};
use shm_core::{
    Broadcast, BroadcastMode, BroadcastOptions, Channel, ChannelOptions, Error, Segment,
};
use shm_posix::{PosixShm, SegmentState, ShmOptions};

const BOUND: Duration = Duration::from_secs(20);
const ENTRY: &str = "peer";

// Broadcast payload offsets (the layout table in shm-core/src/broadcast/mod.rs).
const UPSTREAM: usize = 44;
const BASE: usize = 48;
const TAIL: usize = 128;
const LINES: usize = 640;
// Channel ring 0 (shm-core/src/channel/mod.rs): the ring starts at payload 128.
const RING_HEAD: usize = 128 + 128;

fn open(name: &str) -> PosixShm {
    ShmOptions::new(name).open().unwrap()
}

fn env_u64(k: &str) -> u64 {
    std::env::var(k).unwrap().parse().unwrap()
}

fn broadcast(name: &str, opts: &BroadcastOptions) -> Broadcast<PosixShm> {
    let len = opts.segment_len().unwrap();
    Broadcast::create(ShmOptions::new(name).size(len).create().unwrap(), opts).unwrap()
}

fn lossy() -> BroadcastOptions {
    BroadcastOptions::new()
        .mode(BroadcastMode::Lossy)
        .slots(8)
        .max_message(8)
        .max_subscribers(4)
}

/// Slot `k`'s offset in the payload, for `lossy()`'s layout.
fn slot_at(b: &Broadcast<PosixShm>, k: u64) -> usize {
    let slots_at = LINES + 128 * b.max_subscribers() as usize;
    let slot_size = (16 + b.max_message() as usize).div_ceil(64) * 64;
    slots_at + (k & (b.slots() - 1)) as usize * slot_size
}

/// The roles. Each prints `RESULT ready` once in place, then does its part.
#[test]
#[ignore = "entry point for child processes spawned by the other tests"]
fn peer() {
    let role = std::env::var(ROLE_VAR).expect("run by Peer::start");
    let name = std::env::var("SHM_NAME").unwrap_or_default();
    let forever = || std::thread::sleep(Duration::from_secs(600));
    let for_ms = || Duration::from_millis(env_u64("FOR_MS"));
    match role.as_str() {
        // Holds a subscriber line until killed.
        "subscriber" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            let _s = b.subscriber().unwrap();
            println!("RESULT ready");
            forever();
        }
        // Writes a complete gap notice of `K` numbers into the slot the tail names, for
        // `FOR_MS`, then stops (the honest publisher's next message overwrites it).
        "forge-notice" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            let k = env_u64("K");
            let tail = b.raw().atomic_u64(TAIL).unwrap();
            println!("RESULT ready");
            let end = Instant::now() + for_ms();
            while Instant::now() < end {
                let t = tail.load(Ordering::Relaxed);
                let slot = slot_at(&b, t);
                let len = (1u64 << 63) | (1 << 56) | k;
                b.raw()
                    .atomic_u64(slot + 8)
                    .unwrap()
                    .store(len, Ordering::Relaxed);
                b.raw()
                    .atomic_u64(slot)
                    .unwrap()
                    .store(t * 2 + 2, Ordering::Relaxed);
            }
            println!("RESULT done");
            forever();
        }
        // Stores `VALUE` into the base word once.
        "forge-base" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            let tail = b.raw().atomic_u64(TAIL).unwrap().load(Ordering::Relaxed);
            let v = match std::env::var("VALUE").unwrap().as_str() {
                "tail+1e6" => tail + 1_000_000,
                v => v.parse().unwrap(),
            };
            b.raw()
                .atomic_u64(BASE)
                .unwrap()
                .store(v, Ordering::Relaxed);
            println!("RESULT ready");
            forever();
        }
        // Holds the tail `AHEAD` past the real one for `FOR_MS`, then puts it back.
        "forge-tail" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            let tail = b.raw().atomic_u64(TAIL).unwrap();
            let ahead = env_u64("AHEAD");
            let real = tail.load(Ordering::Relaxed);
            println!("RESULT ready");
            let end = Instant::now() + for_ms();
            while Instant::now() < end {
                tail.store(real.saturating_add(ahead), Ordering::Relaxed);
            }
            tail.store(real, Ordering::Relaxed);
            println!("RESULT done");
            forever();
        }
        // Makes the upstream word odd (a forged outage), and nothing else.
        "forge-upstream" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            println!("RESULT ready");
            std::thread::sleep(Duration::from_millis(200));
            // The upstream word is the high half of the 8 bytes at 40 (little-endian).
            b.raw()
                .atomic_u64(UPSTREAM - 4)
                .unwrap()
                .fetch_or(1 << 32, Ordering::Relaxed);
            println!("RESULT done");
            forever();
        }
        // Stores `VALUE` at payload offset `AT` (8 bytes) and keeps it there.
        "scribble" => {
            let at = env_u64("AT") as usize;
            let v = env_u64("VALUE");
            let store = |w: &std::sync::atomic::AtomicU64| {
                w.store(v, Ordering::Relaxed);
                println!("RESULT ready");
                loop {
                    w.store(v, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_micros(50));
                }
            };
            if std::env::var("KIND").as_deref() == Ok("channel") {
                let c = Channel::attach(open(&name)).unwrap();
                store(c.raw().atomic_u64(at).unwrap());
            } else {
                let b = Broadcast::attach(open(&name)).unwrap();
                store(b.raw().atomic_u64(at).unwrap());
            }
        }
        // Opens the name again and again for `FOR_MS`; each time it holds a handle, checks
        // that the name still names the file it holds. Prints how often it held one and
        // how often the name was gone under it.
        "opener" => {
            println!("RESULT ready");
            let end = Instant::now() + for_ms();
            let (mut held, mut violations) = (0u64, 0u64);
            while Instant::now() < end {
                if let Ok(shm) = ShmOptions::new(&name).lock_timeout(Duration::ZERO).open() {
                    held += 1;
                    let st = nix_fstat(shm.as_fd());
                    std::thread::sleep(Duration::from_micros(200));
                    let same = std::fs::metadata(format!("/dev/shm{name}"))
                        .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == st);
                    if !same {
                        violations += 1;
                    }
                }
            }
            println!("RESULT held {held} violations {violations}");
            forever();
        }
        // Takes both ends of ring 0 and holds them until killed.
        "claim" => {
            let chan = Channel::attach(open(&name)).unwrap();
            let _tx = chan.sender(0).unwrap();
            let _rx = chan.receiver(0).unwrap();
            println!("RESULT ready");
            forever();
        }
        // Subscribes and prints the numbers it receives until `Closed`.
        "numbers" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            let mut s = b.subscriber().unwrap();
            println!("RESULT ready");
            let mut buf = Vec::new();
            loop {
                match numbered(&mut s, |s| s.recv_into_timeout(&mut buf, BOUND)) {
                    Ok(n) => println!("RESULT got {n}"),
                    Err(Error::Closed) => break,
                    Err(e) => println!("RESULT error {e:?}"),
                }
            }
            println!("RESULT closed");
            forever();
        }
        other => panic!("unknown role {other}"),
    }
}

fn nix_fstat(fd: std::os::fd::BorrowedFd<'_>) -> u64 {
    let f = std::fs::File::from(fd.try_clone_to_owned().unwrap());
    std::os::unix::fs::MetadataExt::ino(&f.metadata().unwrap())
}

/// Case 1: `wait_for_subscribers` and `subscriber_count` count only live processes: a
/// subscriber SIGKILLed (reaped or not) and lines holding impossible or dead pids are
/// not subscribers.
#[test]
fn case1_dead_and_impossible_subscribers_are_not_counted() {
    let name = unique_name("/shm-w1");
    let b = broadcast(&name, &lossy());
    let p = b.publisher().unwrap();
    let mut sub = Peer::start(ENTRY, "subscriber", &[("SHM_NAME", &name)]);
    assert_eq!(p.wait_for_subscribers(1, BOUND), Ok(1));
    sub.kill_unreaped();
    shm_core::testing::eventually("the killed subscriber is not counted", BOUND, || {
        b.subscriber_count() == 0
    });
    assert!(matches!(
        p.wait_for_subscribers(1, Duration::from_millis(300)),
        Err(Error::Timeout { .. })
    ));
    drop(sub);
    // Lines holding pids no live process has, marked active.
    let dead = shm_core::conformance::dead_pid();
    for (i, pid) in [u32::MAX, 1 << 23, dead].into_iter().enumerate() {
        let line = LINES + 128 * i;
        shm_core::conformance::poke(b.raw().memory(), 128 + line, &pid.to_ne_bytes());
        shm_core::conformance::poke(b.raw().memory(), 128 + line + 4, &0u32.to_ne_bytes());
    }
    assert_eq!(b.subscriber_count(), 0);
    assert!(matches!(
        p.wait_for_subscribers(1, Duration::from_millis(300)),
        Err(Error::Timeout { .. })
    ));
}

/// Case 2: a co-subscriber's forged gap notice at the tail (2^56 - 1 numbers, or 1000)
/// does not stop a lossy subscriber, nor get a reliable one evicted: once the forgery
/// stops, the next message published is received.
#[test]
fn case2_a_forged_gap_notice_does_not_stop_a_subscriber() {
    for (mode, k) in [
        (BroadcastMode::Lossy, (1u64 << 56) - 1),
        (BroadcastMode::Lossy, 1000),
        (BroadcastMode::Reliable, (1 << 56) - 1),
    ] {
        let name = unique_name("/shm-w2");
        let b = broadcast(&name, &lossy().mode(mode));
        let mut p = b.publisher().unwrap();
        let mut s = b.subscriber().unwrap();
        for i in 0..3u64 {
            p.publish(&i.to_ne_bytes()).unwrap();
        }
        let mut buf = Vec::new();
        for i in 0..3u64 {
            assert_eq!(
                numbered(&mut s, |s| s.recv_into_timeout(&mut buf, BOUND)),
                Ok(i)
            );
        }
        let forger = Peer::start(
            ENTRY,
            "forge-notice",
            &[("SHM_NAME", &name), ("K", &k.to_string()), ("FOR_MS", "5")],
        );
        assert_eq!(forger.next_result(BOUND).as_deref(), Some("done"));
        // The subscriber looked while the notice stood: it is not taken (the tail does not
        // cover it), so nothing moved.
        assert!(matches!(
            numbered(&mut s, |s| s.try_recv_into(&mut buf)),
            Err(Error::Empty) | Err(Error::Lagged { .. })
        ));
        p.publish(&3u64.to_ne_bytes()).unwrap();
        let got = within(BOUND, "the next message", move || {
            let mut buf = Vec::new();
            loop {
                match numbered(&mut s, |s| s.recv_into_timeout(&mut buf, BOUND)) {
                    Ok(n) => return (n, buf),
                    Err(Error::Lagged { .. }) => {}
                    Err(e) => panic!("{mode:?} k={k}: {e}"),
                }
            }
        });
        assert_eq!(got, (3, 3u64.to_ne_bytes().to_vec()), "{mode:?} k={k}");
    }
}

/// Case 3: a forged base word (far past the tail, 2^62, u64::MAX), stored once, does not
/// stop subscribers that join later nor one that joined before and lags.
#[test]
fn case3_a_forged_base_word_strands_nobody() {
    for value in ["tail+1e6", "4611686018427387904", "18446744073709551615"] {
        let name = unique_name("/shm-w3");
        let b = broadcast(&name, &lossy());
        let mut p = b.publisher().unwrap();
        let mut early = b.subscriber().unwrap();
        p.publish(&0u64.to_ne_bytes()).unwrap();
        let mut buf = Vec::new();
        assert_eq!(
            numbered(&mut early, |s| s.recv_into_timeout(&mut buf, BOUND)),
            Ok(0)
        );
        let _forger = Peer::start(
            ENTRY,
            "forge-base",
            &[("SHM_NAME", &name), ("VALUE", value)],
        );
        let mut late = b.subscriber().unwrap();
        // The early one lags (the ring goes round twice), then receives again.
        for i in 1..20u64 {
            p.publish(&i.to_ne_bytes()).unwrap();
        }
        let mut got_early = None;
        for _ in 0..20 {
            match numbered(&mut early, |s| s.recv_into_timeout(&mut buf, BOUND)) {
                Ok(n) => {
                    got_early = Some(n);
                    break;
                }
                Err(Error::Lagged { .. }) => {}
                Err(e) => panic!("{value}: {e}"),
            }
        }
        assert!(got_early.is_some_and(|n| n > 0), "{value}: {got_early:?}");
        // The late one got the messages after its join.
        let mut got_late = Vec::new();
        loop {
            match numbered(&mut late, |s| s.try_recv_into(&mut buf)) {
                Ok(n) => got_late.push(n),
                Err(Error::Lagged { .. }) => {}
                Err(Error::Empty) => break,
                Err(e) => panic!("{value}: {e}"),
            }
        }
        assert!(
            !got_late.is_empty(),
            "{value}: the late subscriber got nothing"
        );
        p.publish(&20u64.to_ne_bytes()).unwrap();
        assert_eq!(
            numbered(&mut late, |s| s.recv_into_timeout(&mut buf, BOUND)),
            Ok(20),
            "{value}"
        );
    }
}

/// Case 4: subscribers that join while a peer holds the tail far ahead (10^6, 2^62)
/// receive once the forgery stops (a lossy writable one, and a read-only one).
#[test]
fn case4_joining_during_a_forged_tail_strands_nobody() {
    for ahead in [1_000_000u64, 1 << 62] {
        let name = unique_name("/shm-w4");
        let b = broadcast(&name, &lossy().max_subscribers(16));
        let mut p = b.publisher().unwrap();
        p.publish(&0u64.to_ne_bytes()).unwrap();
        let forger = Peer::start(
            ENTRY,
            "forge-tail",
            &[
                ("SHM_NAME", &name),
                ("AHEAD", &ahead.to_string()),
                ("FOR_MS", "5"),
            ],
        );
        let mut joined = Vec::new();
        let ro = || {
            Broadcast::attach(ShmOptions::new(&name).read_only(true).open().unwrap())
                .and_then(|b| b.subscriber())
        };
        let t = Instant::now();
        while joined.len() < 16 && t.elapsed() < BOUND {
            let r = if joined.len() % 2 == 0 {
                Broadcast::attach(open(&name)).and_then(|b| b.subscriber())
            } else {
                ro()
            };
            match r {
                Ok(s) => joined.push(s),
                Err(Error::Corrupt { .. }) => {} // a tail above 2^62 is refused at join
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(forger.next_result(BOUND).as_deref(), Some("done"));
        drop(forger);
        for i in 1..4u64 {
            p.publish(&i.to_ne_bytes()).unwrap();
        }
        for (j, s) in joined.into_iter().enumerate() {
            let got = within(BOUND, "a joiner receives", move || {
                let mut s = s;
                let mut buf = Vec::new();
                loop {
                    match numbered(&mut s, |s| s.recv_into_timeout(&mut buf, BOUND)) {
                        Ok(n) => return n,
                        Err(Error::Lagged { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
            assert!((1..4).contains(&got) || got == 0, "joiner {j}: {got}");
        }
    }
}

/// Case 5: a parked future notices a forged outage (the upstream word made odd, nothing
/// else moved) without anything re-polling it: the park watches every word it names.
#[test]
fn case5_a_parked_future_sees_the_upstream_word() {
    let name = unique_name("/shm-w5");
    let b = broadcast(&name, &lossy());
    let _p = b.publisher().unwrap();
    let mut s = b.subscriber().unwrap();
    let _forger = Peer::start(ENTRY, "forge-upstream", &[("SHM_NAME", &name)]);
    let r = within(BOUND, "the parked future wakes", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut buf = Vec::new();
            s.recv_into_async(&mut buf).await
        })
    });
    assert_eq!(r, Err(RecvError::UpstreamLost));
}

/// Case 6: numbering cannot run off the end through the honest API: `start_at` near 2^62
/// and `publish_gap(u64::MAX)` are refused before anything is numbered past it, and a
/// subscriber process sees exactly the numbers published.
#[test]
fn case6_numbering_is_refused_before_it_runs_off_the_end() {
    let name = unique_name("/shm-w6");
    let b = broadcast(&name, &lossy());
    let mut p = b.publisher().unwrap();
    p.start_at((1 << 62) - 3).unwrap();
    let sub = Peer::start(ENTRY, "numbers", &[("SHM_NAME", &name)]);
    let mut ok = 0;
    for i in 0..100u64 {
        match p.publish(&i.to_ne_bytes()) {
            Ok(()) => ok += 1,
            Err(SendError::Failed(Error::InvalidOption { option, .. })) => {
                assert_eq!(option, "broadcast message number");
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(p.next_message(), 1 << 62);
    assert!(matches!(
        p.publish_gap(u64::MAX),
        Err(Error::InvalidOption { .. })
    ));
    assert_eq!(p.next_message(), 1 << 62);
    drop(p);
    let mut seen = Vec::new();
    loop {
        match sub.next_result(BOUND).as_deref() {
            Some("closed") => break,
            Some(l) => seen.push(l.to_owned()),
            None => panic!("the subscriber process said nothing"),
        }
    }
    let want: Vec<String> = (0..3)
        .map(|i| format!("got {}", (1u64 << 62) - 3 + i))
        .collect();
    assert_eq!(seen, want);

    let name = unique_name("/shm-w6g");
    let b = broadcast(&name, &lossy());
    let mut p = b.publisher().unwrap();
    assert!(matches!(
        p.publish_gap(u64::MAX),
        Err(Error::InvalidOption { .. })
    ));
    assert_eq!(p.next_message(), 0, "nothing was published");
}

/// Case 7: `cleanup` never unlinks a segment while a process holds it: one process opens
/// the stale segment again and again while this one cleans up; the opener never holds a
/// handle whose name was removed under it.
#[test]
fn case7_cleanup_never_unlinks_a_held_segment() {
    let name = unique_name("/shm-w7");
    let dead = shm_core::conformance::dead_pid();
    let make_stale = || {
        let mut shm = match ShmOptions::new(&name).size(4096).create() {
            Ok(s) => s,
            Err(shm_posix::Error::AlreadyExists { .. }) => return,
            Err(e) => panic!("{e}"),
        };
        shm.persist();
        let seg = Segment::create(shm, &TUTORIAL).unwrap();
        // Its creator is dead as far as the header says: stale once nobody holds it.
        shm_core::conformance::poke(seg.raw().memory(), 112, &dead.to_ne_bytes());
    };
    // The race needs both sides to hit it inside the window; on a loaded machine a window
    // can pass without one, so it runs again (up to four windows) until it did. Every
    // window's violations count.
    let mut ran = Vec::new();
    for _ in 0..4 {
        make_stale();
        let opener = Peer::start(ENTRY, "opener", &[("SHM_NAME", &name), ("FOR_MS", "3000")]);
        let end = Instant::now() + Duration::from_millis(3000);
        let mut removed = 0;
        while Instant::now() < end {
            for r in shm_posix::cleanup(&name, false).unwrap() {
                if r.removed {
                    removed += 1;
                }
            }
            make_stale();
        }
        let line = opener.next_result(BOUND).expect("the opener's counts");
        let words: Vec<&str> = line.split_whitespace().collect();
        let held: u64 = words[1].parse().unwrap();
        let violations: u64 = words[3].parse().unwrap();
        assert_eq!(violations, 0, "{line}");
        ran.push(format!("{line}, removed {removed}"));
        eprintln!("window: {line}, removed {removed}");
        if held > 0 && removed > 0 {
            break;
        }
    }
    let _ = shm_posix::unlink(&name);
    let last = ran.last().expect("one window ran");
    assert!(
        last.split_whitespace().nth(1) != Some("0") && !last.ends_with("removed 0"),
        "the race never ran: {ran:?}"
    );
}

/// Case 8: `inspect` runs the checks an attach runs: impossible values in a broadcast's
/// or a channel's moving words make the verdict `Corrupt`, with a reason naming the word.
#[test]
fn case8_inspect_calls_impossible_values_corrupt() {
    let name = unique_name("/shm-w8");
    let b = broadcast(&name, &lossy());
    let _p = b.publisher().unwrap();
    let me = u64::from(std::process::id());
    for (at, value, word) in [
        (TAIL, u64::MAX, "tail"),
        // The holder word (ours) and a close word no publisher writes.
        (256, me | (7 << 32), "closed"),
        // More sleepers than subscriber lines (and `data_seq` 0).
        (384, 5000, "sleepers"),
        // Line 0: its pid (ours: the subscriber below) and a state no one writes.
        (LINES, u64::from(std::process::id()) | (77 << 32), "state"),
    ] {
        let mut s = None;
        if word == "state" {
            s = Some(b.subscriber().unwrap());
        }
        let mut orig = [0u8; 8];
        shm_core::conformance::peek(b.raw().memory(), 128 + at, &mut orig);
        let _scribbler = Peer::start(
            ENTRY,
            "scribble",
            &[
                ("SHM_NAME", &name),
                ("AT", &at.to_string()),
                ("VALUE", &value.to_string()),
            ],
        );
        let l = shm_posix::inspect(&name).unwrap();
        assert_eq!(l.state, SegmentState::Corrupt, "{word}: {l:?}");
        assert!(
            l.reason.as_deref().is_some_and(|r| r.contains(word)),
            "{word}: {:?}",
            l.reason
        );
        drop(_scribbler);
        // Put the words back for the next round.
        shm_core::conformance::poke(b.raw().memory(), 128 + at, &orig);
        drop(s);
    }
    // A channel whose receiver position is far past the sender's.
    let name = unique_name("/shm-w8c");
    let opts = ChannelOptions::new().capacity(1024);
    let len = opts.segment_len().unwrap();
    let c = Channel::create(ShmOptions::new(&name).size(len).create().unwrap(), &opts).unwrap();
    let _tx = c.sender(0).unwrap();
    let _scribbler = Peer::start(
        ENTRY,
        "scribble",
        &[
            ("SHM_NAME", &name),
            ("KIND", "channel"),
            ("AT", &RING_HEAD.to_string()),
            ("VALUE", &(1u64 << 60).to_string()),
        ],
    );
    let l = shm_posix::inspect(&name).unwrap();
    assert_eq!(l.state, SegmentState::Corrupt, "{l:?}");
    assert!(
        l.reason.as_deref().is_some_and(|r| r.contains("position")),
        "{:?}",
        l.reason
    );
    drop(_scribbler);
    // Close bits no end writes (the ring's closed word, at ring offset 272).
    shm_core::conformance::poke(c.raw().memory(), 128 + RING_HEAD, &0u64.to_ne_bytes());
    let _scribbler = Peer::start(
        ENTRY,
        "scribble",
        &[
            ("SHM_NAME", &name),
            ("KIND", "channel"),
            ("AT", &(128 + 272).to_string()),
            ("VALUE", "8"),
        ],
    );
    let l = shm_posix::inspect(&name).unwrap();
    assert_eq!(l.state, SegmentState::Corrupt, "{l:?}");
    assert!(
        l.reason
            .as_deref()
            .is_some_and(|r| r.contains("close bits")),
        "{:?}",
        l.reason
    );
}

/// Case 9: an end used in a forked child gets `Forked`; the parent's messages all arrive
/// and the child's drop of its copy closes nothing.
#[test]
fn case9_an_inherited_end_refuses_to_work_in_a_forked_child() {
    let name = unique_name("/shm-w9");
    let opts = ChannelOptions::new().capacity(1 << 16);
    let len = opts.segment_len().unwrap();
    let c = Channel::create(ShmOptions::new(&name).size(len).create().unwrap(), &opts).unwrap();
    let mut tx = c.sender(0).unwrap();
    let mut rx = Channel::attach(open(&name)).unwrap().receiver(0).unwrap();
    let inherited: *mut shm_core::Sender<PosixShm> = &mut tx;
    // SAFETY: the child only tries to send through its copy of the end (no allocation:
    // the end refuses before it writes anything) and drops that copy, which lives in the
    // child's own memory (the parent's `tx` is untouched).
    let mut child = unsafe {
        shm_anon::fork(|| {
            let r = (*inherited).try_send(b"from the child");
            let code = match r {
                Err(TrySendError::Failed(Error::Forked { .. })) => 0,
                _ => 1,
            };
            std::ptr::drop_in_place(inherited);
            code
        })
    }
    .unwrap();
    for i in 0..1000u64 {
        tx.send_timeout(&i.to_ne_bytes(), BOUND).unwrap();
    }
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "the child's send was not refused"
    );
    for i in 0..1000u64 {
        let m = rx.recv_timeout(BOUND).unwrap().to_vec();
        assert_eq!(
            m,
            i.to_ne_bytes(),
            "the parent's messages arrive whole and in order"
        );
    }
    assert!(
        matches!(rx.try_recv(), Err(TryRecvError::Empty)),
        "the child's drop closed nothing"
    );
    // And a broadcast subscriber likewise.
    let bname = unique_name("/shm-w9b");
    let b = broadcast(&bname, &lossy());
    let mut s = b.subscriber().unwrap();
    // SAFETY: as above.
    let mut child = unsafe {
        shm_anon::fork(|| {
            let mut buf = Vec::new();
            match numbered(&mut s, |s| s.try_recv_into(&mut buf)) {
                Err(Error::Forked { .. }) => 0,
                _ => 1,
            }
        })
    }
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(
        b.subscriber_count(),
        1,
        "the child's copy left the line alone"
    );
}

/// Issue 34: a channel end is exclusive to one live process, shown with a second
/// process: while another process holds both ends, this one gets `RoleTaken` naming
/// that process; once it is killed (and even unreaped), the ends can be taken here.
#[test]
fn channel_ends_are_exclusive_to_one_live_process() {
    let name = unique_name("/shm-excl");
    let opts = ChannelOptions::new().capacity(1024);
    let len = opts.segment_len().unwrap();
    let c = Channel::create(ShmOptions::new(&name).size(len).create().unwrap(), &opts).unwrap();
    let mut holder = Peer::start(ENTRY, "claim", &[("SHM_NAME", &name)]);
    let pid = holder.pid();
    assert_eq!(
        c.sender(0).err(),
        Some(Error::RoleTaken {
            role: "sending",
            ring: 0,
            pid
        })
    );
    assert_eq!(
        c.receiver(0).err(),
        Some(Error::RoleTaken {
            role: "receiving",
            ring: 0,
            pid
        })
    );
    holder.kill_unreaped();
    shm_core::testing::eventually("the dead holder's ends are free", BOUND, || {
        c.sender(0).is_ok()
    });
    assert!(c.receiver(0).is_ok());
}
