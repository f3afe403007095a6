//! Broadcast throughput: one publisher (this process, CPU 0) to 1, 2 and 4 forked
//! subscriber processes (pinned together to CPU 1: with 4 subscribers, five processes
//! share two cores), 64 B, 4 KiB and 1 MiB messages, reliable and lossy, over a memfd
//! segment; against N Unix sockets written one after another. The SPSC channel's figure
//! for the same sizes is the `messages` group of the same `cargo bench` run.
//!
//! Reliable: the time for the publisher to get `n` messages into a 64-slot ring that
//! every subscriber must read before a slot is reused, so once the ring is full it is
//! the slowest subscriber's rate. Lossy: the publisher's own rate (it never waits).

use shm_core::RecvError;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shm_benches::{create, reopen, size_label, Backend, Peer, KIB, MIB};
use shm_core::{Broadcast, BroadcastMode, BroadcastOptions};

fn label(size: u64) -> String {
    if size < KIB {
        format!("{size}B")
    } else {
        size_label(size)
    }
}

fn broadcast(c: &mut Criterion) {
    let mut g = c.benchmark_group("broadcast");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(300));
    for size in [64u64, 4 * KIB, MIB] {
        let payload = vec![0x5au8; size as usize];
        g.throughput(Throughput::Elements(1));
        for subs in [1u32, 2, 4] {
            for mode in [BroadcastMode::Reliable, BroadcastMode::Lossy] {
                let opts = BroadcastOptions::new()
                    .mode(mode)
                    .slots(64)
                    .max_message(size)
                    .max_subscribers(subs);
                let b = Broadcast::create(
                    create(Backend::Memfd, opts.segment_len().expect("fits")),
                    &opts,
                )
                .expect("broadcast");
                let peers: Vec<Peer> = (0..subs)
                    .map(|_| {
                        let b = &b;
                        Peer::fork(move || {
                            let view = Broadcast::attach(reopen(b.raw().memory())).expect("attach");
                            let mut s = view.subscriber().expect("subscribe");
                            let mut buf = Vec::new();
                            loop {
                                match s.recv_into(&mut buf) {
                                    Ok(_) | Err(RecvError::Lagged { .. }) => {}
                                    Err(RecvError::Closed) => return 0,
                                    Err(_) => return 1,
                                }
                            }
                        })
                    })
                    .collect();
                let t = Instant::now();
                while b.subscriber_count() < subs {
                    assert!(t.elapsed() < Duration::from_secs(10), "subscribers joining");
                    std::thread::sleep(Duration::from_millis(1));
                }
                let mut p = b.publisher().expect("publisher");
                let m = if mode == BroadcastMode::Lossy {
                    "lossy"
                } else {
                    "reliable"
                };
                g.bench_function(
                    BenchmarkId::new(format!("{m}/{subs}sub"), label(size)),
                    |bench| {
                        bench.iter_custom(|n| {
                            let t = Instant::now();
                            for _ in 0..n {
                                p.publish(&payload).expect("publish");
                            }
                            t.elapsed()
                        })
                    },
                );
                drop(p);
                for peer in peers {
                    peer.join();
                }
            }
            // N Unix sockets: every message written to each, each reader acks a count.
            let mut socks = Vec::new();
            let mut peers = Vec::new();
            for _ in 0..subs {
                let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
                peers.push(Peer::fork(|| {
                    let mut s = &theirs;
                    let mut buf = vec![0u8; size as usize];
                    let mut count = [0u8; 8];
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
                }));
                drop(theirs);
                socks.push(ours);
            }
            g.bench_function(
                BenchmarkId::new(format!("unix/{subs}sub"), label(size)),
                |bench| {
                    bench.iter_custom(|n| {
                        let t = Instant::now();
                        for s in &mut socks {
                            s.write_all(&n.to_ne_bytes()).expect("count");
                        }
                        for _ in 0..n {
                            for s in &mut socks {
                                s.write_all(&payload).expect("write");
                            }
                        }
                        for s in &mut socks {
                            let mut ack = [0u8; 1];
                            s.read_exact(&mut ack).expect("ack");
                        }
                        t.elapsed()
                    })
                },
            );
            for s in &mut socks {
                s.write_all(&u64::MAX.to_ne_bytes()).expect("stop");
            }
            for peer in peers {
                peer.join();
            }
        }
    }
    g.finish();
}

criterion_group!(benches, broadcast);
criterion_main!(benches);
