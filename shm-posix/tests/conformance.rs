//! The shm-core conformance suite against named POSIX shared memory.

use shm_core::conformance::Backend;
use shm_core::testing::unique_name;
use shm_posix::{PosixShm, ShmOptions};

struct Posix;

impl Backend for Posix {
    type Mem = PosixShm;
    fn create(&mut self, len: usize) -> PosixShm {
        ShmOptions::new(unique_name("/shm-posix-conf"))
            .size(len as u64)
            .create()
            .expect("create")
    }
    fn reopen(&mut self, mem: &PosixShm) -> PosixShm {
        ShmOptions::new(mem.name()).open().expect("open by name")
    }
}

shm_core::conformance_tests!(Posix);
