//! shm-posix with real processes, hostile inputs and leak checks.

use std::os::fd::AsRawFd;

use proptest::prelude::*;
use shm_core::testing::{
    dev_shm_entries, encode_writes, fd_count, results, spawn_self, unique_name, MyData, ROLE_VAR,
    TUTORIAL,
};
use shm_core::{Error as CoreError, Segment};
use shm_posix::{Error, Reserve, ShmOptions};

/// The child side of every test here; run only through `spawn_self`.
#[test]
#[ignore = "entry point for child processes spawned by the other tests"]
fn child() {
    let role = std::env::var(ROLE_VAR).expect("run by spawn_self");
    if role == "leak-cycles" {
        return leak_cycles();
    }
    let name = std::env::var("SHM_NAME").expect("SHM_NAME");
    let shm = ShmOptions::new(&name).open().expect("child: open");
    if role == "channel-send" {
        let chan = shm_core::Channel::attach(shm).expect("child: attach channel");
        return shm_core::testing::send_sizes_from_stdin(&chan);
    }
    let seg = Segment::<MyData, _>::attach(shm).expect("child: attach");
    match role.as_str() {
        "read" => {
            let v = seg.read().unwrap();
            println!("RESULT {} {} {}", v.col1, v.col2, v.col3);
        }
        "write" => seg
            .write(&MyData {
                col1: 1,
                col2: 2,
                col3: 3,
            })
            .expect("write"),
        "apply-writes" => shm_core::testing::apply_writes_from_stdin(&seg),
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn tutorial_record_crosses_two_processes() {
    let name = unique_name("/shm-posix-2p");
    let shm = ShmOptions::new(&name).size(4 << 30).create().unwrap();
    let seg = Segment::create(shm, &TUTORIAL).unwrap();
    let out = spawn_self("child", "read", &[("SHM_NAME", &name)], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(results(&out), ["100 876 8021"]);
    let out = spawn_self("child", "write", &[("SHM_NAME", &name)], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        seg.read().unwrap(),
        MyData {
            col1: 1,
            col2: 2,
            col3: 3
        }
    );
    drop(seg);
    assert!(matches!(
        ShmOptions::new(&name).open(),
        Err(Error::NotFound { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Writes made by a child through its own mapping read back byte-exact here.
    #[test]
    fn writes_in_another_process_read_back_exactly(
        len in 160usize..20000,
        writes in prop::collection::vec((0usize..21000, prop::collection::vec(any::<u8>(), 0..200)), 1..30),
    ) {
        let name = unique_name("/shm-posix-prop");
        let shm = ShmOptions::new(&name).size(len as u64).create().unwrap();
        let seg = Segment::create(shm, &TUTORIAL).unwrap();
        let out = spawn_self("child", "apply-writes", &[("SHM_NAME", &name)], &encode_writes(&writes));
        prop_assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let plen = seg.payload_len();
        let model = shm_core::testing::expected_payload(plen, &writes);
        prop_assert_eq!(results(&out), shm_core::testing::expected_write_results(plen, &writes));
        let mut back = vec![0u8; plen];
        seg.read_at(0, &mut back).unwrap();
        prop_assert_eq!(back, model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Any sequence of sizes (0 to the largest message) sent by another process through a
    /// channel in a named segment arrives in order and byte-exact.
    #[test]
    fn channel_messages_from_another_process(sizes in prop::collection::vec(
        prop_oneof![0usize..64, 0usize..=4080, Just(4080usize)], 1..60)) {
        let name = unique_name("/shm-posix-chan");
        let shm = ShmOptions::new(&name).size(1 << 16).create().unwrap();
        let chan = shm_core::Channel::create(shm, &shm_core::ChannelOptions::new().capacity(4096)).unwrap();
        let input: String = sizes.iter().map(|s| format!("{s}\n")).collect();
        let (out, got) = std::thread::scope(|sc| {
            let child = sc.spawn(|| spawn_self("child", "channel-send", &[("SHM_NAME", &name)], &input));
            let got = shm_core::testing::receive_sizes(&chan, &sizes);
            (child.join().unwrap(), got)
        });
        shm_core::testing::assert_success(&out);
        prop_assert_eq!(got, Ok(()));
    }
}

#[test]
fn exclusive_create_never_reuses_a_name() {
    let name = unique_name("/shm-posix-excl");
    let first = ShmOptions::new(&name).size(4096).create().unwrap();
    let seg = Segment::create(first, &TUTORIAL).unwrap();
    let err = ShmOptions::new(&name).size(8192).create().unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(
        seg.read().unwrap(),
        TUTORIAL,
        "the existing segment was not touched"
    );
    let (again, created) = ShmOptions::new(&name).open_or_create().unwrap();
    assert!(!created && !shm_core::SharedMemory::is_owner(&again));
}

#[test]
fn open_refuses_what_is_not_a_segment_of_ours() {
    // Empty, ten bytes, random bytes: made with plain shm_open + ftruncate as a stranger would.
    let plant = |bytes: &[u8]| {
        let name = unique_name("/shm-posix-junk");
        std::fs::write(format!("/dev/shm{name}"), bytes).unwrap();
        name
    };
    let empty = plant(b"");
    assert!(matches!(
        ShmOptions::new(&empty).open(),
        Err(Error::Empty { .. })
    ));
    let ten = plant(b"0123456789");
    let err = Segment::<MyData, _>::attach(ShmOptions::new(&ten).open().unwrap()).unwrap_err();
    assert_eq!(
        err,
        CoreError::TooSmall {
            needed: 128,
            found: 10
        }
    );
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let junk = plant(&random);
    let err = Segment::<MyData, _>::attach(ShmOptions::new(&junk).open().unwrap()).unwrap_err();
    assert!(matches!(err, CoreError::BadMagic { .. }), "{err:?}");
    for n in [empty, ten, junk] {
        shm_posix::unlink(&n).unwrap();
    }
}

#[test]
fn segment_truncated_after_create_is_refused_at_open() {
    let name = unique_name("/shm-posix-trunc");
    let shm = ShmOptions::new(&name).size(1 << 20).create().unwrap();
    let seg = Segment::create(shm, &TUTORIAL).unwrap();
    // A peer shrinks the object behind the name (our own mapping is not touched again).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{name}"))
        .unwrap();
    f.set_len(4096).unwrap();
    let err = Segment::<MyData, _>::attach(ShmOptions::new(&name).open().unwrap()).unwrap_err();
    assert_eq!(
        err,
        CoreError::Truncated {
            claimed: 1 << 20,
            mapped: 4096
        }
    );
    assert_eq!(seg.raw().memory().current_size().unwrap(), 4096);
}

#[test]
fn open_refuses_unsafe_mode_foreign_owner_and_symlinks() {
    let name = unique_name("/shm-posix-mode");
    let shm = ShmOptions::new(&name).size(4096).create().unwrap();
    let _seg = Segment::create(shm, &TUTORIAL).unwrap();
    let path = format!("/dev/shm{name}");
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: fchmod on a live fd.
    assert_eq!(unsafe { libc::fchmod(file.as_raw_fd(), 0o666) }, 0);
    let err = ShmOptions::new(&name).open().unwrap_err();
    assert!(
        matches!(err, Error::UnsafeMode { mode: 0o666, .. }),
        "{err:?}"
    );
    assert!(ShmOptions::new(&name).allow_foreign(true).open().is_ok());
    // SAFETY: as above.
    assert_eq!(unsafe { libc::fchmod(file.as_raw_fd(), 0o600) }, 0);
    // SAFETY: fchown on a live fd; the tests run as root in CI, elsewhere this is EPERM.
    let chowned = unsafe { libc::fchown(file.as_raw_fd(), 12345, 12345) } == 0;
    if !chowned {
        // SAFETY: geteuid cannot fail.
        assert_ne!(unsafe { libc::geteuid() }, 0, "root must be able to chown");
        eprintln!("skipped: a file owned by another uid needs root to make (chown)");
    }
    if chowned {
        let err = ShmOptions::new(&name).open().unwrap_err();
        assert!(
            matches!(err, Error::ForeignOwner { owner: 12345, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("owned by uid 12345"), "{err}");
    }
    let link = unique_name("/shm-posix-link");
    std::os::unix::fs::symlink(&path, format!("/dev/shm{link}")).unwrap();
    let err = ShmOptions::new(&link).open().unwrap_err();
    assert!(matches!(err, Error::NotRegularFile { .. }), "{err:?}");
    let err = ShmOptions::new(&link).create().unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    std::fs::remove_file(format!("/dev/shm{link}")).unwrap();
}

#[test]
fn bad_names_and_sizes_are_typed_errors() {
    for name in ["a/b", "/", "/a/b", ""] {
        let err = ShmOptions::new(name).size(4096).create().unwrap_err();
        assert!(
            matches!(err, Error::InvalidName { .. }),
            "{name:?}: {err:?}"
        );
    }
    let err = ShmOptions::new(unique_name("/shm-posix-size"))
        .size(0)
        .create()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSize { size: 0, .. }), "{err:?}");
    let err = ShmOptions::new(unique_name("/shm-posix-missing"))
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[test]
fn full_reservation_costs_pages_and_default_does_not() {
    let name = unique_name("/shm-posix-reserve");
    let sparse = ShmOptions::new(&name).size(1 << 30).create().unwrap();
    let st = std::fs::metadata(format!("/dev/shm{name}")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        st.blocks() * 512 <= 64 * 1024,
        "default reserve is 64 KiB, found {}",
        st.blocks() * 512
    );
    drop(sparse);
    let name = unique_name("/shm-posix-reserve");
    let full = ShmOptions::new(&name)
        .size(1 << 20)
        .reserve(Reserve::All)
        .create()
        .unwrap();
    let st = std::fs::metadata(format!("/dev/shm{name}")).unwrap();
    assert!(st.blocks() * 512 >= 1 << 20);
    drop(full);
}

#[test]
fn stale_segments_are_found_and_only_they_are_removed() {
    let prefix = unique_name("/shm-posix-stale");
    let _cleanup = RemoveOnDrop(vec![format!("{prefix}-dead"), format!("{prefix}-foreign")]);
    // A live segment of ours.
    let live = Segment::create(
        ShmOptions::new(format!("{prefix}-live")).create().unwrap(),
        &TUTORIAL,
    )
    .unwrap();
    // A dead one: created by a child that persisted it and exited (no unlink).
    let mut dead = ShmOptions::new(format!("{prefix}-dead")).create().unwrap();
    dead.persist();
    let dead = Segment::create(dead, &TUTORIAL).unwrap();
    // Foreign data under our prefix with nobody holding it: not ours, never removed.
    std::fs::write(format!("/dev/shm{prefix}-foreign"), b"not a segment").unwrap();
    assert_eq!(
        shm_posix::list_stale(&prefix).unwrap(),
        Vec::<String>::new(),
        "both are held"
    );
    drop(dead);
    // Another test's child, between fork and exec, can share our open file description
    // (and so its lock) for a moment: wait for the lock to be released, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while shm_posix::list_stale(&prefix).unwrap().is_empty() && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        shm_posix::list_stale(&prefix).unwrap(),
        [format!("{prefix}-dead")]
    );
    // The same fork-to-exec window can hide it again for the re-check before the unlink.
    let mut removed = shm_posix::remove_stale(&prefix).unwrap();
    while removed.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
        removed = shm_posix::remove_stale(&prefix).unwrap();
    }
    assert_eq!(removed, [format!("{prefix}-dead")]);
    let left = dev_shm_entries(&prefix[1..]);
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(live.read().unwrap(), TUTORIAL);
}

/// Unlinks names when a test ends, also when it fails.
struct RemoveOnDrop(Vec<String>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = shm_posix::unlink(name);
        }
    }
}

/// Runs in a child process of its own, so that no other test's fds are counted.
fn leak_cycles() {
    let prefix = unique_name("/shm-posix-leak");
    let fds = fd_count();
    for i in 0..10_000 {
        let shm = ShmOptions::new(format!("{prefix}-{i}"))
            .size(8192)
            .create()
            .unwrap();
        let seg = Segment::create(shm, &TUTORIAL).unwrap();
        let other =
            Segment::<MyData, _>::attach(ShmOptions::new(format!("{prefix}-{i}")).open().unwrap())
                .unwrap();
        assert_eq!(other.read().unwrap().col3, 8021);
        drop(seg);
        // The name is gone as soon as the owner drops, even while `other` maps it.
        assert!(matches!(
            ShmOptions::new(format!("{prefix}-{i}")).open(),
            Err(Error::NotFound { .. })
        ));
    }
    println!(
        "RESULT {fds} {} 0 {}",
        fd_count(),
        dev_shm_entries(&prefix[1..]).len()
    );
}

#[test]
fn ten_thousand_create_drop_cycles_leak_nothing() {
    let out = spawn_self("child", "leak-cycles", &[], "");
    shm_core::testing::assert_counts_unchanged(&out, &["fds", "/dev/shm entries"]);
}
