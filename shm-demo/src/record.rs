//! The tutorial's record, as both the writer and the reader declare it.

use shm_core::{bytemuck, Record};

/// The tutorial's record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "shm_core::bytemuck")]
pub struct MyData {
    pub col1: u64,
    pub col2: u64,
    pub col3: u64,
}

impl Record for MyData {
    const NAME: &'static str = "MyData";
}

/// The same fields under a new version: what a reader built from newer sources would
/// declare. Used by `read --schema v2` to show a schema mismatch.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "shm_core::bytemuck")]
pub struct MyDataV2 {
    pub col1: u64,
    pub col2: u64,
    pub col3: u64,
}

impl Record for MyDataV2 {
    const NAME: &'static str = "MyData";
    const VERSION: u32 = 2;
}

pub const TUTORIAL: MyData = MyData {
    col1: 100,
    col2: 876,
    col3: 8021,
};

impl std::fmt::Display for MyData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MyData {{ col1: {}, col2: {}, col3: {} }}",
            self.col1, self.col2, self.col3
        )
    }
}
