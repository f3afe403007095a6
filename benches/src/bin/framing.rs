//! What one 8-byte message costs the two ends of a channel in software, step by step, in
//! one thread (both ends in one process, so no cache line crosses cores: what is left is
//! the framing's own instructions and fences): `cargo run --release -p shm-benches --bin
//! framing`. Prints one JSON object per step: nanoseconds per message (median of 7 rounds
//! of 2^20 messages) and the CPU model. The cross-core part of a round trip (two cache
//! lines each way at most, as in the floor) is what `shm-demo pingpong` adds to this.

use std::hint::black_box;
use std::time::Instant;

use shm_core::{Channel, ChannelOptions, HeapMemory, WaitMode};

const N: u32 = 1 << 20;

fn ns_per(mut f: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..N {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(N)
        })
        .collect();
    rounds.sort_by(|a, b| a.total_cmp(b));
    rounds[3]
}

fn main() {
    let cpu = shm_core::os::cpu::model();
    let opts = ChannelOptions::new().capacity(4096);
    let len = opts.segment_len().expect("len") as usize;
    let chan = Channel::create(HeapMemory::new(len), &opts).expect("channel");
    let mut tx = chan.sender(0).expect("sender");
    let mut rx = chan.receiver(0).expect("receiver");
    tx.set_wait(WaitMode::Spin);
    rx.set_wait(WaitMode::Spin);
    let msg = [7u8; 8];
    let mut out = [0u8; 8];
    let word = std::sync::atomic::AtomicU64::new(0);
    let mut v = Vec::with_capacity(8);
    let steps: Vec<(&str, f64)> = vec![
        (
            "floor: a Release store and an Acquire load of one word",
            ns_per(|| {
                word.store(black_box(1), std::sync::atomic::Ordering::Release);
                black_box(word.load(std::sync::atomic::Ordering::Acquire));
            }),
        ),
        (
            "floor + fence(SeqCst) (what each publish and release adds)",
            ns_per(|| {
                word.store(black_box(1), std::sync::atomic::Ordering::Release);
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                black_box(word.load(std::sync::atomic::Ordering::Acquire));
            }),
        ),
        (
            "try_reserve + commit, try_recv + drop (framing, no payload)",
            ns_per(|| {
                tx.try_reserve(8).expect("room").commit();
                drop(rx.try_recv().expect("message"));
            }),
        ),
        (
            "+ write(8) and read(8): try_reserve, write, commit, try_recv, read, drop",
            ns_per(|| {
                let s = tx.try_reserve(8).expect("room");
                s.write(0, black_box(&msg)).expect("write");
                s.commit();
                rx.try_recv()
                    .expect("message")
                    .read(0, &mut out)
                    .expect("read");
            }),
        ),
        (
            "blocking reserve / recv (the pingpong's calls), with write and read",
            ns_per(|| {
                let s = tx.reserve(8).expect("room");
                s.write(0, black_box(&msg)).expect("write");
                s.commit();
                rx.recv().expect("message").read(0, &mut out).expect("read");
            }),
        ),
        (
            "send(8) + recv_into",
            ns_per(|| {
                tx.send(black_box(&msg)).expect("send");
                rx.recv_into(&mut v).expect("recv");
                black_box(&v);
            }),
        ),
    ];
    for (step, ns) in steps {
        println!("{{\"step\":\"{step}\",\"ns_per_message\":{ns:.1},\"cpu\":\"{cpu}\"}}");
    }
}
