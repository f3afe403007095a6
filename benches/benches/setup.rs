//! Setup cost: create + map + lay out + drop, and open (or receive) + map + attach, for
//! each backend at 4 KiB, 1 MiB, 64 MiB and 4 GiB (virtual: nothing is touched).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shm_benches::{create, reopen, size_label, Backend, GIB, KIB, MIB};
use shm_core::Segment;

fn setup(c: &mut Criterion) {
    let mut g = c.benchmark_group("setup");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    for b in Backend::ALL {
        for size in [4 * KIB, MIB, 64 * MIB, 4 * GIB] {
            let label = size_label(size);
            g.bench_function(
                BenchmarkId::new(format!("{}/create", b.name()), &label),
                |bench| {
                    bench.iter(|| Segment::create(create(b, size), &[1u64, 2, 3]).expect("create"))
                },
            );
            let owner = Segment::create(create(b, size), &[1u64, 2, 3]).expect("create");
            g.bench_function(
                BenchmarkId::new(format!("{}/open", b.name()), &label),
                |bench| {
                    bench.iter(|| {
                        Segment::<[u64; 3], _>::attach(reopen(owner.raw().memory()))
                            .expect("attach")
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, setup);
criterion_main!(benches);
