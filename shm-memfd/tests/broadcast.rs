//! A lossy broadcast over a memfd whose subscribers get a descriptor they cannot write
//! through (`read_only_peers`: `F_SEAL_FUTURE_WRITE` after the publisher's mapping).

use shm_core::testing::numbered;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use shm_core::testing::{unique_name, Peer, ROLE_VAR};
use shm_core::{Broadcast, BroadcastMode, BroadcastOptions, Error, SharedMemory};
use shm_memfd::{MemfdOptions, Server};

/// What a write attempt returned: `ok`, or the errno name.
fn outcome(rc: i64) -> String {
    if rc >= 0 {
        return "ok".to_owned();
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EPERM) => "EPERM".to_owned(),
        Some(libc::EACCES) => "EACCES".to_owned(),
        Some(libc::EBADF) => "EBADF".to_owned(),
        Some(libc::EINVAL) => "EINVAL".to_owned(),
        other => format!("{other:?}"),
    }
}

#[test]
#[ignore = "entry point for child processes spawned by the other tests"]
fn peer() {
    let role = std::env::var(ROLE_VAR).expect("run by Peer::start");
    assert_eq!(role, "read-only-subscriber");
    let sock = std::env::var("SHM_SOCKET").unwrap();
    let shm = shm_memfd::connect_read_only(&sock, Duration::from_secs(10)).unwrap();
    assert!(!shm.writable());
    let b = Broadcast::attach(shm.try_clone().unwrap()).unwrap();
    let mut s = b.subscriber().unwrap();
    // Every way to write, each must fail.
    let fd = shm.as_fd().as_raw_fd();
    let len = shm.len();
    // SAFETY: plain system calls on our own fd and on our own mapping (which stays
    // mapped: mprotect only changes, or fails to change, its protection); results are
    // only inspected, and successful mappings are unmapped.
    let attempts = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        let mmap_w = outcome(if p == libc::MAP_FAILED { -1 } else { 0 });
        if p != libc::MAP_FAILED {
            libc::munmap(p, len);
        }
        let mprotect = outcome(i64::from(libc::mprotect(
            shm.as_ptr().cast(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
        )));
        let write = outcome(libc::pwrite(fd, b"x".as_ptr().cast(), 1, 0) as i64);
        let truncate = outcome(i64::from(libc::ftruncate(fd, 0)));
        // Reopening the fd through /proc for writing gets a writable description of the
        // same memfd; the seal still refuses a writable mapping and write(2).
        let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).unwrap();
        let rw = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        let (reopen_map, reopen_write) = if rw >= 0 {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                rw,
                0,
            );
            let m = outcome(if p == libc::MAP_FAILED { -1 } else { 0 });
            if p != libc::MAP_FAILED {
                libc::munmap(p, len);
            }
            let w = outcome(libc::pwrite(rw, b"x".as_ptr().cast(), 1, 0) as i64);
            libc::close(rw);
            (m, w)
        } else {
            ("no-reopen".to_owned(), "no-reopen".to_owned())
        };
        format!("{mmap_w} {mprotect} {write} {truncate} {reopen_map} {reopen_write}")
    };
    let writable_map = match shm_memfd::MemfdShm::from_fd(shm.as_fd().try_clone_to_owned().unwrap())
    {
        Err(shm_memfd::Error::WriteSealed { .. }) => "WriteSealed",
        Err(_) => "other-error",
        Ok(_) => "mapped-writable",
    };
    println!("RESULT ready");
    println!("RESULT {attempts} {writable_map}");
    let (mut got, mut buf) = (0u64, Vec::new());
    let end = loop {
        match numbered(&mut s, |s| {
            s.recv_into_timeout(&mut buf, Duration::from_secs(30))
        }) {
            Ok(n) => {
                assert_eq!(buf, n.to_ne_bytes());
                got += 1;
            }
            Err(Error::Lagged { .. }) => {}
            Err(e) => break e,
        }
    };
    println!("RESULT got {got} end {end:?}");
}

#[test]
fn read_only_subscriber_receives_and_cannot_write() {
    let opts = BroadcastOptions::new()
        .mode(BroadcastMode::Lossy)
        .slots(256)
        .max_message(8);
    let shm = MemfdOptions::new()
        .size(opts.segment_len().unwrap())
        .read_only_peers(true)
        .create()
        .unwrap();
    let b = Broadcast::create(shm, &opts).unwrap();
    // The publisher's own mapping predates the seal and stays writable.
    let mut p = b.publisher().unwrap();
    // A reliable subscriber needs write access: refused on a read-only mapping.
    let ro = b.raw().memory().try_clone().unwrap();
    assert!(!ro.writable());
    let rel = Broadcast::attach(ro).unwrap();
    assert!(
        matches!(rel.publisher(), Err(shm_core::Error::ReadOnly { .. })),
        "{:?}",
        rel.publisher().err()
    );

    let sock = std::env::temp_dir().join(unique_name("shm-bcast-ro") + ".sock");
    let server = Server::bind(&sock).unwrap();
    let fd = b.raw().memory().as_fd().try_clone_to_owned().unwrap();
    let serving =
        std::thread::spawn(move || server.serve_one_timeout(&fd, Duration::from_secs(30)));
    let s = sock.to_str().unwrap().to_owned();
    let child = Peer::start("peer", "read-only-subscriber", &[("SHM_SOCKET", &s)]);
    serving.join().unwrap().unwrap();
    let attempts = child.next_result(Duration::from_secs(30)).unwrap();
    assert_eq!(
        attempts, "EPERM EACCES EPERM EPERM EPERM EPERM WriteSealed",
        "writable mmap, mprotect, write(2), ftruncate, reopened mmap, reopened write, from_fd"
    );
    for n in 0..100u64 {
        p.publish(&n.to_ne_bytes()).unwrap();
    }
    drop(p);
    let end = child.next_result(Duration::from_secs(30)).unwrap();
    assert_eq!(end, "got 100 end Closed");
}
