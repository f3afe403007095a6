//! shm-anon with real forked processes, and leak checks.

use std::time::Duration;

use proptest::prelude::*;
use shm_anon::{fork, AnonShm};
use shm_core::testing::{
    assert_success, fd_count, results, spawn_self, MyData, ROLE_VAR, TUTORIAL,
};
use shm_core::{Error as CoreError, Segment, SeqLock, SharedMemory};

fn maps_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Entry point of the child processes spawned (not forked) by the tests below.
#[test]
#[ignore = "entry point for child processes spawned by the other tests"]
fn child() {
    match std::env::var(ROLE_VAR).expect("run by spawn_self").as_str() {
        "leak-cycles" => {
            let cycles: usize = std::env::var("CYCLES").map_or(10_000, |c| c.parse().unwrap());
            let (fds, maps) = (fd_count(), maps_count());
            for _ in 0..cycles {
                let seg = Segment::create(AnonShm::create(8192).unwrap(), &TUTORIAL).unwrap();
                let alias =
                    Segment::<MyData, _>::attach(seg.raw().memory().alias().unwrap()).unwrap();
                assert_eq!(alias.read().unwrap(), TUTORIAL);
            }
            println!("RESULT {fds} {} {maps} {}", fd_count(), maps_count());
        }
        "orphan-maker" => {
            // Fork a child that would wait forever on its parent, print its pid, and die
            // without reaping it.
            let seg = SeqLock::create(AnonShm::create(4096).unwrap(), &0u64).unwrap();
            // SAFETY: the child only loads from the seqlock and sleeps (a syscall).
            let child = unsafe {
                fork(|| loop {
                    if seg.try_load() == Some(1) {
                        return 0;
                    }
                    libc::usleep(10_000);
                })
            }
            .unwrap();
            println!("RESULT {}", child.pid());
            std::mem::forget(child);
            // SAFETY: _exit ends this process without running destructors (so the forgotten
            // child is not killed by our Drop); that is the point of the test.
            unsafe { libc::_exit(0) };
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn tutorial_record_crosses_fork() {
    let seg = Segment::create(AnonShm::create(4 << 30).unwrap(), &TUTORIAL).unwrap();
    // SAFETY: the child attaches a fresh alias, reads, compares and writes: atomic accesses
    // and mremap only.
    let mut child = unsafe {
        fork(|| {
            let Ok(alias) = seg.raw().memory().alias() else {
                return 2;
            };
            let Ok(view) = Segment::<MyData, _>::attach(alias) else {
                return 3;
            };
            if view.read().unwrap() != TUTORIAL {
                return 4;
            }
            if view
                .write(&MyData {
                    col1: 1,
                    col2: 2,
                    col3: 3,
                })
                .is_err()
            {
                return 5;
            }
            0
        })
    }
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(
        seg.read().unwrap(),
        MyData {
            col1: 1,
            col2: 2,
            col3: 3
        }
    );
    assert!(
        seg.raw().memory().resident_pages().unwrap() <= 2,
        "4 GiB region must stay sparse"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Writes made by a forked child through its own mapping read back byte-exact here.
    #[test]
    fn writes_in_a_forked_child_read_back_exactly(
        len in 160usize..20000,
        writes in prop::collection::vec((0usize..21000, prop::collection::vec(any::<u8>(), 0..200)), 1..30),
    ) {
        let seg = Segment::create(AnonShm::create(len).unwrap(), &TUTORIAL).unwrap();
        let plen = seg.payload_len();
        // SAFETY: the child maps an alias, writes and compares results; no allocation.
        let mut child = unsafe {
            fork(|| {
                let Ok(alias) = seg.raw().memory().alias() else { return 2 };
                let Ok(view) = Segment::<MyData, _>::attach(alias) else { return 3 };
                for (off, bytes) in &writes {
                    let fits = off + bytes.len() <= plen;
                    match view.write_at(*off, bytes) {
                        Ok(()) if fits => {}
                        Err(CoreError::OutOfBounds { .. }) if !fits => {}
                        _ => return 4,
                    }
                }
                0
            })
        }
        .unwrap();
        prop_assert_eq!(child.wait().unwrap().code(), Some(0));
        let model = shm_core::testing::expected_payload(plen, &writes);
        let mut back = vec![0u8; plen];
        seg.read_at(0, &mut back).unwrap();
        prop_assert_eq!(back, model);
    }
}

#[test]
fn seqlock_snapshots_across_fork_never_tear() {
    let seg = SeqLock::create(AnonShm::create(4096).unwrap(), &[0u64; 32]).unwrap();
    let rounds = 50_000u64;
    // SAFETY: the child only stores through the seqlock.
    let mut child = unsafe {
        fork(|| {
            for i in 1..=rounds {
                if seg.store(&[i; 32]).is_err() {
                    return 2;
                }
            }
            0
        })
    }
    .unwrap();
    let (mut last, mut retries) = (0, 0);
    while last < rounds {
        let (v, r) = seg.load_counted().unwrap();
        assert!(v.iter().all(|&x| x == v[0]), "torn snapshot {v:?}");
        assert!(v[0] >= last);
        last = v[0];
        retries += r;
        if child.try_wait().unwrap().is_some() && last < rounds {
            last = seg.load().unwrap()[0];
            break;
        }
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(last, rounds);
    println!("reader retried {retries} times while the child wrote");
}

#[test]
fn child_exit_status_and_panics_are_reported() {
    // SAFETY: the closures return at once.
    let mut ok = unsafe { fork(|| 7) }.unwrap();
    assert_eq!(ok.wait().unwrap().code(), Some(7));
    // SAFETY: the closure only sleeps.
    let mut slow = unsafe {
        fork(|| {
            libc::sleep(30);
            0
        })
    }
    .unwrap();
    assert_eq!(slow.wait_timeout(Duration::from_millis(50)).unwrap(), None);
    slow.kill().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(slow.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn child_dies_with_its_parent() {
    let out = spawn_self("child", "orphan-maker", &[], "");
    assert_success(&out);
    let pid: u32 = results(&out)[0].parse().unwrap();
    // The orphan-maker exited without killing its child: PDEATHSIG must.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while shm_core::os::proc::liveness(pid) == shm_core::os::proc::Liveness::Alive {
        // The orphan is reparented to init (or a subreaper), which reaps it; a zombie
        // entry may linger briefly.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.split(' ').nth(2) == Some("Z") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "child {pid} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ten_thousand_create_drop_cycles_leak_nothing() {
    let out = spawn_self("child", "leak-cycles", &[], "");
    shm_core::testing::assert_counts_unchanged(&out, &["fds", "mappings"]);
}

#[test]
fn soak_100_000_cycles_leave_fds_and_mappings_unchanged() {
    let out = spawn_self("child", "leak-cycles", &[("CYCLES", "100000")], "");
    shm_core::testing::assert_counts_unchanged(&out, &["fds", "mappings"]);
}

#[test]
fn alias_is_not_owner_and_untouched_pages_are_free() {
    let a = AnonShm::create(1 << 30).unwrap();
    assert!(a.is_owner() && !a.alias().unwrap().is_owner());
    assert_eq!(a.resident_pages().unwrap(), 0);
}
