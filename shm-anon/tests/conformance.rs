//! The shm-core conformance suite against anonymous shared memory.

use shm_anon::AnonShm;
use shm_core::conformance::Backend;

struct Anon;

impl Backend for Anon {
    type Mem = AnonShm;
    fn create(&mut self, len: usize) -> AnonShm {
        AnonShm::create(len).expect("mmap")
    }
    fn reopen(&mut self, mem: &AnonShm) -> AnonShm {
        mem.alias().expect("mremap alias")
    }
}

shm_core::conformance_tests!(Anon);
