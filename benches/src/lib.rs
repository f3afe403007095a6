//! Helpers shared by the criterion benchmarks in `benches/`: one type over the three
//! backends, and a long-lived forked peer.
#![deny(unsafe_code)]
#![allow(missing_docs)]

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shm_anon::AnonShm;
use shm_memfd::MemfdOptions;
use shm_posix::{Reserve, ShmOptions};

pub use shm_any::Backend;

/// Memory of the backend a benchmark picked: posix, anon or memfd.
pub type Mem = shm_any::AnyShm;

/// A posix name unique to this process and call.
pub fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "/shm-bench-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fresh memory of `len` bytes; posix reserves nothing up front, so that a 4 GiB segment
/// stays virtual as it does for anon and memfd.
pub fn create(b: Backend, len: u64) -> Mem {
    match b {
        Backend::Posix => Mem::Posix(
            ShmOptions::new(unique_name())
                .size(len)
                .reserve(Reserve::None)
                .create()
                .expect("shm create"),
        ),
        Backend::Anon => Mem::Anon(AnonShm::create(len as usize).expect("mmap")),
        Backend::Memfd => Mem::Memfd(
            MemfdOptions::new()
                .size(len)
                .create()
                .expect("memfd create"),
        ),
    }
}

/// A second, independent handle onto `mem`, made as a peer would: open the name again,
/// receive the fd over a socket pair, or map the anonymous pages again.
pub fn reopen(mem: &Mem) -> Mem {
    match mem {
        Mem::Posix(m) => Mem::Posix(ShmOptions::new(m.name()).open().expect("shm open")),
        Mem::Anon(m) => Mem::Anon(m.alias().expect("mremap")),
        Mem::Memfd(m) => {
            let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
            shm_memfd::send_fds(&a, &[m.as_fd()]).expect("send");
            Mem::Memfd(shm_memfd::receive(&b, false).expect("receive"))
        }
    }
}

pub use shm_core::os::cpu::pin_to_cpu;

/// A forked peer that lives for a whole benchmark and is killed and reaped on drop.
pub struct Peer(Option<shm_anon::Child>);

impl Peer {
    /// Forks a peer running `f`, pinned to CPU 1. The benchmark process is
    /// single-threaded (criterion runs benchmarks on the main thread), which is what makes
    /// the fork sound.
    pub fn fork(f: impl FnOnce() -> i32) -> Peer {
        #[allow(unsafe_code)]
        // SAFETY: single-threaded process (see above).
        let child = unsafe {
            shm_anon::fork(|| {
                pin_to_cpu(1);
                f()
            })
        }
        .expect("fork");
        pin_to_cpu(0);
        Peer(Some(child))
    }

    /// Waits up to 10 s for the peer to exit by itself.
    pub fn join(mut self) {
        if let Some(mut c) = self.0.take() {
            let status = c.wait_timeout(Duration::from_secs(10)).expect("wait");
            assert!(
                status.is_some_and(|s| s.success()),
                "peer failed: {status:?}"
            );
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // shm_anon::Child kills and reaps on drop.
        self.0.take();
    }
}

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// `4KiB`, `1MiB`, `64MiB`, `4GiB`.
pub fn size_label(n: u64) -> String {
    if n >= GIB {
        format!("{}GiB", n / GIB)
    } else if n >= MIB {
        format!("{}MiB", n / MIB)
    } else {
        format!("{}KiB", n / KIB)
    }
}
