//! Message throughput: 64 B, 4 KiB and 1 MiB messages from this process to a forked
//! consumer that copies each one out, through the channel on each backend and through a
//! Unix socket. Each measurement sends a count, the messages, and waits for the consumer's
//! one-byte acknowledgement after the last one.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shm_benches::{create, reopen, size_label, Backend, Peer, KIB, MIB};
use shm_core::{Channel, ChannelOptions, WaitMode};

fn messages(c: &mut Criterion) {
    let mut g = c.benchmark_group("messages");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for size in [64u64, 4 * KIB, MIB] {
        let label = if size < KIB {
            format!("{size}B")
        } else {
            size_label(size)
        };
        let payload = vec![0xa5u8; size as usize];
        g.throughput(Throughput::Bytes(size));
        // The floor: one single-core memcpy of the same block.
        let mut dst = vec![0u8; size as usize];
        g.bench_function(BenchmarkId::new("memcpy", &label), |b| {
            b.iter(|| dst.copy_from_slice(std::hint::black_box(&payload)))
        });
        for be in Backend::ALL {
            let cap = ((size + 8) * 16).next_power_of_two().max(1 << 16);
            let opts = ChannelOptions::new().rings(2).capacity(cap);
            let chan = Channel::create(
                create(be, opts.segment_len().expect("capacity fits")),
                &opts,
            )
            .expect("channel");
            let peer = {
                let chan = &chan;
                Peer::fork(move || {
                    let view = Channel::attach(reopen(chan.raw().memory())).expect("attach");
                    let mut rx = view.receiver(0).expect("rx");
                    let mut ack = view.sender(1).expect("ack");
                    rx.set_wait(WaitMode::Spin);
                    let mut buf = Vec::new();
                    let mut count = [0u8; 8];
                    loop {
                        match rx.recv() {
                            Ok(m) => m.read(0, &mut count).expect("count"),
                            Err(_) => return 0,
                        }
                        for _ in 0..u64::from_ne_bytes(count) {
                            rx.recv_into(&mut buf).expect("message");
                        }
                        ack.send(&[1]).expect("ack");
                    }
                })
            };
            let mut tx = chan.sender(0).expect("tx");
            let mut acks = chan.receiver(1).expect("acks");
            tx.set_wait(WaitMode::Spin);
            acks.set_wait(WaitMode::Spin);
            g.bench_function(BenchmarkId::new(be.name(), &label), |b| {
                b.iter_custom(|n| {
                    let t = Instant::now();
                    tx.send(&n.to_ne_bytes()).expect("count");
                    for _ in 0..n {
                        let slot = tx.reserve(payload.len()).expect("reserve");
                        slot.write(0, &payload).expect("write");
                        slot.commit();
                    }
                    drop(acks.recv().expect("ack"));
                    t.elapsed()
                })
            });
            drop(tx);
            peer.join();
        }
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let peer = Peer::fork(|| {
            let mut s = &theirs;
            let mut buf = vec![0u8; size as usize];
            let mut count = [0u8; 8];
            // The forked child holds its own copy of our end too, so EOF never comes: a
            // count of u64::MAX says stop.
            while s.read_exact(&mut count).is_ok() && count != u64::MAX.to_ne_bytes() {
                for _ in 0..u64::from_ne_bytes(count) {
                    if s.read_exact(&mut buf).is_err() {
                        return 1;
                    }
                }
                if s.write_all(&[1]).is_err() {
                    return 1;
                }
            }
            0
        });
        drop(theirs);
        g.bench_function(BenchmarkId::new("unix", &label), |b| {
            b.iter_custom(|n| {
                let t = Instant::now();
                ours.write_all(&n.to_ne_bytes()).expect("count");
                for _ in 0..n {
                    ours.write_all(&payload).expect("write");
                }
                let mut ack = [0u8; 1];
                ours.read_exact(&mut ack).expect("ack");
                t.elapsed()
            })
        });
        ours.write_all(&u64::MAX.to_ne_bytes()).expect("stop");
        peer.join();
    }
    g.finish();
}

criterion_group!(benches, messages);
criterion_main!(benches);
