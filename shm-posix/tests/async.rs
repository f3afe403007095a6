//! The channel's futures (`recv_async`, `reserve_async`, `send_async`, `Stream`) in tokio
//! runtimes, against real peer processes (forked children that inherit the mapping) on
//! every backend: posix, anon and memfd.

use shm_core::testing::numbered;
use shm_core::RecvError;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use shm_core::testing::{fd_count, message, unique_name};
use shm_core::{Channel, ChannelOptions, SharedMemory};

const BOUND: Duration = Duration::from_secs(20);

/// A channel segment of `len` bytes on backend `b`, boxed so the tests are generic.
fn segment(b: &str, len: u64) -> Box<dyn SharedMemory + Send + Sync> {
    match b {
        "posix" => Box::new(
            shm_posix::ShmOptions::new(unique_name("/shm-async"))
                .size(len)
                .create()
                .unwrap(),
        ),
        "anon" => Box::new(shm_anon::AnonShm::create(len as usize).unwrap()),
        "memfd" => Box::new(shm_memfd::MemfdOptions::new().size(len).create().unwrap()),
        other => panic!("{other}"),
    }
}

fn channel(b: &str, cap: u64) -> Channel<Box<dyn SharedMemory + Send + Sync>> {
    let opts = ChannelOptions::new().capacity(cap);
    Channel::create(segment(b, opts.segment_len().unwrap()), &opts).unwrap()
}

/// Forks a child that sends `n` messages of `len` bytes on ring 0 (blocking API) with a
/// pause every `pause_every` messages, then closes.
fn forked_sender(
    chan: &Channel<Box<dyn SharedMemory + Send + Sync>>,
    n: usize,
    len: usize,
    pause_every: usize,
) -> shm_anon::Child {
    // SAFETY: the tests fork before any runtime or other thread of theirs exists... not
    // so in a multi-threaded test harness: the child only does atomic accesses, sleeps and
    // allocates nothing until it exits (messages are built on the stack).
    unsafe { shm_anon::fork(|| send_messages(chan, n, len, pause_every)) }.unwrap()
}

fn runtime(multi: bool) -> tokio::runtime::Runtime {
    if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

/// Sends `n` messages of `len` bytes on ring 0 of `chan` (blocking API) with a pause
/// every `pause_every` messages: the body of every sending child.
fn send_messages<M: SharedMemory>(
    chan: &Channel<M>,
    n: usize,
    len: usize,
    pause_every: usize,
) -> i32 {
    let Ok(mut tx) = chan.sender(0) else { return 2 };
    let mut buf = [0u8; 4096];
    for i in 0..n {
        for (j, b) in buf[..len].iter_mut().enumerate() {
            *b = (i * 131 + j * 7 + len) as u8;
        }
        if tx.send(&buf[..len]).is_err() {
            return 3;
        }
        if pause_every > 0 && i % pause_every == pause_every - 1 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    0
}

/// The other process of `tokio_task_receives_from_another_process_on_every_backend`, made
/// the way a real peer is: posix and memfd spawn this test binary, which opens the name or
/// receives the fd over a Unix socket; anon can only fork (the mapping is inherited).
enum Sending {
    Spawned(shm_core::testing::Peer),
    Forked(shm_anon::Child),
}

impl Sending {
    fn succeeded(self) -> bool {
        match self {
            Sending::Spawned(mut p) => p.wait(BOUND).is_some_and(|s| s.success()),
            Sending::Forked(mut c) => c.wait().unwrap().success(),
        }
    }
}

/// A tokio task receives from another process on each backend, on current-thread and
/// multi-thread runtimes; the sender pauses so that the receiver really parks. The posix
/// sender opens the segment by name and the memfd one receives its fd over a socket, in
/// processes of their own; the anon one is forked.
#[test]
fn tokio_task_receives_from_another_process_on_every_backend() {
    for b in ["posix", "anon", "memfd"] {
        for multi in [false, true] {
            let opts = ChannelOptions::new().capacity(4096);
            let len = opts.segment_len().unwrap();
            let (chan, child) = match b {
                "posix" => {
                    let name = unique_name("/shm-async-spawned");
                    let shm = shm_posix::ShmOptions::new(&name)
                        .size(len)
                        .create()
                        .unwrap();
                    let chan = Channel::create(
                        Box::new(shm) as Box<dyn SharedMemory + Send + Sync>,
                        &opts,
                    )
                    .unwrap();
                    let peer = shm_core::testing::Peer::start(
                        "child",
                        "send-posix",
                        &[("SHM_NAME", &name)],
                    );
                    (chan, Sending::Spawned(peer))
                }
                "memfd" => {
                    let shm = shm_memfd::MemfdOptions::new().size(len).create().unwrap();
                    let sock = std::env::temp_dir().join(unique_name("shm-async") + ".sock");
                    let server = shm_memfd::Server::bind(&sock).unwrap();
                    let peer = shm_core::testing::Peer::start(
                        "child",
                        "send-memfd",
                        &[("SHM_SOCKET", sock.to_str().unwrap())],
                    );
                    server.serve_one_timeout(&shm, BOUND).unwrap();
                    drop(server);
                    let _ = std::fs::remove_file(&sock);
                    let chan = Channel::create(
                        Box::new(shm) as Box<dyn SharedMemory + Send + Sync>,
                        &opts,
                    )
                    .unwrap();
                    (chan, Sending::Spawned(peer))
                }
                _ => {
                    let chan = channel(b, 4096);
                    let child = forked_sender(&chan, 300, 100, 50);
                    (chan, Sending::Forked(child))
                }
            };
            let mut rx = chan.receiver(0).unwrap();
            let rt = runtime(multi);
            let got = rt.block_on(async move {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut got = 0;
                    loop {
                        match tokio::time::timeout(BOUND, rx.recv_into_async(&mut buf)).await {
                            Ok(Ok(_)) => {
                                assert_eq!(buf, message(got, 100), "message {got}");
                                got += 1;
                            }
                            Ok(Err(RecvError::Closed)) => return got,
                            Ok(Err(e)) => panic!("{e}"),
                            Err(_) => panic!("recv_async did not end within {BOUND:?}"),
                        }
                    }
                })
                .await
                .unwrap()
            });
            assert_eq!(got, 300, "{b} multi={multi}");
            assert!(child.succeeded(), "{b} multi={multi}: the sender failed");
        }
    }
}

/// Several channels multiplexed in one task with `select!`.
#[test]
fn select_over_several_receivers() {
    let chans: Vec<_> = ["posix", "anon", "memfd"]
        .iter()
        .map(|b| channel(b, 4096))
        .collect();
    let mut rxs: Vec<_> = chans.iter().map(|c| c.receiver(0).unwrap()).collect();
    let mut children: Vec<_> = chans
        .iter()
        .map(|c| forked_sender(c, 200, 64, 20))
        .collect();
    let counts = runtime(false).block_on(async {
        let mut counts = [0usize; 3];
        let mut open = [true; 3];
        let (mut a, rest) = rxs.split_first_mut().unwrap();
        let (mut b, rest) = rest.split_first_mut().unwrap();
        let mut c = &mut rest[0];
        let (mut ba, mut bb, mut bc) = (Vec::new(), Vec::new(), Vec::new());
        while open.iter().any(|o| *o) {
            let (k, r) = tokio::time::timeout(BOUND, async {
                tokio::select! {
                    r = a.recv_into_async(&mut ba), if open[0] => (0, r),
                    r = b.recv_into_async(&mut bb), if open[1] => (1, r),
                    r = c.recv_into_async(&mut bc), if open[2] => (2, r),
                }
            })
            .await
            .expect("select ended within the bound");
            match r {
                Ok(_) => {
                    let buf = [&ba, &bb, &bc][k];
                    assert_eq!(*buf, message(counts[k], 64));
                    counts[k] += 1;
                }
                Err(RecvError::Closed) => open[k] = false,
                Err(e) => panic!("{e}"),
            }
            let _ = (&mut a, &mut b, &mut c);
        }
        counts
    });
    assert_eq!(counts, [200, 200, 200]);
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
}

/// Sender and receiver tasks on a multi-thread runtime, moving between workers: a million
/// messages through a small ring, both sides async, random yields; nothing lost, nothing
/// duplicated, no lost wake-up (the run ends).
#[test]
fn both_sides_async_a_million_messages() {
    let chan = channel("memfd", 1024);
    let mut tx = chan.sender(0).unwrap();
    let mut rx = chan.receiver(0).unwrap();
    let n = 1_000_000u64;
    let rt = runtime(true);
    let t = Instant::now();
    rt.block_on(async move {
        // Random yields (a fixed-seed xorshift per side), about one message in 500.
        fn coin(state: &mut u64) -> bool {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            (*state).is_multiple_of(500)
        }
        let producer = tokio::spawn(async move {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64;
            for i in 0..n {
                tx.send_async(&i.to_ne_bytes()).await.unwrap();
                if coin(&mut rng) {
                    tokio::task::yield_now().await;
                }
            }
        });
        let consumer = tokio::spawn(async move {
            let mut rng = 0x2545_F491_4F6C_DD1Du64;
            let mut buf = Vec::new();
            for i in 0..n {
                rx.recv_into_async(&mut buf).await.unwrap();
                assert_eq!(buf, i.to_ne_bytes());
                if coin(&mut rng) {
                    tokio::task::yield_now().await;
                }
            }
            assert_eq!(rx.recv_into_async(&mut buf).await, Err(RecvError::Closed));
        });
        tokio::time::timeout(Duration::from_secs(120), async {
            producer.await.unwrap();
            consumer.await.unwrap();
        })
        .await
        .expect("a million async messages within the bound");
    });
    println!("1,000,000 async messages in {:?}", t.elapsed());
}

/// The sender process is SIGKILLed while our future is pending: `PeerDied`, within the
/// bounded wait.
#[test]
fn peer_killed_while_pending_is_peer_died() {
    for b in ["posix", "anon", "memfd"] {
        let chan = channel(b, 4096);
        let mut rx = chan.receiver(0).unwrap();
        // SAFETY: the child takes the sending end and sleeps (plain system calls).
        let mut child = unsafe {
            shm_anon::fork(|| {
                let Ok(_tx) = chan.sender(0) else { return 2 };
                loop {
                    libc::sleep(100);
                }
            })
        }
        .unwrap();
        let pid = child.pid();
        // Wait until the child holds the end (its pid is in the holder word).
        let t = Instant::now();
        while chan.sender(0).is_ok_and(|s| {
            drop(s);
            true
        }) {
            assert!(t.elapsed() < BOUND);
            std::thread::sleep(Duration::from_millis(1));
        }
        let r = runtime(false).block_on(async {
            let killer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                child.kill().unwrap();
                child.wait().unwrap();
            });
            let r = tokio::time::timeout(BOUND, rx.recv_async())
                .await
                .map(|r| r.map(|m| m.len()));
            killer.await.unwrap();
            r
        });
        assert_eq!(r, Ok(Err(RecvError::PeerDied { pid })), "{b}");
    }
}

/// The `Stream` impl: a receiver consumed as a stream ends with `None` at the close.
#[test]
fn receiver_as_a_stream() {
    let chan = channel("anon", 4096);
    let mut rx = chan.receiver(0).unwrap();
    let mut child = forked_sender(&chan, 100, 32, 25);
    let got = runtime(false).block_on(async move {
        let mut got = 0;
        while let Some(m) = std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut rx), cx)
        })
        .await
        {
            assert_eq!(m.unwrap(), message(got, 32));
            got += 1;
        }
        got
    });
    assert_eq!(got, 100);
    assert!(child.wait().unwrap().success());
}

/// 10,000 create / await / drop cycles leave fds, reactor threads and /dev/shm as they
/// were after the first (the reactor keeps its threads for reuse). Counted in a child
/// process: parallel tests open and close fds in this one.
#[test]
fn ten_thousand_await_cycles_leak_nothing() {
    let out = shm_core::testing::spawn_self("child", "await-cycles", &[], "");
    shm_core::testing::assert_counts_unchanged(
        &out,
        &["fds", "reactor threads", "tasks", "/dev/shm entries"],
    );
}

#[test]
#[ignore = "entry point for child processes spawned by the other tests"]
fn child() {
    let role = std::env::var(shm_core::testing::ROLE_VAR).unwrap_or_default();
    // Senders in processes of their own: they attach (waiting for the creator) and send.
    if role == "send-posix" || role == "send-memfd" {
        println!("RESULT ready");
        let mem: Box<dyn SharedMemory + Send + Sync> = if role == "send-posix" {
            let name = std::env::var("SHM_NAME").unwrap();
            Box::new(shm_posix::ShmOptions::new(&name).open().unwrap())
        } else {
            let sock = std::env::var("SHM_SOCKET").unwrap();
            Box::new(shm_memfd::connect_timeout(&sock, BOUND).unwrap())
        };
        let chan = Channel::attach(mem).unwrap();
        std::process::exit(send_messages(&chan, 300, 100, 50));
    }
    assert_eq!(role, "await-cycles");
    let rt = runtime(false);
    let cycle = || {
        let chan = channel("posix", 1024);
        let mut tx = chan.sender(0).unwrap();
        let mut rx = chan.receiver(0).unwrap();
        rt.block_on(async {
            // A pending recv (parks: registers with the reactor), dropped by the timeout...
            let r = tokio::time::timeout(Duration::from_micros(100), rx.recv_async())
                .await
                .map(|r| r.map(|m| m.len()));
            assert!(r.is_err(), "{r:?}");
            // ...then a message, which the next call gets.
            tx.send_async(b"x").await.unwrap();
            assert_eq!(rx.recv_async().await.unwrap().to_vec(), b"x");
        });
    };
    let tasks = || std::fs::read_dir("/proc/self/task").unwrap().count();
    let shm =
        || shm_core::testing::dev_shm_entries(&format!("shm-async-{}-", std::process::id())).len();
    cycle();
    let (fds, threads, t0, s0) = (fd_count(), shm_core::os::reactor::threads(), tasks(), shm());
    for _ in 0..10_000 {
        cycle();
    }
    println!(
        "RESULT {fds} {} {threads} {} {t0} {} {s0} {}",
        fd_count(),
        shm_core::os::reactor::threads(),
        tasks(),
        shm()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Pending `send_async` (`reserve_async`) futures dropped at random points while a
    /// slow receiver process drains a small ring: the receiver sees exactly the sequence
    /// sent, in order (nothing lost or duplicated), and the ring never runs out of space
    /// for good (no reservation leaked): every message arrives.
    #[test]
    fn dropping_pending_reserves_loses_nothing(drops in proptest::collection::vec(0u64..400, 1..30), n in 50usize..300) {
        let chan = channel("anon", 256);
        let mut tx = chan.sender(0).unwrap();
        // SAFETY: the child receives (atomics, copies, sleeps) and exits.
        let mut child = unsafe {
            shm_anon::fork(|| {
                let Ok(mut rx) = chan.receiver(0) else { return 2 };
                let mut buf = Vec::new();
                for i in 0..n {
                    if rx.recv_into(&mut buf).is_err() || buf != message(i, 24) {
                        return 3;
                    }
                    if i % 5 == 0 {
                        libc::usleep(300);
                    }
                }
                let end = rx.recv().map(|m| m.len());
                match end {
                    Err(RecvError::Closed) => 0,
                    _ => 4,
                }
            })
        }
        .unwrap();
        let drops: Vec<Duration> = drops.into_iter().map(Duration::from_micros).collect();
        runtime(false).block_on(async {
            let mut k = 0;
            let mut i = 0;
            while i < n {
                let msg = message(i, 24);
                if k < drops.len() {
                    let d = drops[k];
                    k += 1;
                    // Dropped while waiting for room: nothing was sent; try again.
                    match tokio::time::timeout(d, tx.send_async(&msg)).await {
                        Err(_) => continue,
                        Ok(r) => r.unwrap(),
                    }
                } else {
                    tx.send_async(&msg).await.unwrap();
                }
                i += 1;
            }
        });
        drop(tx);
        let status = child.wait().unwrap();
        prop_assert!(status.success(), "receiver: {:?}", status);
    }

    /// Pending futures dropped at random points (recv and reserve, against a sender and a
    /// receiver in other processes): the delivered sequence is exactly the sent one, and
    /// no ring space leaks (everything sent arrives, through a ring of 256 bytes).
    #[test]
    fn dropping_pending_futures_loses_nothing(drops in proptest::collection::vec(0u64..300, 1..20), n in 50usize..400) {
        let chan = channel("anon", 256);
        let mut rx = chan.receiver(0).unwrap();
        let mut child = forked_sender(&chan, n, 24, 7);
        let drops: Vec<Duration> = drops.into_iter().map(Duration::from_micros).collect();
        let got = runtime(false).block_on(async move {
            let mut buf = Vec::new();
            let mut got = 0usize;
            let mut k = 0;
            loop {
                if k < drops.len() {
                    // A recv that may be dropped while pending (or after being woken).
                    let d = drops[k];
                    k += 1;
                    match tokio::time::timeout(d, rx.recv_into_async(&mut buf)).await {
                        Err(_) => continue,
                        Ok(Ok(_)) => {}
                        Ok(Err(RecvError::Closed)) => return got,
                        Ok(Err(e)) => panic!("{e}"),
                    }
                } else {
                    match rx.recv_into_async(&mut buf).await {
                        Ok(_) => {}
                        Err(RecvError::Closed) => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
                assert_eq!(buf, message(got, 24), "message {got}");
                got += 1;
            }
        });
        prop_assert_eq!(got, n);
        prop_assert!(child.wait().unwrap().success());
    }
}

mod broadcast {
    use super::*;
    use shm_core::{Broadcast, BroadcastMode, BroadcastOptions};

    type Mem = Box<dyn SharedMemory + Send + Sync>;

    fn broadcast(b: &str, mode: BroadcastMode, slots: u64) -> Broadcast<Mem> {
        let opts = BroadcastOptions::new()
            .mode(mode)
            .slots(slots)
            .max_message(64);
        Broadcast::create(segment(b, opts.segment_len().unwrap()), &opts).unwrap()
    }

    /// Subscribers in a tokio runtime receive from a forked publisher process that
    /// pauses (so they park), reliable and lossy, on every backend.
    #[test]
    fn tokio_subscribers_receive_from_another_process() {
        for b in ["posix", "anon", "memfd"] {
            for mode in [BroadcastMode::Reliable, BroadcastMode::Lossy] {
                let bc = broadcast(b, mode, 64);
                let subs: Vec<_> = (0..3).map(|_| bc.subscriber().unwrap()).collect();
                // SAFETY: the child publishes (atomics, copies, sleeps) and exits.
                let mut child = unsafe {
                    shm_anon::fork(|| {
                        let Ok(mut p) = bc.publisher() else { return 2 };
                        for i in 0..200u64 {
                            if p.publish(&i.to_ne_bytes()).is_err() {
                                return 3;
                            }
                            if i % 40 == 39 {
                                libc::usleep(3000);
                            }
                        }
                        0
                    })
                }
                .unwrap();
                let got = runtime(true).block_on(async move {
                    let tasks: Vec<_> = subs
                        .into_iter()
                        .map(|mut s| {
                            tokio::spawn(async move {
                                let mut buf = Vec::new();
                                let mut got = Vec::new();
                                loop {
                                    match tokio::time::timeout(BOUND, s.recv_into_async(&mut buf))
                                        .await
                                    {
                                        Ok(Ok(len)) => {
                                            let n = s.last_number().expect("received");
                                            assert_eq!(len, 8);
                                            assert_eq!(buf, n.to_ne_bytes());
                                            got.push(n);
                                        }
                                        Ok(Err(RecvError::Closed)) => return got,
                                        Ok(Err(RecvError::Lagged { .. })) => {}
                                        Ok(Err(e)) => panic!("{e}"),
                                        Err(_) => panic!("recv_async did not end"),
                                    }
                                }
                            })
                        })
                        .collect();
                    let mut all = Vec::new();
                    for t in tasks {
                        all.push(t.await.unwrap());
                    }
                    all
                });
                assert!(child.wait().unwrap().success());
                for g in got {
                    assert!(g.windows(2).all(|w| w[1] > w[0]), "in order");
                    if mode == BroadcastMode::Reliable {
                        assert_eq!(g, (0..200).collect::<Vec<_>>(), "{b}");
                    }
                }
            }
        }
    }

    /// `publish_async` under back-pressure from a slow subscriber process; and a
    /// read-only memfd subscriber awaiting a lossy broadcast (woken by the reactor's tick).
    #[test]
    fn publish_async_waits_for_a_slow_subscriber_and_read_only_subscribers_await() {
        let bc = broadcast("memfd", BroadcastMode::Reliable, 4);
        // SAFETY: the child subscribes, reads slowly (sleeps between messages) and exits.
        let mut child = unsafe {
            shm_anon::fork(|| {
                let Ok(mut s) = bc.subscriber() else { return 2 };
                let mut buf = Vec::new();
                for i in 0..40u64 {
                    libc::usleep(1000);
                    match numbered(&mut s, |s| s.recv_into(&mut buf)) {
                        Ok(n) if n == i => {}
                        _ => return 3,
                    }
                }
                0
            })
        }
        .unwrap();
        let t = Instant::now();
        while bc.subscriber_count() < 1 {
            assert!(t.elapsed() < BOUND, "the subscriber joins");
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut p = bc.publisher().unwrap();
        runtime(false).block_on(async {
            for i in 0..40u64 {
                tokio::time::timeout(BOUND, p.publish_async(&i.to_ne_bytes()))
                    .await
                    .expect("publish_async ended")
                    .unwrap();
            }
        });
        assert!(child.wait().unwrap().success());

        let opts = BroadcastOptions::new()
            .mode(BroadcastMode::Lossy)
            .slots(64)
            .max_message(8);
        let shm = shm_memfd::MemfdOptions::new()
            .size(opts.segment_len().unwrap())
            .read_only_peers(true)
            .create()
            .unwrap();
        let ro = shm.try_clone().unwrap();
        let bc = Broadcast::create(shm, &opts).unwrap();
        let mut p = bc.publisher().unwrap();
        let mut s = Broadcast::attach(ro).unwrap().subscriber().unwrap();
        let got = runtime(true).block_on(async move {
            let reader = tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut n = 0;
                while let Ok(Ok(_)) = tokio::time::timeout(BOUND, s.recv_into_async(&mut buf)).await
                {
                    n += 1;
                }
                n
            });
            for i in 0..20u64 {
                p.publish_async(&i.to_ne_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            drop(p);
            reader.await.unwrap()
        });
        assert_eq!(got, 20);
    }

    /// The publisher process is SIGKILLed while subscribers' futures are pending.
    #[test]
    fn publisher_killed_while_pending_is_peer_died() {
        let bc = broadcast("posix", BroadcastMode::Reliable, 8);
        let mut s = bc.subscriber().unwrap();
        // SAFETY: the child takes the publisher role and sleeps.
        let mut child = unsafe {
            shm_anon::fork(|| {
                // The parent probes for the role by taking it for an instant: retry
                // while it holds it (bounded), or the probe and the claim can race.
                let t = Instant::now();
                let p = loop {
                    match bc.publisher() {
                        Ok(p) => break p,
                        Err(_) if t.elapsed() < BOUND => {
                            std::thread::sleep(Duration::from_micros(100))
                        }
                        Err(_) => return 2,
                    }
                };
                std::mem::forget(p);
                loop {
                    libc::sleep(100);
                }
            })
        }
        .unwrap();
        let pid = child.pid();
        let t = Instant::now();
        while bc.publisher().is_ok_and(|p| {
            drop(p);
            true
        }) {
            assert!(t.elapsed() < BOUND);
            std::thread::sleep(Duration::from_millis(1));
        }
        let r = runtime(false).block_on(async {
            let killer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                child.kill().unwrap();
                child.wait().unwrap();
            });
            let mut buf = Vec::new();
            let r = tokio::time::timeout(BOUND, s.recv_into_async(&mut buf)).await;
            killer.await.unwrap();
            r
        });
        assert_eq!(r, Ok(Err(RecvError::PeerDied { pid })));
    }
}
