//! The synchronisation protocols on their own: written against [`crate::sync`]'s atomics
//! and never against raw pointers, so that loom can model-check exactly the code that runs
//! over mappings (`RUSTFLAGS="--cfg loom" cargo test -p shm-core --test loom`).

pub mod ring;
pub mod seqlock;
