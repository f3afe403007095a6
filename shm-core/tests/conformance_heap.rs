//! The conformance suite against the heap-backed memory.
#![cfg(not(loom))]

use shm_core::conformance::Backend;
use shm_core::HeapMemory;

struct Heap;

impl Backend for Heap {
    type Mem = HeapMemory;
    fn create(&mut self, len: usize) -> HeapMemory {
        HeapMemory::new(len)
    }
    fn reopen(&mut self, mem: &HeapMemory) -> HeapMemory {
        mem.share()
    }
    fn shared_across_fork(&self) -> bool {
        false
    }
}

shm_core::conformance_tests!(Heap);
