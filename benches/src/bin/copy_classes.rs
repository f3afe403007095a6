//! The copy into and out of shared memory against glibc's `memcpy`, per size class, in one
//! run: `cargo run --release -p shm-benches --bin copy_classes` (add `SHM_COPY=words`,
//! `movsb` or `vector` to force a method). Prints one JSON object per size, skew and direction: `ours` and
//! `memcpy` in GiB/s, `ratio` = ours / memcpy, the copy method, the CPU model.
//!
//! Both sides copy between the same kinds of address (the source buffer, and a destination
//! 128 bytes into a page, where a segment's payload starts), warm in cache where they
//! fit; each figure is the median of 7 rounds of at least 20 ms each.

use std::hint::black_box;
use std::time::Instant;

use shm_core::{HeapMemory, Segment};

fn gib_per_s(bytes: usize, mut f: impl FnMut()) -> f64 {
    // Enough repetitions for ~20 ms.
    let mut reps = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        if t.elapsed().as_millis() >= 20 {
            break;
        }
        reps *= 2;
    }
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            (bytes * reps) as f64 / t.elapsed().as_secs_f64() / (1u64 << 30) as f64
        })
        .collect();
    rounds.sort_by(|a, b| a.total_cmp(b));
    rounds[3]
}

/// A buffer of `size` bytes starting `offset` bytes into a page.
fn at_offset(size: usize, offset: usize, fill: impl Fn(usize) -> u8) -> (Vec<u8>, usize) {
    let mut v = vec![0u8; size + 8192];
    let at = v.as_ptr().align_offset(4096) + offset;
    for (i, b) in v[at..at + size].iter_mut().enumerate() {
        *b = fill(i);
    }
    (v, at)
}

fn main() {
    let cpu = shm_core::os::cpu::model();
    let method = shm_core::format::copy::method();
    for size in [64usize, 256, 1024, 4096, 65536, 1 << 20, 16 << 20] {
        // `skew`: how far the private buffer's offset in its page is from the payload's
        // (128 bytes into a page). 2048 is far; 0 and 16 are the near-aliasing distances
        // where some CPUs' `rep movsb` (which glibc's memcpy uses at some sizes) takes a
        // slow path.
        for skew in [2048usize, 0, 16] {
            let (src, s) = at_offset(size, 128 + skew, |i| i as u8);
            let src = &src[s..s + size];
            let (mut dst, d) = at_offset(size, 128 + skew, |_| 0);
            let dst = &mut dst[d..d + size];
            let seg = Segment::create(HeapMemory::new(size + 4096), &0u64).expect("segment");
            // The baseline copies between the same two kinds of address: `src`, and a
            // buffer that starts 128 bytes into a page, as the segment's payload does.
            let (mut page, at) = at_offset(size, 128, |_| 0);
            let twin = &mut page[at..at + size];
            let memcpy = gib_per_s(size, || twin.copy_from_slice(black_box(src)));
            let write = gib_per_s(size, || seg.write_at(0, black_box(src)).expect("write"));
            let read = gib_per_s(size, || seg.read_at(0, black_box(&mut *dst)).expect("read"));
            for (dir, ours) in [("write", write), ("read", read)] {
                println!(
                    "{{\"size\":{size},\"skew\":{skew},\"direction\":\"{dir}\",\"method\":\"{method}\",\"ours_gib_per_s\":{ours:.2},\"memcpy_gib_per_s\":{memcpy:.2},\"ratio\":{:.3},\"cpu\":\"{cpu}\"}}",
                    ours / memcpy
                );
            }
        }
    }
}
