//! Round trip across processes, busy-polling: a long-lived forked peer answers each ping.
//!
//! * `<backend>/channel`: an 8-byte message each way through a two-ring channel;
//! * `<backend>/word`: one word bounced on one cache line of the backend's segment
//!   (through `RawSegment::atomic_u64`);
//! * `floor`: the same bounce on a bare anonymous mapping, no segment at all;
//! * `unix`, `pipe`: 8 bytes each way through a socket pair or two pipes.

#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use shm_benches::{create, reopen, Backend, Peer};
use shm_core::os::mapping::Mapping;
use shm_core::{Channel, ChannelOptions, Segment, WaitMode};

/// Bounces `word` between odd (ours) and even (theirs) values; `n` round trips.
fn bounce(word: &AtomicU64, start: u64, n: u64) -> u64 {
    let mut v = start;
    for _ in 0..n {
        // Release: pairs with the peer's Acquire load below.
        word.store(v + 1, Ordering::Release);
        // Acquire: pairs with the peer's Release store of v + 2.
        while word.load(Ordering::Acquire) != v + 2 {
            std::hint::spin_loop();
        }
        v += 2;
    }
    v
}

/// The peer's side of `bounce`: answers every odd value with the next even one until it
/// reads `u64::MAX`.
fn answer(word: &AtomicU64) -> i32 {
    let mut last = 0;
    loop {
        let v = word.load(Ordering::Acquire);
        if v == u64::MAX {
            return 0;
        }
        if v != last && v % 2 == 1 {
            last = v + 1;
            // Release: pairs with the pinger's Acquire spin.
            word.store(v + 1, Ordering::Release);
        }
        std::hint::spin_loop();
    }
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Measures `bounce` on `word` against `peer` (running `answer`), then stops the peer.
fn bench_bounce(g: &mut Group<'_>, name: &str, word: &AtomicU64, peer: Peer) {
    let mut v = 0;
    g.bench_function(name, |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            v = bounce(word, v, n);
            t.elapsed()
        })
    });
    // Release: pairs with the peer's Acquire load in `answer`.
    word.store(u64::MAX, Ordering::Release);
    peer.join();
}

fn roundtrip(c: &mut Criterion) {
    let mut g = c.benchmark_group("roundtrip");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));

    // The floor: a bare shared anonymous mapping.
    {
        let map = Mapping::anonymous_shared(4096).expect("mmap");
        // SAFETY: the mapping is 4096 bytes, page aligned, and outlives both uses; the
        // word is only accessed atomically (by us and by the forked peer).
        let word = unsafe { &*map.as_ptr().cast::<AtomicU64>() };
        let peer = Peer::fork(|| answer(word));
        bench_bounce(&mut g, "floor", word, peer);
    }

    for be in Backend::ALL {
        // One word through the segment's typed accessor.
        let seg = Segment::create(create(be, 4096), &[0u64; 8]).expect("create");
        let peer = {
            let mem = &seg;
            Peer::fork(move || {
                let view =
                    Segment::<[u64; 8], _>::attach(reopen(mem.raw().memory())).expect("attach");
                answer(view.raw().atomic_u64(0).expect("word"))
            })
        };
        let word = seg.raw().atomic_u64(0).expect("word");
        bench_bounce(&mut g, &format!("{}/word", be.name()), word, peer);

        // 8-byte messages through the channel.
        let chan = Channel::create(
            create(be, 64 * 1024),
            &ChannelOptions::new().rings(2).capacity(4096),
        )
        .expect("channel");
        let peer = {
            let chan = &chan;
            Peer::fork(move || {
                let view = Channel::attach(reopen(chan.raw().memory())).expect("attach");
                let mut rx = view.receiver(0).expect("rx");
                let mut tx = view.sender(1).expect("tx");
                rx.set_wait(WaitMode::Spin);
                tx.set_wait(WaitMode::Spin);
                let mut w = [0u8; 8];
                loop {
                    match rx.recv() {
                        Ok(m) => m.read(0, &mut w).expect("read"),
                        Err(_) => return 0, // closed: the benchmark is over
                    }
                    if tx.send(&w).is_err() {
                        return 1;
                    }
                }
            })
        };
        let mut tx = chan.sender(0).expect("tx");
        let mut rx = chan.receiver(1).expect("rx");
        tx.set_wait(WaitMode::Spin);
        rx.set_wait(WaitMode::Spin);
        let mut w = [0u8; 8];
        g.bench_function(format!("{}/channel", be.name()), |b| {
            b.iter_custom(|n| {
                let t = Instant::now();
                for i in 0..n {
                    let slot = tx.reserve(8).expect("reserve");
                    slot.write(0, &i.to_ne_bytes()).expect("write");
                    slot.commit();
                    rx.recv().expect("recv").read(0, &mut w).expect("read");
                }
                t.elapsed()
            })
        });
        drop(tx);
        peer.join();
    }

    // Kernel baselines: a socket pair and a pipe pair, 8 bytes each way.
    fn stream_bench<S: Read + Write>(g: &mut Group<'_>, name: &str, mut ours: S, peer: Peer) {
        let mut buf = [0u8; 8];
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                let t = Instant::now();
                for i in 0..n {
                    ours.write_all(&i.to_ne_bytes()).expect("write");
                    ours.read_exact(&mut buf).expect("read");
                }
                t.elapsed()
            })
        });
        // The forked peer holds copies of our ends too, so EOF never comes: u64::MAX
        // says stop.
        ours.write_all(&u64::MAX.to_ne_bytes()).expect("stop");
        peer.join();
    }
    let (a, bsock) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let peer = Peer::fork(|| {
        let mut s = &bsock;
        let mut buf = [0u8; 8];
        while s.read_exact(&mut buf).is_ok() && buf != u64::MAX.to_ne_bytes() {
            if s.write_all(&buf).is_err() {
                return 1;
            }
        }
        0
    });
    drop(bsock);
    stream_bench(&mut g, "unix", a, peer);

    let (r1, w1) = std::io::pipe().expect("pipe");
    let (r2, w2) = std::io::pipe().expect("pipe");
    let peer = Peer::fork(|| {
        let (mut r, mut w) = (&r1, &w2);
        let mut buf = [0u8; 8];
        while r.read_exact(&mut buf).is_ok() && buf != u64::MAX.to_ne_bytes() {
            if w.write_all(&buf).is_err() {
                return 1;
            }
        }
        0
    });
    drop((r1, w2));
    stream_bench(&mut g, "pipe", Duplex(r2, w1), peer);
    g.finish();
}

struct Duplex(std::io::PipeReader, std::io::PipeWriter);

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
