//! The reactor that parks futures: a waker that panics does not take down the reactor
//! thread that woke it (futures parked on the same thread later are still woken).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use shm_core::{Channel, ChannelOptions, HeapMemory, WaitMode};

/// Set by the panicking waker just before it panics, so the test knows it ran.
static PANICKED: AtomicBool = AtomicBool::new(false);

struct Panics;
impl Wake for Panics {
    fn wake(self: Arc<Self>) {
        PANICKED.store(true, Ordering::SeqCst);
        panic!("a waker that panics (expected by this test)");
    }
}

struct Flag(AtomicBool);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn pair() -> (shm_core::Sender<HeapMemory>, shm_core::Receiver<HeapMemory>) {
    let mem = HeapMemory::new(1 << 16);
    let view = mem.share();
    let a = Channel::create(mem, &ChannelOptions::new()).unwrap();
    let b = Channel::attach(view).unwrap();
    let mut rx = b.receiver(0).unwrap();
    rx.set_wait(WaitMode::Block {
        spin: Duration::ZERO,
    });
    (a.sender(0).unwrap(), rx)
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_panicking_waker_does_not_stop_the_reactor() {
    let (mut tx_a, mut rx_a) = pair();
    let (mut tx_b, mut rx_b) = pair();
    let panics = Waker::from(Arc::new(Panics));
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let flag_waker = Waker::from(Arc::clone(&flag));

    let mut fa = Box::pin(rx_a.recv_async());
    assert!(fa
        .as_mut()
        .poll(&mut Context::from_waker(&panics))
        .is_pending());
    tx_a.send(b"a").unwrap(); // the reactor wakes `panics`
    eventually("the panicking waker was never called", || {
        PANICKED.load(Ordering::SeqCst)
    });

    // Parked after the panic, on whatever thread the reactor gives it.
    let mut fb = Box::pin(rx_b.recv_async());
    assert!(fb
        .as_mut()
        .poll(&mut Context::from_waker(&flag_waker))
        .is_pending());
    tx_b.send(b"b").unwrap();
    eventually("the second future was never woken", || {
        flag.0.load(Ordering::SeqCst)
    });
    match fb.as_mut().poll(&mut Context::from_waker(&flag_waker)) {
        Poll::Ready(Ok(m)) => assert_eq!(m.to_vec(), b"b"),
        other => panic!("{:?}", other.map(|r| r.map(|m| m.len()))),
    }
    drop(fa);
}
