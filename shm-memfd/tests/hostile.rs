//! Hostile peers against sealed memfds, with real processes doing the damage.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use shm_core::testing::{
    assert_success, fd_count, results, spawn_self, unique_name, MyData, ROLE_VAR, TUTORIAL,
};
use shm_core::Segment;
use shm_memfd::{Error, MemfdOptions, Server};

#[test]
#[ignore = "entry point for child processes spawned by the other tests"]
fn child() {
    match std::env::var(ROLE_VAR).expect("run by spawn_self").as_str() {
        "shrink" => {
            // Receive the fd as a peer would, then try to cut the segment under the server.
            let shm = shm_memfd::connect(std::env::var("SHM_SOCKET").unwrap()).unwrap();
            let file = std::fs::File::from(shm.as_fd().try_clone_to_owned().unwrap());
            let shrink = file.set_len(4096).map_err(|e| e.raw_os_error());
            let grow = file.set_len(1 << 30).map_err(|e| e.raw_os_error());
            println!("RESULT {shrink:?} {grow:?}");
        }
        "rlimit" => rlimit(),
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_peer_process_cannot_shrink_or_grow_the_segment() {
    let seg = Segment::create(
        MemfdOptions::new().size(1 << 20).create().unwrap(),
        &TUTORIAL,
    )
    .unwrap();
    let path = std::env::temp_dir().join(unique_name("shm-memfd-shrink") + ".sock");
    let server = Server::bind(&path).unwrap();
    let p = path.to_str().unwrap().to_owned();
    let out = std::thread::scope(|s| {
        let child = s.spawn(|| spawn_self("child", "shrink", &[("SHM_SOCKET", &p)], ""));
        server
            .serve_one_timeout(seg.raw().memory(), Duration::from_secs(30))
            .unwrap();
        child.join().unwrap()
    });
    assert_success(&out);
    assert_eq!(
        results(&out),
        [format!(
            "Err(Some({})) Err(Some({}))",
            libc::EPERM,
            libc::EPERM
        )]
    );
    // Every page is still there: touch the last one.
    seg.write_at(seg.payload_len() - 8, b"stillok!").unwrap();
    assert_eq!(seg.read().unwrap(), TUTORIAL);
}

/// Runs in a child: with RLIMIT_NOFILE lowered so that no fd can be installed, receiving
/// reports the truncation and leaks nothing. Then, with the limit restored, a received
/// fd is not inherited by a process we spawn.
fn rlimit() {
    let shm = MemfdOptions::new().size(8192).create().unwrap();
    let (tx, rx) = UnixStream::pair().unwrap();
    shm_memfd::send_fds(&tx, &[shm.as_fd()]).unwrap();
    let before = fd_count();
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with valid pointers; dup/close on fd 0 to find the
    // lowest free fd number (the one the kernel would give the received fd).
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let lowest = libc::dup(0);
        assert!(lowest >= 0);
        libc::close(lowest);
        let low = libc::rlimit {
            rlim_cur: lowest as libc::rlim_t,
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &low), 0);
    }
    let res = shm_memfd::receive(&rx, false);
    // SAFETY: restoring the limit we read.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &old), 0) };
    match res {
        Err(e @ Error::ControlTruncated { .. }) => println!("RESULT {e}"),
        other => println!("RESULT unexpected {other:?}"),
    }
    println!("RESULT fds {before} {}", fd_count());

    // Inheritance: receive for real, then spawn a child and look at its fds.
    shm_memfd::send_fds(&tx, &[shm.as_fd()]).unwrap();
    let received = shm_memfd::receive(&rx, false).unwrap();
    let out = std::process::Command::new("sh")
        .args(["-c", "ls -l /proc/$$/fd"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let ours = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&received.as_fd())
    ))
    .unwrap();
    println!("RESULT received {}", ours.display());
    println!("RESULT child sees memfd: {}", listing.contains("memfd:"));
    drop(received);
    drop(shm);
    let _: MyData = TUTORIAL;
}

#[test]
fn fd_limit_truncation_and_cloexec_inheritance() {
    let out = spawn_self("child", "rlimit", &[], "");
    assert_success(&out);
    let r = results(&out);
    assert_eq!(r.len(), 4, "{r:?}");
    assert!(
        r[0].starts_with("control message truncated (MSG_CTRUNC)"),
        "{r:?}"
    );
    let fds: Vec<&str> = r[1].split(' ').collect();
    assert_eq!(fds[1], fds[2], "fds leaked by a truncated receive: {r:?}");
    assert!(r[2].starts_with("received /memfd:"), "{r:?}");
    assert_eq!(
        r[3], "child sees memfd: false",
        "a received fd leaked into a spawned child"
    );
}
