//! shm-memfd with real processes over real sockets, hostile fds, and leak checks.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use shm_core::testing::{
    assert_success, encode_writes, expected_payload, fd_count, results, spawn_self, unique_name,
    MyData, ROLE_VAR, TUTORIAL,
};
use shm_core::{HeapMemory, Segment, SharedMemory};
use shm_memfd::{Error, MemfdOptions, Server};

fn socket_path() -> PathBuf {
    std::env::temp_dir().join(unique_name("shm-memfd-test") + ".sock")
}

/// Entry point of the child processes spawned by the tests below.
#[test]
#[ignore = "entry point for child processes spawned by the other tests"]
fn child() {
    let role = std::env::var(ROLE_VAR).expect("run by spawn_self");
    match role.as_str() {
        "hostile-fds" => return hostile_fds(),
        "leak-cycles" => return leak_cycles(),
        _ => {}
    }
    let sock = std::env::var("SHM_SOCKET").expect("SHM_SOCKET");
    let shm = if role == "read-abstract" {
        shm_memfd::connect_abstract(&sock).expect("child: connect")
    } else {
        shm_memfd::connect(&sock).expect("child: connect")
    };
    if role == "channel-send" {
        let chan = shm_core::Channel::attach(shm).expect("child: attach channel");
        return shm_core::testing::send_sizes_from_stdin(&chan);
    }
    // SAFETY: F_GETFD on a live fd.
    let fdflags = unsafe { libc::fcntl(shm.as_fd().as_raw_fd(), libc::F_GETFD) };
    assert_eq!(
        fdflags & libc::FD_CLOEXEC,
        libc::FD_CLOEXEC,
        "received fd must be close-on-exec"
    );
    let seg = Segment::<MyData, _>::attach(shm).expect("child: attach");
    match role.as_str() {
        "read" | "read-abstract" => {
            let v = seg.read().unwrap();
            println!("RESULT {} {} {}", v.col1, v.col2, v.col3);
            seg.write(&MyData {
                col1: 1,
                col2: 2,
                col3: 3,
            })
            .expect("write");
        }
        "apply-writes" => shm_core::testing::apply_writes_from_stdin(&seg),
        other => panic!("unknown role {other}"),
    }
}

/// Serves `seg`'s memfd to one child running `role`, and returns the child's output.
fn serve_to_child(
    seg: &Segment<MyData, shm_memfd::MemfdShm>,
    role: &str,
    stdin: &str,
) -> std::process::Output {
    let path = socket_path();
    let server = Server::bind(&path).unwrap();
    let path_s = path.to_str().unwrap().to_owned();
    std::thread::scope(|s| {
        let child = s.spawn(|| spawn_self("child", role, &[("SHM_SOCKET", &path_s)], stdin));
        server
            .serve_one_timeout(seg.raw().memory(), Duration::from_secs(30))
            .expect("serve");
        child.join().unwrap()
    })
}

#[test]
fn tutorial_record_crosses_two_processes_over_a_socket_path() {
    let seg = Segment::create(
        MemfdOptions::new().size(4 << 30).create().unwrap(),
        &TUTORIAL,
    )
    .unwrap();
    let out = serve_to_child(&seg, "read", "");
    assert_success(&out);
    assert_eq!(results(&out), ["100 876 8021"]);
    assert_eq!(
        seg.read().unwrap(),
        MyData {
            col1: 1,
            col2: 2,
            col3: 3
        }
    );
}

#[test]
fn abstract_namespace_socket() {
    let seg = Segment::create(MemfdOptions::new().size(8192).create().unwrap(), &TUTORIAL).unwrap();
    let name = unique_name("shm-memfd-abstract");
    let server = Server::bind_abstract(&name).unwrap();
    let out = std::thread::scope(|s| {
        let child = s.spawn(|| spawn_self("child", "read-abstract", &[("SHM_SOCKET", &name)], ""));
        server
            .serve_one_timeout(seg.raw().memory(), Duration::from_secs(30))
            .unwrap();
        child.join().unwrap()
    });
    assert_success(&out);
    assert_eq!(results(&out), ["100 876 8021"]);
}

#[test]
fn server_removes_its_socket_file_and_times_out() {
    let path = socket_path();
    let seg = MemfdOptions::new().create().unwrap();
    let server = Server::bind(&path).unwrap();
    assert!(path.exists());
    let err = server
        .serve_one_timeout(&seg, Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    drop(server);
    assert!(!path.exists());
    let err = shm_memfd::connect(&path).unwrap_err();
    assert!(err.to_string().starts_with("connect failed"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Writes made by a child through the memfd it received read back byte-exact here.
    #[test]
    fn writes_in_another_process_read_back_exactly(
        len in 160usize..20000,
        writes in prop::collection::vec((0usize..21000, prop::collection::vec(any::<u8>(), 0..200)), 1..30),
    ) {
        let seg = Segment::create(MemfdOptions::new().size(len as u64).create().unwrap(), &TUTORIAL).unwrap();
        let out = serve_to_child(&seg, "apply-writes", &encode_writes(&writes));
        prop_assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let plen = seg.payload_len();
        prop_assert_eq!(results(&out), shm_core::testing::expected_write_results(plen, &writes));
        let mut back = vec![0u8; plen];
        seg.read_at(0, &mut back).unwrap();
        prop_assert_eq!(back, expected_payload(plen, &writes));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Any sequence of sizes sent by another process through a channel in a memfd it
    /// received over a socket arrives in order and byte-exact.
    #[test]
    fn channel_messages_from_another_process(sizes in prop::collection::vec(
        prop_oneof![0usize..64, 0usize..=4080, Just(4080usize)], 1..60)) {
        let shm = MemfdOptions::new().size(1 << 16).create().unwrap();
        let chan = shm_core::Channel::create(shm, &shm_core::ChannelOptions::new().capacity(4096)).unwrap();
        let input: String = sizes.iter().map(|s| format!("{s}\n")).collect();
        let path = socket_path();
        let server = Server::bind(&path).unwrap();
        let path_s = path.to_str().unwrap().to_owned();
        let (out, got) = std::thread::scope(|sc| {
            let child = sc.spawn(|| spawn_self("child", "channel-send", &[("SHM_SOCKET", &path_s)], &input));
            server.serve_one_timeout(chan.raw().memory(), Duration::from_secs(30)).expect("serve");
            let got = shm_core::testing::receive_sizes(&chan, &sizes);
            (child.join().unwrap(), got)
        });
        shm_core::testing::assert_success(&out);
        prop_assert_eq!(got, Ok(()));
    }
}

#[test]
fn shrinking_or_growing_a_sealed_memfd_fails() {
    let shm = MemfdOptions::new().size(1 << 20).create().unwrap();
    // A peer that received the fd tries to cut the segment under our mapping.
    let file = File::from(shm.as_fd().try_clone_to_owned().unwrap());
    let err = file.set_len(4096).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    assert_eq!(
        file.set_len(2 << 20).unwrap_err().raw_os_error(),
        Some(libc::EPERM)
    );
    assert_eq!(file.metadata().unwrap().len(), 1 << 20);
}

/// Each case: the fds to send (or none), and the error the receiver must report.
fn hostile_fds() {
    let unsealed = memfd::MemfdOptions::default()
        .allow_sealing(true)
        .create("unsealed")
        .unwrap();
    unsealed.as_file().set_len(4096).unwrap();
    let grow_only = memfd::MemfdOptions::default()
        .allow_sealing(true)
        .create("grow-only")
        .unwrap();
    grow_only.as_file().set_len(4096).unwrap();
    grow_only.add_seal(memfd::FileSeal::SealGrow).unwrap();
    let write_sealed = memfd::MemfdOptions::default()
        .allow_sealing(true)
        .create("write-sealed")
        .unwrap();
    write_sealed.as_file().set_len(4096).unwrap();
    write_sealed
        .add_seals(&[
            memfd::FileSeal::SealShrink,
            memfd::FileSeal::SealGrow,
            memfd::FileSeal::SealWrite,
        ])
        .unwrap();
    let empty = MemfdOptions::new().size(1).create().unwrap();
    let regular = tempfile_with(b"regular file");
    let (pipe_r, _pipe_w) = std::io::pipe().unwrap();
    let o_path: OwnedFd = {
        let c = std::ffi::CString::new("/tmp").unwrap();
        // SAFETY: open with a valid C string; the result is a fresh fd (or -1).
        unsafe {
            shm_core::os::sys::ret_owned_fd(libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC))
        }
        .unwrap()
    };
    let good = MemfdOptions::new().size(4096).create().unwrap();
    let read_only: OwnedFd = File::open(format!("/proc/self/fd/{}", good.as_fd().as_raw_fd()))
        .unwrap()
        .into();
    // A sealed memfd of 4096 bytes whose header claims 1 MiB.
    let liar = MemfdOptions::new().size(4096).create().unwrap();
    {
        let heap = HeapMemory::new(1 << 20);
        let _seg = Segment::create(heap.share(), &TUTORIAL).unwrap();
        let mut head = [0u8; 4096];
        let view = Segment::<MyData, _>::attach(heap).unwrap();
        head[..128].copy_from_slice(shm_core::bytemuck::bytes_of(view.raw().header()));
        view.read_at(0, &mut head[128..]).unwrap();
        shm_core::conformance::poke(&liar, 0, &head);
    }
    let cases: Vec<(&str, Vec<std::os::fd::BorrowedFd<'_>>)> = vec![
        ("unsealed memfd", vec![unsealed.as_file().as_fd()]),
        (
            "memfd sealed only against growth",
            vec![grow_only.as_file().as_fd()],
        ),
        (
            "memfd sealed against writes",
            vec![write_sealed.as_file().as_fd()],
        ),
        ("regular file", vec![regular.as_fd()]),
        ("pipe", vec![pipe_r.as_fd()]),
        ("O_PATH fd", vec![o_path.as_fd()]),
        ("read-only memfd", vec![read_only.as_fd()]),
        ("1-byte memfd", vec![empty.as_fd()]),
        ("memfd smaller than its header claims", vec![liar.as_fd()]),
        ("zero fds", vec![]),
        ("two fds", vec![good.as_fd(), good.as_fd()]),
    ];
    for (what, fds) in cases {
        let before = fd_count();
        let (tx, rx) = UnixStream::pair().unwrap();
        shm_memfd::send_fds(&tx, &fds).unwrap();
        let res = shm_memfd::receive(&rx, false)
            .map_err(|e| e.to_string())
            .and_then(|shm| {
                Segment::<MyData, _>::attach(shm)
                    .map(|_| "attached".to_owned())
                    .map_err(|e| e.to_string())
            });
        drop((tx, rx));
        let leaked = fd_count() as i64 - before as i64;
        println!("RESULT {what}|{}|{leaked}", res.unwrap_or_else(|e| e));
    }
}

fn tempfile_with(bytes: &[u8]) -> File {
    let path = std::env::temp_dir().join(unique_name("shm-memfd-regular"));
    std::fs::write(&path, bytes).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

#[test]
fn hostile_fds_are_typed_errors_and_closed() {
    let out = spawn_self("child", "hostile-fds", &[], "");
    assert_success(&out);
    let expected = [
        (
            "unsealed memfd",
            "memfd is not sealed against shrinking and growing",
        ),
        (
            "memfd sealed only against growth",
            "memfd is not sealed against shrinking",
        ),
        (
            "memfd sealed against writes",
            "memfd is sealed against writing",
        ),
        (
            "regular file",
            "expected a memfd, found a regular file (/tmp/shm-memfd-regular",
        ),
        ("pipe", "expected a memfd, found a pipe"),
        ("O_PATH fd", "expected a memfd, found an O_PATH descriptor"),
        (
            "read-only memfd",
            "memfd fd is open read-only, expected read-write",
        ),
        (
            "1-byte memfd",
            "segment too small: the layout needs at least 128 bytes, the mapping has 1",
        ),
        (
            "memfd smaller than its header claims",
            "segment truncated: its header claims 1048576 bytes, the mapping holds 4096",
        ),
        ("zero fds", "expected one fd in the message, found none"),
        (
            "two fds",
            "expected one fd in the message, found 2; all were closed",
        ),
    ];
    let got = results(&out);
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (line, (what, msg)) in got.iter().zip(expected) {
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts[0], what);
        assert!(
            parts[1].starts_with(msg),
            "{what}: got {:?}, expected {msg:?}",
            parts[1]
        );
        assert_eq!(parts[2], "0", "{what}: fds leaked");
    }
}

fn leak_cycles() {
    let cycles: usize = std::env::var("CYCLES").map_or(10_000, |c| c.parse().unwrap());
    let fds = fd_count();
    for _ in 0..cycles {
        let seg =
            Segment::create(MemfdOptions::new().size(8192).create().unwrap(), &TUTORIAL).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        shm_memfd::send_fds(&a, &[seg.raw().memory().as_fd()]).unwrap();
        let other = Segment::<MyData, _>::attach(shm_memfd::receive(&b, false).unwrap()).unwrap();
        assert_eq!(other.read().unwrap(), TUTORIAL);
        assert!(!other.raw().memory().is_owner());
    }
    println!("RESULT {fds} {}", fd_count());
}

#[test]
fn soak_100_000_create_send_attach_drop_cycles() {
    let out = spawn_self("child", "leak-cycles", &[("CYCLES", "100000")], "");
    shm_core::testing::assert_counts_unchanged(&out, &["fds"]);
}

#[test]
fn ten_thousand_create_send_drop_cycles_leak_nothing() {
    let out = spawn_self("child", "leak-cycles", &[], "");
    shm_core::testing::assert_counts_unchanged(&out, &["fds"]);
}
