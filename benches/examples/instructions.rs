//! Instructions per 8-byte message, counted by callgrind rather than timed: the figure
//! does not depend on the host's noise. One thread, both ends in one process (so what is
//! counted is the software on each message: framing, checks, copies, fences), over
//! `HeapMemory`:
//!
//! - `channel`: `try_reserve(8)`, `write`, `commit`, `try_recv`, `read`, drop;
//! - `broadcast`: lossy `try_publish(8 bytes)` + `try_recv_into(&mut Vec)`;
//! - `broadcast-reserve`: lossy zero-copy publish (`try_reserve(8)`, `write`, `commit`) +
//!   `try_recv_into(&mut Vec)`;
//! - `service`: one 8-byte call through a service of default options: the client's
//!   `try_call`, the server's `try_receive` and `respond_last`, the client's
//!   `try_receive` of the response;
//! - `rtrb`: rtrb 0.3's `push` + `pop` of a `[u8; 8]` (the baseline).
//!
//! `instructions SCENARIO N` runs `N` messages inside `measured` (the only function
//! callgrind collects, with `--toggle-collect`), after a warm-up outside it;
//! `benches/instructions.sh` runs each scenario under callgrind and prints the counts per
//! message and the ratios to rtrb.

use std::hint::black_box;

use shm_core::{
    Broadcast, BroadcastMode, BroadcastOptions, Channel, ChannelOptions, HeapMemory, Publisher,
    Service, ServiceOptions, Subscriber, WaitMode,
};

/// The counted part: everything callgrind sees runs inside this call.
#[inline(never)]
fn measured(n: u64, mut step: impl FnMut()) {
    for _ in 0..n {
        step();
    }
}

/// A lossy broadcast of 64 slots of 64 bytes in heap memory: its publisher and one
/// subscriber.
fn lossy_pair() -> (Publisher<HeapMemory>, Subscriber<HeapMemory>) {
    let opts = BroadcastOptions::new()
        .mode(BroadcastMode::Lossy)
        .slots(64)
        .max_message(64);
    let len = opts.segment_len().expect("segment length") as usize;
    let b = Broadcast::create(HeapMemory::new(len), &opts).expect("broadcast");
    (
        b.publisher().expect("publisher"),
        b.subscriber().expect("subscriber"),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| "channel".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let msg = [7u8; 8];
    let mut out = [0u8; 8];
    match scenario.as_str() {
        "channel" => {
            let opts = ChannelOptions::new().capacity(4096);
            let len = opts.segment_len().expect("segment length") as usize;
            let chan = Channel::create(HeapMemory::new(len), &opts).expect("channel");
            let mut tx = chan.sender(0).expect("sender");
            let mut rx = chan.receiver(0).expect("receiver");
            tx.set_wait(WaitMode::Spin);
            rx.set_wait(WaitMode::Spin);
            let mut step = || {
                let s = tx.try_reserve(8).expect("room");
                s.write(0, black_box(&msg)).expect("write");
                s.commit();
                rx.try_recv()
                    .expect("message")
                    .read(0, &mut out)
                    .expect("read");
                black_box(&out);
            };
            for _ in 0..1000 {
                step();
            }
            measured(n, step);
        }
        "broadcast" => {
            let (mut publisher, mut sub) = lossy_pair();
            let mut v = Vec::with_capacity(64);
            let mut step = || {
                publisher.try_publish(black_box(&msg)).expect("publish");
                sub.try_recv_into(&mut v).expect("message");
                black_box(&v);
            };
            for _ in 0..1000 {
                step();
            }
            measured(n, step);
        }
        "broadcast-reserve" => {
            let (mut publisher, mut sub) = lossy_pair();
            let mut v = Vec::with_capacity(64);
            let mut step = || {
                let slot = publisher.try_reserve(8).expect("slot");
                slot.write(0, black_box(&msg)).expect("write");
                slot.commit();
                sub.try_recv_into(&mut v).expect("message");
                black_box(&v);
            };
            for _ in 0..1000 {
                step();
            }
            measured(n, step);
        }
        "rtrb" => {
            let (mut p, mut c) = rtrb::RingBuffer::<[u8; 8]>::new(512);
            let mut step = || {
                p.push(black_box(msg)).expect("room");
                out = c.pop().expect("message");
                black_box(&out);
            };
            for _ in 0..1000 {
                step();
            }
            measured(n, step);
        }
        "service" => {
            let opts = ServiceOptions::new();
            let len = opts.segment_len().expect("segment length") as usize;
            let svc = Service::create(HeapMemory::new(len), &opts).expect("service");
            let mut client = svc.client().expect("client");
            let mut server = svc.server().expect("server");
            client.set_wait(WaitMode::Spin);
            server.set_wait(WaitMode::Spin);
            let mut step = || {
                let mut pending = client.try_call(black_box(&msg)).expect("sent");
                let req = server.try_receive().expect("request");
                req.respond_last(black_box(&msg)).expect("responded");
                let r = pending.try_receive().expect("response");
                black_box(&r);
            };
            for _ in 0..1000 {
                step();
            }
            measured(n, step);
        }
        other => {
            eprintln!(
                "unknown scenario {other}: channel | broadcast | broadcast-reserve | service | rtrb"
            );
            std::process::exit(2);
        }
    }
}
