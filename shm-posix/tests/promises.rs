//! The library's promises, tried from outside the way issue 17 found them broken: every
//! public write path on read-only handles, futures parked before their peer existed,
//! truncation under a parked future, co-subscribers that silence wake-ups, forge stamps
//! or the tail, or churn a subscriber line, and peers that die without being reaped.
//! Hostile and dying peers are real processes (this test binary, run as a role). Every
//! call is bounded by `within` (generous bounds; no test asserts a speed).

use shm_core::testing::numbered;
use shm_core::{RecvError, SendError};
use std::time::Duration;

use shm_core::testing::{unique_name, within, MyData, Peer, ROLE_VAR, TUTORIAL};
use shm_core::{
    Broadcast, BroadcastMode, BroadcastOptions, Channel, ChannelOptions, Error, Record, Segment,
    SeqLock,
};
use shm_posix::{PosixShm, ShmOptions};

const BOUND: Duration = Duration::from_secs(20);
const ENTRY: &str = "peer";

// Broadcast payload offsets (shm-core/src/broadcast/mod.rs), from the payload start.
const PAYLOAD: usize = 128;
const TAIL: usize = 128;
const MEMBERS: usize = 264;
const SLEEPERS: usize = 384;
const LINES: usize = 640;

fn path(name: &str) -> String {
    format!("/dev/shm{name}")
}

fn open(name: &str) -> PosixShm {
    ShmOptions::new(name).open().unwrap()
}

fn read_only(name: &str) -> PosixShm {
    ShmOptions::new(name).read_only(true).open().unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn env_u64(k: &str) -> u64 {
    std::env::var(k).unwrap().parse().unwrap()
}

/// The roles. Each prints `RESULT ready` once in place, then does its part.
#[test]
#[ignore = "entry point for child processes spawned by the other tests"]
fn peer() {
    let role = std::env::var(ROLE_VAR).expect("run by Peer::start");
    let name = std::env::var("SHM_NAME").unwrap_or_default();
    let forever = || std::thread::sleep(Duration::from_secs(600));
    match role.as_str() {
        "claim-sender" => {
            let chan = Channel::attach(open(&name)).unwrap();
            let _tx = chan.sender(0).unwrap();
            println!("RESULT ready");
            forever();
        }
        "claim-receiver" => {
            let chan = Channel::attach(open(&name)).unwrap();
            let _rx = chan.receiver(0).unwrap();
            println!("RESULT ready");
            forever();
        }
        "claim-publisher" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            let _p = b.publisher().unwrap();
            println!("RESULT ready");
            forever();
        }
        "idle-subscriber" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            let _s = b.subscriber().unwrap();
            println!("RESULT ready");
            forever();
        }
        "truncate" => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path(&name))
                .unwrap();
            f.set_len(env_u64("TRUNCATE_TO")).unwrap();
            println!("RESULT ready");
        }
        // Stores 0 into the broadcast's `sleepers` word once (the 4 bytes at SLEEPERS).
        "zero-sleepers" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            let w = b.raw().atomic_u64(SLEEPERS).unwrap();
            let mut cur = w.load(std::sync::atomic::Ordering::Relaxed);
            while let Err(now) = w.compare_exchange(
                cur,
                cur & !0xFFFF_FFFF,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            ) {
                cur = now;
            }
            println!("RESULT ready");
            forever();
        }
        // Puts `data_seq` (the high half of the word at SLEEPERS) back after every bump,
        // for `FOR_MS`.
        "restore-data-seq" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            let w = b.raw().atomic_u64(SLEEPERS).unwrap();
            let seq = w.load(std::sync::atomic::Ordering::Relaxed) >> 32;
            println!("RESULT ready");
            let end = std::time::Instant::now() + Duration::from_millis(env_u64("FOR_MS"));
            while std::time::Instant::now() < end {
                let cur = w.load(std::sync::atomic::Ordering::Relaxed);
                if cur >> 32 != seq {
                    let _ = w.compare_exchange(
                        cur,
                        (seq << 32) | (cur & 0xFFFF_FFFF),
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
                std::hint::spin_loop();
            }
            println!("RESULT done");
            forever();
        }
        // Writes u64::MAX into every slot stamp for `FOR_MS`.
        "forge-stamps" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            let slots_at = LINES + 128 * b.max_subscribers() as usize;
            let slot_size = (16 + b.max_message() as usize).div_ceil(64) * 64;
            println!("RESULT ready");
            let end = std::time::Instant::now() + Duration::from_millis(env_u64("FOR_MS"));
            while std::time::Instant::now() < end {
                for k in 0..b.slots() as usize {
                    b.raw()
                        .atomic_u64(slots_at + k * slot_size)
                        .unwrap()
                        .store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
                }
            }
            println!("RESULT done");
            forever();
        }
        // Holds `tail` at 2^62 for `FOR_MS`, then puts the real value back.
        "forge-tail" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            let tail = b.raw().atomic_u64(TAIL).unwrap();
            let real = tail.load(std::sync::atomic::Ordering::Relaxed);
            println!("RESULT ready");
            let end = std::time::Instant::now() + Duration::from_millis(env_u64("FOR_MS"));
            while std::time::Instant::now() < end {
                tail.store(1 << 62, std::sync::atomic::Ordering::Relaxed);
            }
            tail.store(real, std::sync::atomic::Ordering::Relaxed);
            println!("RESULT done");
            forever();
        }
        // Churns subscriber line 0: state = 0, position = 0, pid = k++, members += 1.
        "churn-line" => {
            let b = Broadcast::attach(open(&name)).unwrap();
            let head = b.raw().atomic_u64(LINES).unwrap();
            let pos = b.raw().atomic_u64(LINES + 8).unwrap();
            let members = b.raw().atomic_u64(MEMBERS).unwrap();
            // FIRST_PID = 0: pids that are alive (so that each looks like a new, live
            // subscriber), every process in /proc from the `SKIP`-th on, round and
            // round; else k++ from FIRST_PID.
            let first = env_u64("FIRST_PID");
            let skip = env_u64("SKIP") as usize;
            let mut live: Vec<u64> = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect();
            live.sort_unstable();
            let n = live.len();
            live.rotate_left(skip % n);
            let counting = (first..).step_by(1);
            let pids: Box<dyn Iterator<Item = u64>> = if first == 0 {
                Box::new(live.into_iter().cycle())
            } else {
                Box::new(counting)
            };
            println!("RESULT ready");
            for k in pids {
                // Little-endian word: pid in the low half, state 0 in the high half.
                head.store(k & 0xFFFF_FFFF, std::sync::atomic::Ordering::Relaxed);
                pos.store(0, std::sync::atomic::Ordering::Relaxed);
                members.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::hint::spin_loop();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn start(role: &str, name: &str, envs: &[(&str, &str)]) -> Peer {
    let mut all = vec![("SHM_NAME", name)];
    all.extend_from_slice(envs);
    Peer::start(ENTRY, role, &all)
}

fn channel(name: &str, cap: u64) -> Channel<PosixShm> {
    let opts = ChannelOptions::new().capacity(cap);
    let len = opts.segment_len().unwrap();
    Channel::create(ShmOptions::new(name).size(len).create().unwrap(), &opts).unwrap()
}

fn broadcast(name: &str, opts: &BroadcastOptions) -> Broadcast<PosixShm> {
    let len = opts.segment_len().unwrap();
    Broadcast::create(ShmOptions::new(name).size(len).create().unwrap(), opts).unwrap()
}

#[derive(Clone, Copy, shm_core::bytemuck::Pod, shm_core::bytemuck::Zeroable)]
#[bytemuck(crate = "shm_core::bytemuck")]
#[repr(C)]
struct Quad([u64; 4]);
impl Record for Quad {
    const NAME: &'static str = "Quad";
}

fn is_read_only<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    match r {
        Err(Error::ReadOnly { .. }) => {}
        other => panic!("{what}: expected ReadOnly, got {other:?}"),
    }
}

/// Every public call that writes to shared memory, on read-only posix handles: each is
/// `Error::ReadOnly`, and reads still work. (Before: SIGSEGV.)
#[test]
fn every_write_path_on_a_read_only_posix_handle_is_read_only() {
    let name = unique_name("/shm-promise-ro");
    let _w = Segment::create(
        ShmOptions::new(&name).size(4096).create().unwrap(),
        &TUTORIAL,
    )
    .unwrap();
    let seg = Segment::<MyData, _>::attach(read_only(&name)).unwrap();
    assert_eq!(seg.read().unwrap(), TUTORIAL);
    is_read_only(seg.write(&TUTORIAL), "Segment::write");
    is_read_only(seg.write_at(0, &[1, 2, 3]), "Segment::write_at");
    is_read_only(seg.raw().write_at(64, &[1]), "RawSegment::write_at");
    is_read_only(seg.raw().atomic_u64(0), "RawSegment::atomic_u64");
    assert_eq!(
        seg.raw()
            .load_u64(0, std::sync::atomic::Ordering::Relaxed)
            .unwrap(),
        100
    );
    is_read_only(
        Segment::<MyData, _>::create(read_only(&name), &TUTORIAL),
        "Segment::create",
    );
    let foreign = Segment::<Quad, _>::attach_foreign(read_only(&name)).unwrap();
    is_read_only(foreign.write(&Quad([1; 4])), "attach_foreign + write");
    is_read_only(
        Segment::<Quad, _>::create_foreign(read_only(&name), &Quad([1; 4])),
        "create_foreign",
    );
    is_read_only(
        SeqLock::<MyData, _>::create(read_only(&name), &TUTORIAL),
        "SeqLock::create",
    );
    is_read_only(
        Channel::create(read_only(&name), &ChannelOptions::new()),
        "Channel::create",
    );
    is_read_only(
        Broadcast::create(read_only(&name), &BroadcastOptions::new().slots(2)),
        "Broadcast::create",
    );

    let lock_name = unique_name("/shm-promise-ro");
    let _l = SeqLock::create(
        ShmOptions::new(&lock_name).size(4096).create().unwrap(),
        &TUTORIAL,
    )
    .unwrap();
    let lock = SeqLock::<MyData, _>::attach(read_only(&lock_name)).unwrap();
    assert_eq!(lock.load().unwrap(), TUTORIAL);
    is_read_only(lock.store(&TUTORIAL), "SeqLock::store");
    is_read_only(lock.update(|v| v.col1 += 1), "SeqLock::update");

    let chan_name = unique_name("/shm-promise-ro");
    let _c = channel(&chan_name, 4096);
    let chan = Channel::attach(read_only(&chan_name)).unwrap();
    is_read_only(chan.sender(0), "Channel::sender");
    is_read_only(chan.receiver(0), "Channel::receiver");

    for mode in [BroadcastMode::Reliable, BroadcastMode::Lossy] {
        let b_name = unique_name("/shm-promise-ro");
        let _b = broadcast(&b_name, &BroadcastOptions::new().mode(mode).slots(4));
        let b = Broadcast::attach(read_only(&b_name)).unwrap();
        is_read_only(b.publisher(), "Broadcast::publisher");
        if mode == BroadcastMode::Reliable {
            is_read_only(b.subscriber(), "reliable Broadcast::subscribe");
        } else {
            assert!(b.subscriber().is_ok(), "a lossy read-only subscriber reads");
        }
    }
}

/// The same on read-only memfd handles (`from_fd_read_only`, and a server's
/// `connect_read_only`).
#[test]
fn every_write_path_on_a_read_only_memfd_handle_is_read_only() {
    use shm_memfd::{MemfdOptions, MemfdShm};
    use std::os::fd::AsFd;
    // A writable memfd and a read-only handle onto the same file.
    let pair = || {
        let m = MemfdOptions::new().size(1 << 16).create().unwrap();
        let fd = m.as_fd().try_clone_to_owned().unwrap();
        (m, MemfdShm::from_fd_read_only(fd).unwrap())
    };
    let (m, ro) = pair();
    let _w = Segment::create(m, &TUTORIAL).unwrap();
    let seg = Segment::<MyData, _>::attach(ro).unwrap();
    assert_eq!(seg.read().unwrap(), TUTORIAL);
    is_read_only(seg.write(&TUTORIAL), "Segment::write");
    is_read_only(seg.write_at(0, &[1]), "Segment::write_at");
    is_read_only(seg.raw().atomic_u64(0), "RawSegment::atomic_u64");
    let (m, ro) = pair();
    let _l = SeqLock::create(m, &TUTORIAL).unwrap();
    let lock = SeqLock::<MyData, _>::attach(ro).unwrap();
    is_read_only(lock.store(&TUTORIAL), "SeqLock::store");
    let (m, ro) = pair();
    let _c = Channel::create(m, &ChannelOptions::new()).unwrap();
    let chan = Channel::attach(ro).unwrap();
    is_read_only(chan.sender(0), "Channel::sender");
    is_read_only(chan.receiver(0), "Channel::receiver");
    let (_m, ro) = pair();
    is_read_only(
        Segment::<MyData, _>::create(ro, &TUTORIAL),
        "Segment::create",
    );
    let (_m, ro) = pair();
    let foreign = Segment::<Quad, _>::attach_foreign(ro).unwrap();
    is_read_only(foreign.write(&Quad([7; 4])), "attach_foreign + write");

    // A server's read-only client.
    let path = std::env::temp_dir().join(unique_name("shm-promise-ro") + ".sock");
    let server = shm_memfd::Server::bind(&path).unwrap();
    let mem = MemfdOptions::new().size(4096).create().unwrap();
    let seg = Segment::create(mem, &TUTORIAL).unwrap();
    let p2 = path.clone();
    let client = std::thread::spawn(move || {
        shm_memfd::connect_read_only(&p2, Duration::from_secs(10)).unwrap()
    });
    server
        .serve_one_timeout(seg.raw().memory(), Duration::from_secs(10))
        .unwrap();
    let ro = Segment::<MyData, _>::attach(client.join().unwrap()).unwrap();
    assert_eq!(ro.read().unwrap(), TUTORIAL);
    is_read_only(ro.write(&TUTORIAL), "connect_read_only + write");
}

/// A future parked while no sender holds the end sees a sender that appears later and
/// dies (SIGKILL, not reaped): `PeerDied` with its pid. The same for a blocking `recv`,
/// `recv_timeout`, a `reserve_async` parked before any receiver, and a broadcast
/// `recv_async` parked before any publisher.
#[test]
fn a_wait_that_began_before_its_peer_existed_sees_it_die_unreaped() {
    // Receiver: async, blocking, with a timeout.
    for how in ["async", "block", "timeout"] {
        let name = unique_name("/shm-promise-peer");
        let chan = channel(&name, 4096);
        let mut rx = chan.receiver(0).unwrap();
        let waiting = std::thread::spawn(move || match how {
            "async" => {
                block_on(async { rx.recv_async().await.map(|m| m.len()) }).map_err(Error::from)
            }
            "block" => rx.recv().map(|m| m.len()).map_err(Error::from),
            _ => rx
                .recv_timeout(Duration::from_secs(3600))
                .map(|m| m.len())
                .map_err(Error::from),
        });
        std::thread::sleep(Duration::from_millis(100)); // parked, no sender yet
        let mut sender = start("claim-sender", &name, &[]);
        let pid = sender.pid();
        sender.kill_unreaped();
        let r = within(BOUND, how, move || waiting.join().unwrap());
        assert_eq!(r, Err(Error::PeerDied { pid }), "{how}");
    }

    // Sender: ring full, no receiver yet.
    let name = unique_name("/shm-promise-peer");
    let chan = channel(&name, 256);
    let mut tx = chan.sender(0).unwrap();
    while tx.try_send(&[1; 32]).is_ok() {}
    let waiting =
        std::thread::spawn(move || block_on(async { tx.reserve_async(32).await.map(|s| s.len()) }));
    std::thread::sleep(Duration::from_millis(100));
    let mut receiver = start("claim-receiver", &name, &[]);
    let pid = receiver.pid();
    receiver.kill_unreaped();
    let r = within(BOUND, "reserve_async", move || waiting.join().unwrap());
    assert_eq!(r, Err(SendError::PeerDied { pid }));

    // Broadcast subscriber: no publisher yet.
    let name = unique_name("/shm-promise-peer");
    let b = broadcast(&name, &BroadcastOptions::new().slots(4).max_message(64));
    let mut sub = b.subscriber().unwrap();
    let waiting = std::thread::spawn(move || {
        let mut buf = Vec::new();
        block_on(async { sub.recv_into_async(&mut buf).await })
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut publisher = start("claim-publisher", &name, &[]);
    let pid = publisher.pid();
    publisher.kill_unreaped();
    let r = within(BOUND, "broadcast recv_async", move || {
        waiting.join().unwrap()
    });
    assert_eq!(r, Err(RecvError::PeerDied { pid }));
}

/// A reliable publisher held back by a subscriber whose process died unreaped evicts it
/// as dead (it does not wait out a one-minute eviction timeout).
#[test]
fn a_reliable_publisher_evicts_an_unreaped_dead_subscriber() {
    let name = unique_name("/shm-promise-peer");
    let b = broadcast(
        &name,
        &BroadcastOptions::new()
            .slots(2)
            .max_message(8)
            .evict_timeout(Duration::from_secs(60)),
    );
    let mut p = b.publisher().unwrap();
    let mut sub = start("idle-subscriber", &name, &[]);
    p.publish(&[1]).unwrap();
    p.publish(&[2]).unwrap();
    sub.kill_unreaped();
    within(BOUND, "publish past a dead subscriber", move || {
        p.publish(&[3]).unwrap();
        block_on(p.publish_async(&[4])).unwrap();
    });
}

/// A parked future learns that its segment was truncated by a third process:
/// `Truncated`, for a channel receiver and a broadcast subscriber; and a writable
/// broadcast subscriber on a truncated segment says `Truncated`, not `Evicted`.
#[test]
fn a_parked_future_learns_of_a_truncation() {
    let name = unique_name("/shm-promise-trunc");
    let chan = channel(&name, 4096);
    let _tx = chan.sender(0).unwrap();
    let mut rx = Channel::attach(open(&name)).unwrap().receiver(0).unwrap();
    let waiting =
        std::thread::spawn(move || block_on(async { rx.recv_async().await.map(|m| m.len()) }));
    std::thread::sleep(Duration::from_millis(100));
    let _t = start("truncate", &name, &[("TRUNCATE_TO", "0")]);
    let r = within(BOUND, "channel recv_async", move || waiting.join().unwrap());
    assert!(
        matches!(r, Err(RecvError::Failed(Error::Truncated { .. }))),
        "{r:?}"
    );

    for parked in [true, false] {
        let name = unique_name("/shm-promise-trunc");
        let b = broadcast(&name, &BroadcastOptions::new().slots(4).max_message(64));
        let _p = b.publisher().unwrap();
        let mut sub = Broadcast::attach(open(&name))
            .unwrap()
            .subscriber()
            .unwrap();
        let waiting = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if parked {
                block_on(async { sub.recv_into_async(&mut buf).await })
                    .map(|_| sub.last_number().expect("received"))
                    .map_err(Error::from)
            } else {
                numbered(&mut sub, |s| s.recv_into(&mut buf))
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let _t = start("truncate", &name, &[("TRUNCATE_TO", "0")]);
        let r = within(BOUND, "broadcast recv", move || waiting.join().unwrap());
        assert!(
            matches!(r, Err(Error::Truncated { .. })),
            "parked {parked}: {r:?}"
        );
    }
}

/// Receives `n` messages with `recv_async` on a thread; their numbers.
fn async_receiver(
    mut sub: shm_core::Subscriber<PosixShm>,
    n: usize,
) -> std::thread::JoinHandle<Result<Vec<u64>, Error>> {
    std::thread::spawn(move || {
        block_on(async {
            let mut got = Vec::new();
            let mut buf = Vec::new();
            while got.len() < n {
                sub.recv_into_async(&mut buf).await?;
                got.push(sub.last_number().expect("received"));
            }
            Ok(got)
        })
    })
}

/// A co-subscriber that zeroes `sleepers` while an async subscriber is parked, or puts
/// `data_seq` back after every bump, cannot make it miss messages: it gets every one,
/// and later parks are not missed either.
#[test]
fn a_co_subscriber_cannot_silence_an_async_subscriber() {
    for role in ["zero-sleepers", "restore-data-seq"] {
        let name = unique_name("/shm-promise-silence");
        let b = broadcast(&name, &BroadcastOptions::new().slots(64).max_message(8));
        let mut p = b.publisher().unwrap();
        let sub = b.subscriber().unwrap();
        let rx = async_receiver(sub, 10);
        std::thread::sleep(Duration::from_millis(100)); // parked
        let _hostile = start(role, &name, &[("FOR_MS", "3000")]);
        for i in 0..10u8 {
            p.publish(&[i]).unwrap();
            std::thread::sleep(Duration::from_millis(50)); // each one parks again
        }
        let got = within(BOUND, role, move || rx.join().unwrap()).unwrap();
        assert_eq!(got, (0..10).collect::<Vec<u64>>(), "{role}");
    }
}

/// Forged slot stamps (u64::MAX everywhere, for 400 ms) or a forged tail (2^62) do not
/// park a lossy subscriber past the tail: once the forgery stops, it receives again.
#[test]
fn forged_stamps_or_tail_do_not_strand_a_lossy_subscriber() {
    for role in ["forge-stamps", "forge-tail"] {
        let name = unique_name("/shm-promise-forge");
        let b = broadcast(
            &name,
            &BroadcastOptions::new()
                .mode(BroadcastMode::Lossy)
                .slots(8)
                .max_message(8),
        );
        let mut p = b.publisher().unwrap();
        let mut sub = b.subscriber().unwrap();
        // Lagging: the publisher has gone round the ring.
        for i in 0..20u64 {
            p.publish(&i.to_ne_bytes()).unwrap();
        }
        let hostile = start(role, &name, &[("FOR_MS", "400")]);
        let mut buf = Vec::new();
        // Receive (and lag) while the forgery runs.
        let end = std::time::Instant::now() + Duration::from_millis(500);
        while std::time::Instant::now() < end {
            let _ = numbered(&mut sub, |s| {
                s.recv_into_timeout(&mut buf, Duration::from_millis(5))
            });
        }
        assert_eq!(
            hostile.next_result(BOUND).as_deref(),
            Some("done"),
            "{role} did not finish"
        );
        // Honest traffic again: every slot gets a real stamp.
        for i in 20..60u64 {
            p.publish(&i.to_ne_bytes()).unwrap();
        }
        let got = within(BOUND, role, move || {
            let mut last = None;
            for _ in 0..1000 {
                match numbered(&mut sub, |s| {
                    s.recv_into_timeout(&mut buf, Duration::from_millis(100))
                }) {
                    Ok(n) => {
                        last = Some(n);
                        if n == 59 {
                            break;
                        }
                    }
                    Err(Error::Lagged { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            last
        });
        assert_eq!(got, Some(59), "{role}: the subscriber never got back");
    }
}

/// Two hostile processes churning one subscriber line (`state = 0; position = 0;
/// pid = k++` over live pids; `members += 1`) cannot hold a reliable publisher past about its eviction
/// timeout per message, blocking or async.
#[test]
fn a_churning_subscriber_line_cannot_hold_the_reliable_publisher() {
    let name = unique_name("/shm-promise-churn");
    let b = broadcast(
        &name,
        &BroadcastOptions::new()
            .slots(4)
            .max_message(8)
            .evict_timeout(Duration::from_millis(100)),
    );
    let mut p = b.publisher().unwrap();
    // Counting pids from 2^31 (no process has them), then live pids round and round.
    for (first, what) in [("2147483648", "k++ from 2^31"), ("0", "live pids")] {
        let h1 = start("churn-line", &name, &[("FIRST_PID", first), ("SKIP", "0")]);
        let h2 = start("churn-line", &name, &[("FIRST_PID", first), ("SKIP", "7")]);
        let (back, slowest) = within(BOUND, what, move || {
            let next = p.next_message();
            let mut slowest = Duration::ZERO;
            for i in next..next + 20 {
                let t = std::time::Instant::now();
                p.publish(&i.to_ne_bytes()).unwrap();
                slowest = slowest.max(t.elapsed());
            }
            block_on(async {
                for i in next + 20..next + 40 {
                    let t = std::time::Instant::now();
                    p.publish_async(&i.to_ne_bytes()).await.unwrap();
                    slowest = slowest.max(t.elapsed());
                }
            });
            (p, slowest)
        });
        p = back;
        // The promise: about the eviction timeout per message, not for ever. A hang
        // watchdog (no speed asserted): 200 times the 100 ms eviction timeout means hung.
        assert!(
            slowest < Duration::from_secs(20),
            "{what}: a publish hung ({slowest:?}) with a 100 ms eviction timeout"
        );
        drop((h1, h2));
    }
}

/// The smaller promises: a pid word no process can have does not lock a channel end or
/// a subscriber line; a record name too long for the header is an error, not an
/// untyped broadcast.
#[test]
fn impossible_pid_words_and_long_record_names() {
    let name = unique_name("/shm-promise-misc");
    let chan = channel(&name, 4096);
    let ring0 = PAYLOAD + 128; // after the channel header
    for pid in [u32::MAX, 1 << 31, 5_000_000] {
        shm_core::conformance::poke(chan.raw().memory(), ring0 + 8, &pid.to_ne_bytes());
        let tx = chan.sender(0);
        assert!(tx.is_ok(), "pid word {pid}: {:?}", tx.err());
        drop(tx);
        shm_core::conformance::poke(chan.raw().memory(), ring0 + 136, &pid.to_ne_bytes());
        assert!(chan.receiver(0).is_ok(), "pid word {pid}");
    }
    let name = unique_name("/shm-promise-misc");
    let b = broadcast(&name, &BroadcastOptions::new().slots(2).max_subscribers(1));
    shm_core::conformance::poke(b.raw().memory(), PAYLOAD + LINES, &u32::MAX.to_ne_bytes());
    assert!(b.subscriber().is_ok(), "a line held by pid u32::MAX");

    #[derive(Clone, Copy, shm_core::bytemuck::Pod, shm_core::bytemuck::Zeroable)]
    #[bytemuck(crate = "shm_core::bytemuck")]
    #[repr(C)]
    struct Long(u64);
    impl Record for Long {
        const NAME: &'static str = "a_record_name_that_is_far_longer_than_forty_bytes";
    }
    let opts = BroadcastOptions::new().record::<Long>();
    assert!(
        matches!(opts.segment_len(), Err(Error::SchemaName { .. })),
        "{:?}",
        opts.segment_len()
    );
    let mem = shm_core::HeapMemory::new(1 << 20);
    assert!(matches!(
        Broadcast::create(mem, &opts),
        Err(Error::SchemaName { .. })
    ));
}
