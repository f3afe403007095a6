//! What every command shares: the backend named with `--backend`, `--json`, and the
//! usage errors a command gives for a backend it cannot run on.

use crate::host::Backend;
use crate::util::{Failure, Result};

/// `--backend`: a shared-memory backend, or a baseline for the measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    Posix,
    Anon,
    Memfd,
    Unix,
    Pipe,
    /// The hardware floor for pingpong: two bare words on two cache lines.
    Floor,
}

impl BackendArg {
    /// The shared-memory backend it names, if it names one.
    pub fn shm(self) -> Option<Backend> {
        match self {
            BackendArg::Posix => Some(Backend::Posix),
            BackendArg::Anon => Some(Backend::Anon),
            BackendArg::Memfd => Some(Backend::Memfd),
            BackendArg::Unix | BackendArg::Pipe | BackendArg::Floor => None,
        }
    }
}

/// The global options every command sees.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub backend: Option<BackendArg>,
    pub json: bool,
}

const ANON_TWO_TERMINALS: &str =
    "the anon backend has no name and no fd to pass: only a forked child can see it, \
so it has no two-terminal mode. Run `shm-demo --backend anon` for the one-command exchange";

impl Ctx {
    /// The shared-memory backend `--backend` named, if it named one.
    pub fn shm(&self) -> Option<Backend> {
        self.backend.and_then(BackendArg::shm)
    }

    /// `--backend` named `want`, or the usage error `msg` (for a two-terminal command,
    /// `anon` gets why it has no such mode).
    pub fn require(&self, want: Backend, msg: &str, two_terminals: bool) -> Result<()> {
        match self.shm() {
            Some(b) if b == want => Ok(()),
            Some(Backend::Anon) if two_terminals => Err(Failure::usage(ANON_TWO_TERMINALS)),
            _ => Err(Failure::usage(msg)),
        }
    }

    /// A shared-memory backend, or the usage error `msg`.
    pub fn require_shm(&self, msg: &str) -> Result<Backend> {
        self.shm().ok_or_else(|| Failure::usage(msg))
    }

    /// `--backend`, one of `allowed`, or the usage error `msg`.
    pub fn require_one_of(&self, allowed: &[BackendArg], msg: &str) -> Result<BackendArg> {
        match self.backend {
            Some(b) if allowed.contains(&b) => Ok(b),
            _ => Err(Failure::usage(msg)),
        }
    }
}
