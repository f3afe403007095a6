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
enum Other {
    Child(libc::pid_t),
    Thread(Option<std::thread::JoinHandle<i32>>),
}

impl Other {
    fn start<F: FnOnce() -> i32 + Send + 'static>(forked: bool, work: F) -> Other {
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

    fn pid(&self) -> Option<u32> {
        match self {
            Other::Child(pid) => Some(*pid as u32),
            Other::Thread(_) => None,
        }
    }

    /// Waits for the other side to end: its exit status (`-signal` if a signal ended it).
    fn join(mut self) -> i32 {
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
