//! Regression tests for issue 10 on memfd: the size/seal race (case 5) and unbounded
//! connects and receives (case 8), each with a real peer process.

use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use shm_core::testing::{unique_name, within, Peer, ROLE_VAR, TUTORIAL};
use shm_core::{HeapMemory, Segment, SharedMemory};
use shm_memfd::Error;

const BOUND: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(200);
const TRIALS: usize = 2000;

/// The bytes of a valid 1 MiB record segment: what the racing sender puts in its memfd.
fn valid_header() -> Vec<u8> {
    let seg = Segment::create(HeapMemory::new(1 << 20), &TUTORIAL).unwrap();
    let mut bytes = vec![0u8; 128 + 24];
    let mem = seg.raw().memory();
    let h = shm_core::conformance::peek_header(mem);
    bytes[..128].copy_from_slice(shm_core::bytemuck::bytes_of(&h));
    bytes[128..].copy_from_slice(shm_core::bytemuck::bytes_of(&TUTORIAL));
    bytes
}

#[test]
#[ignore = "entry point for child processes spawned by the other tests"]
fn peer() {
    let role = std::env::var(ROLE_VAR).expect("run by Peer::start");
    let sock = std::env::var("SHM_SOCKET").unwrap();
    match role.as_str() {
        // Sends TRIALS unsealed 1 MiB memfds holding a valid header, and right after each
        // send shrinks it to 4 KiB and only then seals it: the race of case 5.
        "racing-sender" => {
            let listener = UnixListener::bind(&sock).unwrap();
            println!("RESULT ready");
            let (stream, _) = listener.accept().unwrap();
            let header = valid_header();
            for i in 0..TRIALS {
                let mfd = memfd::MemfdOptions::default()
                    .allow_sealing(true)
                    .close_on_exec(true)
                    .create("racer")
                    .unwrap();
                let f = mfd.as_file();
                f.set_len(1 << 20).unwrap();
                f.write_all_at(&header, 0).unwrap();
                if i % 2 == 0 {
                    // Every other trial is sealed before it is sent: the receiver must
                    // accept it and map it as the sealed (shrunk) size, never the header's.
                    f.set_len(4096).unwrap();
                    mfd.add_seals(&[memfd::FileSeal::SealShrink, memfd::FileSeal::SealGrow])
                        .unwrap();
                    if shm_memfd::send_fds(&stream, &[f.as_fd()]).is_err() {
                        break;
                    }
                    continue;
                }
                if shm_memfd::send_fds(&stream, &[f.as_fd()]).is_err() {
                    break;
                }
                // A varying pause (0 to 60 µs) so that the receiver's checks land before,
                // between and after the shrink and the seals.
                let pause = Duration::from_nanos((i as u64 * 7919) % 60_000);
                let t = std::time::Instant::now();
                while t.elapsed() < pause {
                    std::hint::spin_loop();
                }
                f.set_len(4096).unwrap();
                mfd.add_seals(&[memfd::FileSeal::SealShrink, memfd::FileSeal::SealGrow])
                    .unwrap();
            }
            let _ = std::fs::remove_file(&sock);
            std::thread::sleep(Duration::from_secs(600));
        }
        // Accepts one client and never sends anything.
        "silent-server" => {
            let listener = UnixListener::bind(&sock).unwrap();
            println!("RESULT ready");
            let _held = listener.accept().unwrap();
            std::thread::sleep(Duration::from_secs(600));
        }
        // Listens and never accepts.
        "deaf-server" => {
            let _listener = UnixListener::bind(&sock).unwrap();
            println!("RESULT ready");
            std::thread::sleep(Duration::from_secs(600));
        }
        other => panic!("unknown role {other}"),
    }
}

fn socket_path(prefix: &str) -> String {
    std::env::temp_dir()
        .join(unique_name(prefix) + ".sock")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Case 5: whatever the sender does between sending and sealing, an accepted memfd is
/// never mapped longer than its file: the size is read after the seals that freeze it.
#[test]
fn case5_size_is_read_after_the_seals() {
    let sock = socket_path("shm-reg5");
    let _peer = Peer::start("peer", "racing-sender", &[("SHM_SOCKET", &sock)]);
    let stream = UnixStream::connect(&sock).unwrap();
    let (mut accepted, mut unsealed) = (0, 0);
    for trial in 0..TRIALS {
        let fd = shm_memfd::recv_fd(&stream).unwrap();
        let sealed_first = trial % 2 == 0;
        match shm_memfd::MemfdShm::from_fd(fd) {
            Ok(shm) => {
                accepted += 1;
                let size = shm_core::os::sys::fstat(shm.as_fd()).unwrap().st_size as u64;
                assert!(
                    shm.len() as u64 <= size,
                    "trial {trial}: a {} byte mapping of a {size} byte file",
                    shm.len()
                );
                // The header claims 1 MiB: attaching is refused, never a SIGBUS.
                let r = Segment::<shm_core::testing::MyData, _>::attach(shm);
                assert!(matches!(r, Err(shm_core::Error::Truncated { .. })), "{r:?}");
            }
            Err(Error::Unsealed { .. }) if !sealed_first => unsealed += 1,
            Err(e) => panic!("trial {trial}: {e}"),
        }
    }
    // The sealed half is accepted every time (so the size check above ran on each of
    // them); the racing half may land either way.
    assert!(
        accepted >= TRIALS / 2,
        "accepted {accepted}, refused unsealed {unsealed}"
    );
}

/// Case 8: a server that accepts and never sends, or never accepts, cannot hang `connect`.
#[test]
fn case8_connect_and_receive_are_bounded() {
    for role in ["silent-server", "deaf-server"] {
        let sock = socket_path("shm-reg8");
        let _peer = Peer::start("peer", role, &[("SHM_SOCKET", &sock)]);
        let p = sock.clone();
        let r = within(
            BOUND,
            "connect_timeout to a server that never sends",
            move || shm_memfd::connect_timeout(&p, SHORT).map(drop),
        );
        assert!(
            matches!(r, Err(Error::Timeout(t)) if t == SHORT),
            "{role}: {r:?}"
        );
        // The default bound holds too.
        let p = sock.clone();
        let r = within(
            Duration::from_secs(60),
            "connect with the default bound",
            move || shm_memfd::connect(&p).map(drop),
        );
        assert!(matches!(r, Err(Error::Timeout(_))), "{role}: {r:?}");
        let _ = std::fs::remove_file(&sock);
    }
}
