//! The shm-core conformance suite against sealed memfds, the second handle received over
//! a socket pair the way another process would receive it.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use shm_core::conformance::Backend;
use shm_memfd::{MemfdOptions, MemfdShm};

struct Memfd;

impl Backend for Memfd {
    type Mem = MemfdShm;
    fn create(&mut self, len: usize) -> MemfdShm {
        MemfdOptions::new()
            .name("conformance")
            .size(len as u64)
            .create()
            .expect("create")
    }
    fn reopen(&mut self, mem: &MemfdShm) -> MemfdShm {
        let (a, b) = UnixStream::pair().expect("socketpair");
        shm_memfd::send_fds(&a, &[mem.as_fd()]).expect("send");
        shm_memfd::receive(&b, false).expect("receive")
    }
}

shm_core::conformance_tests!(Memfd);
