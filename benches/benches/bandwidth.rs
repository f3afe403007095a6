//! Bandwidth: writing and reading a 64 MiB payload through each backend's mapping, on
//! first touch (a fresh segment each time: page faults included) and pre-faulted (the
//! same segment again), against a heap-to-heap memcpy of the same size in the same run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shm_benches::{create, Backend, MIB};
use shm_core::Segment;

const LEN: usize = 64 * MIB as usize;

fn bandwidth(c: &mut Criterion) {
    let src: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
    let mut dst = vec![0u8; LEN];
    let mut g = c.benchmark_group("bandwidth_64MiB");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("heap_memcpy", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&src)))
    });
    for be in Backend::ALL {
        let size = (LEN + 4096) as u64;
        g.bench_function(format!("{}/write_first_touch", be.name()), |b| {
            b.iter_batched(
                || Segment::create(create(be, size), &0u64).expect("create"),
                |seg| {
                    seg.write_at(0, black_box(&src)).expect("write");
                    seg
                },
                BatchSize::PerIteration,
            )
        });
        let seg = Segment::create(create(be, size), &0u64).expect("create");
        seg.write_at(0, &src).expect("fault in");
        g.bench_function(format!("{}/write_prefaulted", be.name()), |b| {
            b.iter(|| seg.write_at(0, black_box(&src)).expect("write"))
        });
        g.bench_function(format!("{}/read_prefaulted", be.name()), |b| {
            b.iter(|| seg.read_at(0, black_box(&mut dst)).expect("read"))
        });
    }
    g.finish();
}

criterion_group!(benches, bandwidth);
criterion_main!(benches);
