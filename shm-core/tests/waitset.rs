//! The wait set (`shm_core::waitset`) and events within one process (threads as the other
//! side; the backends' tests run the same with processes): level-triggered readiness,
//! every kind of end woken from a sleep (many times, to catch a lost wake-up), timers,
//! the limit, and the fd.
#![cfg(not(loom))]

use std::time::{Duration, Instant};

use shm_core::waitset::{Key, Ready, WaitSet, MAX_ENDS};
use shm_core::{
    Broadcast, BroadcastOptions, Channel, ChannelOptions, Error, Event, EventOptions, HeapMemory,
    TryWaitError, WaitMode, WaitTimeoutError,
};

const BOUND: Duration = Duration::from_secs(10);

fn keys(r: &[Ready]) -> Vec<Key> {
    r.iter().map(|r| r.key).collect()
}

fn event(ids: u32) -> Event<HeapMemory> {
    let opts = EventOptions::new().max_ids(ids);
    Event::create(HeapMemory::new(opts.segment_len().unwrap() as usize), &opts).unwrap()
}

#[test]
fn an_unread_message_stays_ready() {
    let chan = Channel::create(HeapMemory::new(1 << 14), &ChannelOptions::new()).unwrap();
    let (mut tx, mut rx) = (chan.sender(0).unwrap(), chan.receiver(0).unwrap());
    let mut set = WaitSet::new();
    let k = set.attach(&rx).unwrap();
    assert!(matches!(set.try_wait(), Err(TryWaitError::Empty)));
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();
    for want in [&b"one"[..], b"two"] {
        assert_eq!(keys(&set.wait_timeout(BOUND).unwrap()), [k]);
        // Asked again without taking: still ready.
        assert_eq!(keys(&set.try_wait().unwrap()), [k]);
        assert_eq!(rx.recv().unwrap().to_vec(), want);
    }
    assert!(matches!(
        set.wait_timeout(Duration::from_millis(30)),
        Err(WaitTimeoutError::Timeout { .. })
    ));
    // The sender's close is reported with the end, once everything was read.
    drop(tx);
    let r = set.wait_timeout(BOUND).unwrap();
    assert_eq!(
        r,
        [Ready {
            key: k,
            error: Some(Error::Closed)
        }]
    );
}

/// Each kind of end, its other side a thread that sends after the set went to sleep;
/// 200 rounds with no spin, so every round goes through the sleep.
#[test]
fn every_kind_of_end_wakes_a_sleeping_set() {
    let chan = Channel::create(HeapMemory::new(1 << 14), &ChannelOptions::new()).unwrap();
    let (mut tx, mut rx) = (chan.sender(0).unwrap(), chan.receiver(0).unwrap());
    let opts = BroadcastOptions::new().slots(8).max_message(16);
    let bc =
        Broadcast::create(HeapMemory::new(opts.segment_len().unwrap() as usize), &opts).unwrap();
    let mut publisher = bc.publisher().unwrap();
    let mut sub = bc.subscriber().unwrap();
    let ev = event(64);
    let mut listener = ev.listener().unwrap();
    let mut notifier = ev.notifier().unwrap();

    let mut set = WaitSet::new();
    set.set_wait(WaitMode::Block {
        spin: Duration::ZERO,
    });
    let (kc, kb, ke) = (
        set.attach(&rx).unwrap(),
        set.attach(&sub).unwrap(),
        set.attach(&listener).unwrap(),
    );
    let mut buf = Vec::new();
    for round in 0..200u64 {
        let which = round % 3;
        let delay = Duration::from_micros(50 * (round % 7));
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(delay);
                match which {
                    0 => tx.send(&round.to_le_bytes()).unwrap(),
                    1 => publisher.publish(&round.to_le_bytes()).unwrap(),
                    _ => notifier.notify(round % 64).unwrap(),
                }
            });
            let t = Instant::now();
            let r = set.wait_timeout(BOUND).expect("a wake-up");
            assert!(t.elapsed() < BOUND);
            let want = [kc, kb, ke][which as usize];
            assert_eq!(keys(&r), [want], "round {round}");
        });
        match which {
            0 => assert_eq!(rx.recv().unwrap().to_vec(), round.to_le_bytes()),
            1 => {
                sub.recv_into(&mut buf).unwrap();
                assert_eq!(buf, round.to_le_bytes());
            }
            _ => assert!(listener.try_wait().unwrap().contains(round % 64)),
        }
    }
    // Every round slept (no spin) and was woken by its end's word: a lost wake-up would
    // leave the sleep to the looker's 20 ms look (`late`) or to its bound (`timeouts`).
    // A few may, on a loaded machine (a thread descheduled for a slice); not most.
    let st = set.stats();
    assert!(st.sleeps >= 100, "the set did not sleep: {st:?}");
    assert!(
        st.timeouts + st.late <= st.sleeps / 10,
        "wake-ups lost: {st:?}"
    );
}

#[test]
fn intervals_deadlines_and_detach() {
    let mut set = WaitSet::new();
    assert!(matches!(
        set.wait(),
        Err(shm_core::WaitError::Failed(Error::InvalidOption { .. }))
    ));
    let tick = set.attach_interval(Duration::from_millis(20)).unwrap();
    let t = Instant::now();
    assert_eq!(keys(&set.wait().unwrap()), [tick]);
    assert!(t.elapsed() >= Duration::from_millis(20));
    // Taken: the next tick is 20 ms on.
    assert!(matches!(set.try_wait(), Err(TryWaitError::Empty)));
    let at = set.attach_deadline(Instant::now() + Duration::from_millis(5));
    let r = set.wait().unwrap();
    assert!(keys(&r).contains(&at));
    // A deadline stays ready until detached.
    assert!(keys(&set.try_wait().unwrap()).contains(&at));
    set.detach(at);
    set.detach(tick);
    assert!(set.is_empty());
    assert!(set.attach_interval(Duration::ZERO).is_err());
}

#[test]
fn past_the_limit_an_attach_is_refused() {
    let chan = Channel::create(HeapMemory::new(1 << 12), &ChannelOptions::new()).unwrap();
    let rx = chan.receiver(0).unwrap();
    let mut set = WaitSet::new();
    for _ in 0..MAX_ENDS {
        set.attach(&rx).unwrap();
    }
    assert!(matches!(set.attach(&rx), Err(Error::InvalidOption { .. })));
    set.attach_interval(Duration::from_secs(1)).unwrap(); // timers do not count
    set.detach(Key(0));
    set.attach(&rx).unwrap();
}

#[test]
fn a_burst_of_notifies_is_one_set_of_ids() {
    let ev = event(200);
    let (mut l, mut n) = (ev.listener().unwrap(), ev.notifier().unwrap());
    for id in [5, 150, 5, 5, 199, 0] {
        n.notify(id).unwrap();
    }
    let ids = l.wait_timeout(BOUND).unwrap();
    assert_eq!(ids.iter().collect::<Vec<_>>(), [0, 5, 150, 199]);
    assert_eq!(ids.len(), 4);
    assert!(matches!(l.try_wait(), Err(TryWaitError::Empty)));
    assert!(matches!(
        n.notify(200),
        Err(shm_core::NotifyError::NoSuchEvent {
            id: 200,
            limit: 200
        })
    ));
    // One listener per event; notifier lines run out.
    assert!(matches!(ev.listener(), Err(Error::RoleTaken { .. })));
    let opts = EventOptions::new().max_notifiers(2);
    let small =
        Event::create(HeapMemory::new(opts.segment_len().unwrap() as usize), &opts).unwrap();
    let _a = small.notifier().unwrap();
    let _b = small.notifier().unwrap();
    assert_eq!(
        small.notifier().err(),
        Some(Error::NotifiersFull { max: 2 })
    );
    // A closed listener is `Closed` for a notifier (nothing set); a new listener takes
    // the end, and an id set before any listener held it waits for the first one.
    drop(l);
    assert!(matches!(n.notify(3), Err(shm_core::NotifyError::Closed)));
    let mut l = ev.listener().unwrap();
    assert!(matches!(l.try_wait(), Err(TryWaitError::Empty)));
    n.notify(4).unwrap();
    assert_eq!(l.try_wait().unwrap().iter().collect::<Vec<_>>(), [4]);
    let fresh = event(8);
    fresh.notifier().unwrap().notify(1).unwrap();
    assert!(fresh.listener().unwrap().try_wait().unwrap().contains(1));
}

#[test]
fn the_async_form_and_the_timeout_form() {
    let ev = event(8);
    let mut l = ev.listener().unwrap();
    let mut n = ev.notifier().unwrap();
    assert!(matches!(
        l.wait_timeout(Duration::from_millis(20)),
        Err(WaitTimeoutError::Timeout { .. })
    ));
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        n.notify(6).unwrap();
    });
    let ids = futures_lite_block_on(l.wait_async()).unwrap();
    assert!(ids.contains(6));
    t.join().unwrap();
}

/// A minimal executor: polls with a thread-parking waker.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    let start = Instant::now();
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(start.elapsed() < BOUND, "the future never completed");
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// The fd: readable while something is ready (through epoll), empty again once it was
/// taken, and the set's drop ends its thread while the fd is still in an epoll set.
#[test]
fn the_fd_in_an_epoll_set() {
    use std::os::fd::AsRawFd;
    let ev = event(8);
    let mut listener = ev.listener().unwrap();
    let mut n = ev.notifier().unwrap();
    let mut set = WaitSet::new();
    let k = set.attach(&listener).unwrap();
    let fd = set.as_fd().unwrap().as_raw_fd();
    // SAFETY: epoll_create1 returns a new fd or -1.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let mut e = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 7,
    };
    // SAFETY: live fds, a valid event.
    let rc = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut e) };
    assert_eq!(rc, 0);
    let wait = |ms: i32| {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: a live epoll fd and a buffer of 4 events.
        unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 4, ms) }
    };
    assert_eq!(wait(30), 0, "nothing ready: the fd is not readable");
    for round in 0..100u64 {
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_micros(100 * (round % 5)));
                n.notify(round % 8).unwrap();
            });
            assert_eq!(wait(10_000), 1, "round {round}: readable after a notify");
        });
        assert_eq!(keys(&set.try_wait().unwrap()), [k]);
        // Level-triggered: not taken yet, so the fd is readable again.
        assert_eq!(wait(10_000), 1, "round {round}: still ready");
        assert!(listener.try_wait().unwrap().contains(round % 8));
        assert!(set.try_wait().is_err());
        assert_eq!(wait(20), 0, "round {round}: taken, the fd is quiet");
    }
    let t = Instant::now();
    drop(set);
    assert!(
        t.elapsed() < BOUND,
        "the drop waited for its thread too long"
    );
    // The eventfd is closed: epoll forgets it, and nothing is readable.
    assert_eq!(wait(20), 0);
    // SAFETY: our epoll fd.
    unsafe { libc::close(ep) };
}
