//! The endpoint families on every backend: a channel between two processes (a forked
//! child on real backends, a thread on the heap backend), and a broadcast to
//! subscribers attached through other handles.

use std::time::Duration;

use super::Backend;
use crate::channel::{Channel, ChannelOptions};
use crate::format::error::{Error, RecvTimeoutError};
use crate::testing::numbered;

/// How long the channel cases wait for one message at most (a bound, never a measure).
const BOUND: Duration = Duration::from_secs(20);

/// Message `i` of the stream the channel cases send: its length varies from 1 to 300
/// bytes (so messages cross the ring's end at every offset) and its bytes depend on `i`.
fn message(i: u64, buf: &mut Vec<u8>) {
    let len = 1 + (i.wrapping_mul(7919) % 300) as usize;
    buf.clear();
    buf.extend((0..len).map(|j| (i as usize).wrapping_mul(31).wrapping_add(j * 7) as u8));
}

/// The other process of a channel case: a forked child that runs `work` and `_exit`s with
/// its status (or dies by the signal `work` sends itself); killed and reaped when dropped,
/// so a failing case leaves no process behind. On memory a fork does not share (the heap
/// backend) it is a thread.
pub(super) enum Other {
    Child(libc::pid_t),
    Thread(Option<std::thread::JoinHandle<i32>>),
}

impl Other {
    pub(super) fn start<F: FnOnce() -> i32 + Send + 'static>(forked: bool, work: F) -> Other {
        if !forked {
            return Other::Thread(Some(std::thread::spawn(work)));
        }
        // SAFETY: fork has no preconditions. The child runs `work` (the channel's own
        // calls: atomics, futex and liveness system calls; glibc's fork leaves malloc
        // usable in the child) and leaves with `_exit`, never returning into the test
        // harness; a panic is caught and becomes status 101.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or(101);
            // SAFETY: ends the child without running the parent's destructors or atexit
            // handlers.
            unsafe { libc::_exit(code) };
        }
        Other::Child(pid)
    }

    pub(super) fn pid(&self) -> Option<u32> {
        match self {
            Other::Child(pid) => Some(*pid as u32),
            Other::Thread(_) => None,
        }
    }

    /// Waits for the other side to end: its exit status (`-signal` if a signal ended it).
    pub(super) fn join(mut self) -> i32 {
        match &mut self {
            Other::Thread(t) => t.take().expect("joined once").join().unwrap_or(101),
            Other::Child(pid) => {
                let pid = std::mem::replace(pid, 0);
                let mut status = 0;
                // SAFETY: `pid` is our child, not yet reaped; `status` is a valid out-pointer.
                let r = unsafe { libc::waitpid(pid, &mut status, 0) };
                assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
                if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    -libc::WTERMSIG(status)
                }
            }
        }
    }
}

impl Drop for Other {
    fn drop(&mut self) {
        if let Other::Child(pid) = *self {
            if pid > 0 {
                // SAFETY: our own unreaped child: kill it, then reap it.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
        }
    }
}

/// A channel between two processes: the other process attaches through its own handle,
/// takes the sender and sends 2,000 messages of 1 to 300 bytes, then closes; this one
/// receives every one whole and in order (through `recv_into_timeout`, `try_recv` and
/// `recv_into_slice_timeout` in turn), then `Closed`, and the other process ends with
/// status 0.
pub fn channel_across_processes<B: Backend>(b: &mut B) {
    const N: u64 = 2000;
    let opts = ChannelOptions::new().capacity(4096);
    let mem = b.create(opts.segment_len().expect("fits") as usize);
    let chan = Channel::create(mem, &opts).expect("create");
    let view = b.reopen(chan.raw().memory());
    let mut rx = chan.receiver(0).expect("receiver");
    let other = Other::start(b.shared_across_fork(), move || {
        let Ok(chan) = Channel::attach(view) else {
            return 2;
        };
        let Ok(mut tx) = chan.sender(0) else { return 3 };
        let mut buf = Vec::new();
        for i in 0..N {
            message(i, &mut buf);
            if tx.send_timeout(&buf, BOUND).is_err() {
                return 4;
            }
        }
        drop(tx);
        0
    });
    let (mut want, mut got, mut slice) = (Vec::new(), Vec::new(), [0u8; 300]);
    for i in 0..N {
        message(i, &mut want);
        match i % 3 {
            0 => {
                assert_eq!(
                    rx.recv_into_timeout(&mut got, BOUND),
                    Ok(want.len()),
                    "message {i}"
                );
            }
            1 => {
                // The try form: poll until it is there (each call never waits).
                let t = std::time::Instant::now();
                loop {
                    match rx.try_recv_into(&mut got) {
                        Ok(n) => break assert_eq!(n, want.len(), "message {i}"),
                        Err(crate::format::error::TryRecvError::Empty) if t.elapsed() < BOUND => {
                            std::thread::yield_now()
                        }
                        Err(e) => panic!("message {i}: {e}"),
                    }
                }
            }
            _ => {
                let n = rx.recv_into_slice_timeout(&mut slice, BOUND);
                assert_eq!(n, Ok(want.len()), "message {i}");
                got.clear();
                got.extend_from_slice(&slice[..want.len()]);
            }
        }
        assert_eq!(got, want, "message {i}");
    }
    assert_eq!(
        rx.recv_into_timeout(&mut got, BOUND),
        Err(RecvTimeoutError::Closed)
    );
    assert_eq!(other.join(), 0, "the sending process's status");
}

/// A sender in another process that dies without closing (SIGKILL, unreaped): the
/// receiver gets what it sent, then `PeerDied` with its pid, within the bound. On the
/// heap backend there is no other process to kill; the case checks the thread's clean
/// close instead.
pub fn channel_peer_death_across_processes<B: Backend>(b: &mut B) {
    let opts = ChannelOptions::new().capacity(4096);
    let mem = b.create(opts.segment_len().expect("fits") as usize);
    let chan = Channel::create(mem, &opts).expect("create");
    let view = b.reopen(chan.raw().memory());
    let mut rx = chan.receiver(0).expect("receiver");
    let forked = b.shared_across_fork();
    let other = Other::start(forked, move || {
        let Ok(chan) = Channel::attach(view) else {
            return 2;
        };
        let Ok(mut tx) = chan.sender(0) else { return 3 };
        for i in 0..3u8 {
            if tx.send(&[i; 10]).is_err() {
                return 4;
            }
        }
        if forked {
            // SAFETY: kill on our own pid; the process ends here, the sender unclosed.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        0
    });
    let mut got = Vec::new();
    for i in 0..3u8 {
        assert_eq!(rx.recv_into_timeout(&mut got, BOUND), Ok(10));
        assert_eq!(got, [i; 10]);
    }
    let end = rx.recv_into_timeout(&mut got, BOUND);
    match other.pid() {
        // Looked at before the child is reaped: a zombie is dead too.
        Some(pid) => assert_eq!(end, Err(RecvTimeoutError::PeerDied { pid })),
        None => assert_eq!(end, Err(RecvTimeoutError::Closed)),
    }
    let status = other.join();
    assert_eq!(status, if forked { -libc::SIGKILL } else { 0 });
}

/// A reliable broadcast whose publisher is another process: two subscribers joined
/// through their own handles before it started get all 1,000 messages (1 to 300 bytes,
/// numbered from 0) whole and in order, then `Closed` once it closes; a second publisher
/// process killed mid-stream is `PeerDied` with its pid after what it published.
pub fn broadcast_across_processes<B: Backend>(b: &mut B) {
    use crate::broadcast::{Broadcast, BroadcastOptions};
    const N: u64 = 1000;
    let opts = BroadcastOptions::new().slots(16).max_message(300);
    let mem = b.create(opts.segment_len().expect("fits") as usize);
    let bc = Broadcast::create(mem, &opts).expect("create");
    let mut subs: Vec<_> = (0..2)
        .map(|_| {
            Broadcast::attach(b.reopen(bc.raw().memory()))
                .expect("attach")
                .subscriber()
                .expect("subscriber")
        })
        .collect();
    let forked = b.shared_across_fork();
    for killed in [false, true] {
        let view = b.reopen(bc.raw().memory());
        let first = subs[0].next_message();
        let other = Other::start(forked, move || {
            let Ok(bc) = Broadcast::attach(view) else {
                return 2;
            };
            let Ok(mut p) = bc.publisher() else { return 3 };
            let mut buf = Vec::new();
            for i in 0..N {
                message(first + i, &mut buf);
                if p.publish_timeout(&buf, BOUND).is_err() {
                    return 4;
                }
            }
            if killed && forked {
                // SAFETY: kill on our own pid; the publisher dies unclosed.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
            0
        });
        let (mut want, mut got) = (Vec::new(), Vec::new());
        for i in first..first + N {
            message(i, &mut want);
            for s in &mut subs {
                let t = std::time::Instant::now();
                let r = loop {
                    let r = numbered(s, |s| s.recv_into_timeout(&mut got, BOUND));
                    // Until the new publisher takes over, the last one's close still
                    // holds: a subscriber that follows publishers calls again.
                    if i == first && r == Err(Error::Closed) && t.elapsed() < BOUND {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    break r;
                };
                assert_eq!(r, Ok(i), "killed {killed}");
                assert_eq!(got, want, "message {i}");
            }
        }
        for s in &mut subs {
            let end = s.recv_into_timeout(&mut got, BOUND);
            match (killed, other.pid()) {
                (true, Some(pid)) => assert_eq!(end, Err(RecvTimeoutError::PeerDied { pid })),
                _ => assert_eq!(end, Err(RecvTimeoutError::Closed)),
            }
        }
        let status = other.join();
        assert_eq!(status, if killed && forked { -libc::SIGKILL } else { 0 });
    }
}

/// A broadcast created through one handle, published to subscribers attached through
/// others: reliable delivers everything in order, lossy reports what was missed.
pub fn broadcast_across_handles<B: Backend>(b: &mut B) {
    use crate::broadcast::{Broadcast, BroadcastMode, BroadcastOptions};
    for mode in [BroadcastMode::Reliable, BroadcastMode::Lossy] {
        let opts = BroadcastOptions::new()
            .mode(mode)
            .slots(8)
            .max_message(100)
            .max_subscribers(3);
        let mem = b.create(opts.segment_len().expect("fits") as usize);
        let bc = Broadcast::create(mem, &opts).expect("create");
        let mut subs: Vec<_> = (0..3)
            .map(|_| {
                Broadcast::attach(b.reopen(bc.raw().memory()))
                    .expect("attach")
                    .subscriber()
                    .expect("subscribe")
            })
            .collect();
        assert!(matches!(
            bc.subscriber(),
            Err(Error::SubscribersFull { max: 3 })
        ));
        let mut p = bc.publisher().expect("publisher");
        let mut buf = Vec::new();
        for i in 0..8u64 {
            p.publish(&i.to_ne_bytes()).expect("publish");
        }
        for s in &mut subs {
            for i in 0..8u64 {
                assert_eq!(numbered(s, |s| s.recv_into(&mut buf)), Ok(i));
                assert_eq!(buf, i.to_ne_bytes());
            }
        }
        if mode == BroadcastMode::Lossy {
            for i in 8..30u64 {
                p.publish(&i.to_ne_bytes()).expect("lossy never waits");
            }
            assert_eq!(
                numbered(&mut subs[0], |s| s.recv_into(&mut buf)),
                Err(Error::Lagged { missed: 15 })
            );
            assert_eq!(numbered(&mut subs[0], |s| s.recv_into(&mut buf)), Ok(23));
        }
        drop(p);
        if mode == BroadcastMode::Lossy {
            assert_eq!(
                numbered(&mut subs[1], |s| s.try_recv_into(&mut buf)),
                Err(Error::Lagged { missed: 15 })
            );
            for i in 23..30u64 {
                assert_eq!(numbered(&mut subs[1], |s| s.try_recv_into(&mut buf)), Ok(i));
            }
        }
        assert_eq!(
            numbered(&mut subs[1], |s| s.try_recv_into(&mut buf)),
            Err(Error::Closed)
        );
    }
}

/// Events between two processes, both sides sleeping: 500 rounds of ping-pong over two
/// events (the other process notifies id `r % 64` on one and waits for our answer on the
/// other), every id arrives, and no wake-up is lost (a lost one would stall a round
/// until its bound). Then the other process notifies id 7 and dies by SIGKILL without
/// dropping its notifier: the listener gets {7}, then `PeerDied` with its pid, then
/// waits on (the line was freed). On the heap backend the other side is a thread.
pub fn event_across_processes<B: Backend>(b: &mut B) {
    use crate::event::{Event, EventOptions};
    use crate::format::error::WaitTimeoutError;
    use crate::wait::WaitMode;
    const ROUNDS: u64 = 500;
    let opts = EventOptions::new().max_ids(64);
    let len = opts.segment_len().expect("fits") as usize;
    let up = Event::create(b.create(len), &opts).expect("create");
    let down = Event::create(b.create(len), &opts).expect("create");
    let (up_view, down_view) = (b.reopen(up.raw().memory()), b.reopen(down.raw().memory()));
    let mut listener = up.listener().expect("listener");
    listener.set_wait(WaitMode::Block {
        spin: Duration::ZERO,
    });
    let mut answer = down.notifier().expect("notifier");
    let forked = b.shared_across_fork();
    let other = Other::start(forked, move || {
        let (Ok(up), Ok(down)) = (Event::attach(up_view), Event::attach(down_view)) else {
            return 2;
        };
        let (Ok(mut n), Ok(mut l)) = (up.notifier(), down.listener()) else {
            return 3;
        };
        l.set_wait(WaitMode::Block {
            spin: Duration::ZERO,
        });
        for r in 0..ROUNDS {
            if n.notify(r % 64).is_err() {
                return 4;
            }
            match l.wait_timeout(BOUND) {
                Ok(ids) if ids.iter().eq([r % 64]) => {}
                _ => return 5,
            }
        }
        if n.notify(7).is_err() {
            return 6;
        }
        if forked {
            // SAFETY: kill on our own pid; the process ends here, the notifier unclosed.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        0
    });
    for r in 0..ROUNDS {
        let ids = listener.wait_timeout(BOUND).expect("a round's id");
        assert_eq!(ids.iter().collect::<Vec<_>>(), [r % 64], "round {r}");
        answer
            .notify(r % 64)
            .unwrap_or_else(|e| panic!("answer {r}: {e}"));
    }
    assert_eq!(
        listener
            .wait_timeout(BOUND)
            .map(|ids| ids.iter().collect::<Vec<_>>()),
        Ok(vec![7])
    );
    if let Some(pid) = other.pid() {
        assert_eq!(
            listener.wait_timeout(BOUND),
            Err(WaitTimeoutError::PeerDied { pid })
        );
    }
    // Reported once: the next wait just waits.
    assert!(matches!(
        listener.wait_timeout(Duration::from_millis(30)),
        Err(WaitTimeoutError::Timeout { .. })
    ));
    let status = other.join();
    assert_eq!(status, if forked { -libc::SIGKILL } else { 0 });
}

/// A wait set over a channel receiver, a broadcast subscriber and an event listener
/// whose other ends are another process: 300 rounds, each end in turn woken from the
/// set's sleep (the other process waits for our answer on a second event before the next
/// round), each reported alone and its message or id taken. Then the other process dies
/// by SIGKILL while the set sleeps: every end is reported ready with `PeerDied` and its
/// pid; the channel and the broadcast stay so (level-triggered), the listener's goes
/// once its own `try_wait` reported the death. On the heap backend the other side is a thread and ends by closing:
/// the channel and the broadcast are reported `Closed`.
pub fn waitset_across_processes<B: Backend>(b: &mut B)
where
    B::Mem: Sync,
{
    use crate::broadcast::{Broadcast, BroadcastOptions};
    use crate::event::{Event, EventOptions};
    use crate::wait::WaitMode;
    use crate::waitset::{Ready, WaitSet};
    const ROUNDS: u64 = 300;
    let copts = ChannelOptions::new().capacity(4096);
    let chan = Channel::create(
        b.create(copts.segment_len().expect("fits") as usize),
        &copts,
    )
    .expect("channel");
    let bopts = BroadcastOptions::new().slots(8).max_message(16);
    let bc = Broadcast::create(
        b.create(bopts.segment_len().expect("fits") as usize),
        &bopts,
    )
    .expect("broadcast");
    let eopts = EventOptions::new().max_ids(64);
    let elen = eopts.segment_len().expect("fits") as usize;
    let ev = Event::create(b.create(elen), &eopts).expect("event");
    let down = Event::create(b.create(elen), &eopts).expect("event");
    let views = (
        b.reopen(chan.raw().memory()),
        b.reopen(bc.raw().memory()),
        b.reopen(ev.raw().memory()),
        b.reopen(down.raw().memory()),
    );
    let mut rx = chan.receiver(0).expect("receiver");
    let mut sub = bc.subscriber().expect("subscriber");
    let mut listener = ev.listener().expect("listener");
    let mut answer = down.notifier().expect("notifier");
    let forked = b.shared_across_fork();
    let other = Other::start(forked, move || {
        let (cv, bv, ev, dv) = views;
        let Ok(mut tx) = Channel::attach(cv).and_then(|c| c.sender(0)) else {
            return 2;
        };
        let Ok(mut publisher) = Broadcast::attach(bv).and_then(|x| x.publisher()) else {
            return 3;
        };
        let Ok(mut n) = Event::attach(ev).and_then(|e| e.notifier()) else {
            return 4;
        };
        let Ok(mut acks) = Event::attach(dv).and_then(|e| e.listener()) else {
            return 5;
        };
        for r in 0..ROUNDS {
            // Let the set go to sleep first, some rounds.
            if r % 2 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            let ok = match r % 3 {
                0 => tx.send(&r.to_le_bytes()).is_ok(),
                1 => publisher.publish(&r.to_le_bytes()).is_ok(),
                _ => n.notify(r % 64).is_ok(),
            };
            if !ok {
                return 6;
            }
            if acks.wait_timeout(BOUND).is_err() {
                return 7;
            }
        }
        if forked {
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: kill on our own pid; the process ends here, every end unclosed.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        0
    });
    let mut set = WaitSet::new();
    set.set_wait(WaitMode::Block {
        spin: Duration::ZERO,
    });
    let keys = [
        set.attach(&rx).expect("attach"),
        set.attach(&sub).expect("attach"),
        set.attach(&listener).expect("attach"),
    ];
    let mut buf = Vec::new();
    for r in 0..ROUNDS {
        let ready = set.wait_timeout(BOUND).expect("a round");
        let want = keys[(r % 3) as usize];
        assert_eq!(
            ready,
            [Ready {
                key: want,
                error: None
            }],
            "round {r}"
        );
        match r % 3 {
            0 => assert_eq!(
                rx.recv_timeout(BOUND).expect("msg").to_vec(),
                r.to_le_bytes()
            ),
            1 => {
                sub.recv_into_timeout(&mut buf, BOUND).expect("msg");
                assert_eq!(buf, r.to_le_bytes());
            }
            _ => assert!(listener.try_wait().expect("ids").contains(r % 64)),
        }
        answer.notify(0).expect("answer");
    }
    let end = |set: &mut WaitSet| {
        let mut seen = Vec::new();
        let start = std::time::Instant::now();
        while seen.len() < set.len() && start.elapsed() < BOUND {
            if let Ok(r) = set.wait_timeout(Duration::from_millis(100)) {
                for x in r {
                    if !seen.iter().any(|s: &Ready| s.key == x.key) {
                        seen.push(x);
                    }
                }
            }
        }
        seen.sort_by_key(|r| r.key);
        seen
    };
    match other.pid() {
        Some(pid) => {
            let died = Some(Error::PeerDied { pid });
            let seen = end(&mut set);
            assert_eq!(
                seen,
                keys.map(|key| Ready { key, error: died }),
                "every end reported with the death"
            );
            // The ends' own tries say so too; the listener's is then forgotten.
            assert_eq!(
                rx.try_recv().err(),
                Some(crate::TryRecvError::PeerDied { pid })
            );
            assert_eq!(
                listener.try_wait(),
                Err(crate::TryWaitError::PeerDied { pid })
            );
            let again = set.wait_timeout(Duration::from_millis(50)).expect("level");
            let stay = [keys[0], keys[1]].map(|key| Ready { key, error: died });
            assert_eq!(again, stay, "the listener's death was taken by its try");
        }
        None => {
            let closed = Some(Error::Closed);
            set.detach(keys[2]); // a closed notifier is no event: nothing to report
            let seen = end(&mut set);
            assert_eq!(
                seen,
                [
                    Ready {
                        key: keys[0],
                        error: closed
                    },
                    Ready {
                        key: keys[1],
                        error: closed
                    }
                ]
            );
        }
    }
    let status = other.join();
    assert_eq!(status, if forked { -libc::SIGKILL } else { 0 });
}

/// A hostile notifier process floods a listener that a wait set watches, beside a
/// channel carrying honest traffic: for 300 ms it notifies ids as fast as it can and
/// scribbles the event's words (every bit of the bitmap set, the sleepers count zeroed so
/// notifies skip the wake, the futex word bumped). Every wait stays bounded, no id at or
/// above `max_ids` is delivered, the channel's 2,000 messages all arrive in order, and
/// once the flood stops a fresh notifier's id reaches the listener through the set.
pub fn event_flood_across_processes<B: Backend>(b: &mut B)
where
    B::Mem: Sync,
{
    use crate::event::{Event, EventOptions};
    use crate::waitset::WaitSet;
    use std::time::Instant;
    const P: usize = crate::format::layout::PAYLOAD_OFFSET;
    const N: u64 = 2000;
    let eopts = EventOptions::new().max_ids(40).max_notifiers(4);
    let ev = Event::create(
        b.create(eopts.segment_len().expect("fits") as usize),
        &eopts,
    )
    .expect("event");
    let copts = ChannelOptions::new().capacity(4096);
    let chan = Channel::create(
        b.create(copts.segment_len().expect("fits") as usize),
        &copts,
    )
    .expect("channel");
    let (ev_view, chan_view) = (b.reopen(ev.raw().memory()), b.reopen(chan.raw().memory()));
    let mut listener = ev.listener().expect("listener");
    let mut rx = chan.receiver(0).expect("receiver");
    let mut set = WaitSet::new();
    let (kl, kc) = (
        set.attach(&listener).expect("attach"),
        set.attach(&rx).expect("attach"),
    );
    let forked = b.shared_across_fork();
    let flood = Other::start(forked, move || {
        let Ok(event) = Event::attach_with(ev_view, &super::quick()) else {
            return 2;
        };
        let Ok(mut n) = event.notifier() else {
            return 3;
        };
        let mem = event.raw().memory();
        let start = Instant::now();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        while start.elapsed() < Duration::from_millis(300) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let _ = n.notify(x % 40);
            super::poke(mem, P + 128, &u64::MAX.to_ne_bytes()); // every bit, past max_ids too
            super::poke(mem, P + 68, &0u32.to_ne_bytes()); // sleepers: notifies skip the wake
            super::poke(mem, P + 72, &((x >> 32) as u32).to_ne_bytes()); // the futex word
        }
        0
    });
    let sender = std::thread::spawn(move || {
        let mut tx = Channel::attach(chan_view)
            .and_then(|c| c.sender(0))
            .expect("sender");
        for i in 0..N {
            tx.send_timeout(&i.to_le_bytes(), BOUND).expect("send");
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let (mut got, mut buf) = (0u64, Vec::new());
    let start = Instant::now();
    while got < N {
        assert!(
            start.elapsed() < BOUND,
            "the channel stalled at {got} under the flood"
        );
        let ready = set.wait_timeout(BOUND).expect("bounded");
        for r in ready {
            if r.key == kl {
                if let Ok(ids) = listener.try_wait() {
                    assert!(ids.iter().all(|id| id < 40), "an id past max_ids: {ids:?}");
                }
            } else {
                assert_eq!(r.key, kc);
                while let Ok(n) = rx.try_recv_into(&mut buf) {
                    assert_eq!(buf[..n], got.to_le_bytes(), "message {got}");
                    got += 1;
                }
            }
        }
    }
    sender.join().expect("the sender thread panicked");
    assert_eq!(flood.join(), 0);
    // The flood is over: drain what it left, then an honest notify gets through.
    while listener.try_wait().is_ok() {}
    let mut n = ev.notifier().expect("a notifier after the flood");
    n.notify(7).expect("notify");
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < BOUND, "the listener did not recover");
        let ready = set.wait_timeout(BOUND).expect("bounded");
        if ready.iter().any(|r| r.key == kl) && listener.try_wait().is_ok_and(|ids| ids.contains(7))
        {
            break;
        }
    }
}
