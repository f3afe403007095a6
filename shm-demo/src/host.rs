//! The backend a run picked (memory of any backend is `shm_any::AnyShm`), and peers: the second process of every exchange,
//! spawned (posix, memfd) or forked (anon), reporting one JSON line back.
#![allow(unsafe_code)]

use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use shm_anon::AnonShm;
use shm_memfd::{MemfdOptions, Server};
use shm_posix::ShmOptions;

use crate::errors;
use crate::role::RoleArgs;
use crate::util::{Failure, Result};

pub use shm_any::Backend;

/// Memory of the backend a run picked: posix, anon or memfd.
pub type Mem = shm_any::AnyShm;

/// Creates fresh memory of `size` bytes; a posix segment gets a unique name.
pub fn create(backend: Backend, size: u64) -> Result<Mem> {
    Ok(match backend {
        Backend::Posix => {
            let name = format!("/shm-demo-{}-{}", std::process::id(), next_id());
            // Removed by the signal handler if Ctrl-C ends the run (and by the owner's
            // drop on every other way out).
            crate::util::remember_segment(&name);
            Mem::Posix(ShmOptions::new(name).size(size).create()?)
        }
        Backend::Anon => {
            let len = usize::try_from(size)
                .map_err(|_| Failure::new("size too large for this machine"))?;
            Mem::Anon(AnonShm::create(len).map_err(|e| Failure::new(format!("mmap failed: {e}")))?)
        }
        Backend::Memfd => Mem::Memfd(MemfdOptions::new().name("shm-demo").size(size).create()?),
    })
}

fn next_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A socket path of our own in the temp directory.
pub fn socket_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "shm-demo-{}-{}.sock",
        std::process::id(),
        next_id()
    ))
}

/// Where a spawned peer finds the memory.
pub enum Endpoint {
    Name(String),
    Socket(PathBuf),
}

/// Opens the memory a peer was pointed at.
pub fn open(endpoint: &Endpoint) -> Result<Mem> {
    match endpoint {
        Endpoint::Name(name) => Ok(Mem::Posix(ShmOptions::new(name).open()?)),
        Endpoint::Socket(path) => Ok(Mem::Memfd(shm_memfd::connect(path)?)),
    }
}

/// Starts this executable with `args`, stdin closed, stdout and stderr piped; it dies
/// with us (Ctrl-C or a crash of the demo leaves no child).
pub fn spawn_demo(args: &[String]) -> Result<std::process::Child> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(format!("cannot find own executable: {e}")))?;
    let parent = std::process::id();
    let mut cmd = Command::new(&exe);
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (prctl, getppid, _exit).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() as u32 != parent {
                libc::_exit(1); // we died before the line above took effect
            }
            Ok(())
        })
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::new(format!("cannot start a demo process: {e}")))
}

/// The second process of an exchange.
pub enum Peer {
    Spawned(std::process::Child, Option<Server>),
    Forked(shm_anon::Child, OwnedFd),
}

/// Starts a peer that runs `role_args` (the hidden `peer` subcommand's arguments) against
/// `mem`. For anon, `forked` runs in a forked child instead and its line is sent back
/// through a pipe.
pub fn start_peer(
    backend: Backend,
    mem: &Mem,
    role: RoleArgs,
    forked: fn(RoleArgs, Mem) -> String,
) -> Result<Peer> {
    let role_args = role.to_args();
    let spawn = |endpoint: &[&str]| -> Result<std::process::Child> {
        let mut args: Vec<String> = ["--backend", backend.name(), "peer"]
            .iter()
            .chain(endpoint)
            .map(|s| (*s).to_owned())
            .collect();
        args.extend(role_args.iter().cloned());
        spawn_demo(&args)
    };
    match backend {
        Backend::Posix => {
            let name = mem.posix_name().expect("posix memory");
            Ok(Peer::Spawned(spawn(&["--name", name])?, None))
        }
        Backend::Memfd => {
            let path = socket_path();
            crate::util::remember_path(&path);
            let server = Server::bind(&path)?;
            let mut child = spawn(&["--socket", path.to_str().expect("utf-8 temp path")])?;
            let fd = mem.memfd_fd().expect("memfd memory");
            if let Err(e) = server.serve_one_timeout(&fd, Duration::from_secs(10)) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(errors::memfd(e));
            }
            Ok(Peer::Spawned(child, Some(server)))
        }
        Backend::Anon => {
            let Mem::Anon(anon) = mem else {
                unreachable!("anon memory")
            };
            let alias = anon
                .alias()
                .map_err(|e| Failure::new(format!("mremap: {e}")))?;
            // SAFETY: the demo runs a single thread when it forks, so no lock or allocator
            // state can be held by a thread that does not exist in the child.
            unsafe { fork_peer(move || forked(role, Mem::Anon(alias))) }
        }
    }
}

/// Forks a child that runs `body` and reports the line it returns through a pipe: the
/// one way every forked second process (an anon peer, a baseline's consumer or echo)
/// starts, reports and is waited for ([`Peer::finish`] returns the line; a child that
/// could not write it fails).
///
/// # Safety
/// As [`shm_anon::fork`]: the calling process has one thread, so the child inherits no
/// lock or allocator state held by a thread that does not exist in it.
pub unsafe fn fork_peer(body: impl FnOnce() -> String) -> Result<Peer> {
    let (rx, tx) = std::io::pipe().map_err(|e| Failure::new(format!("pipe: {e}")))?;
    let tx: OwnedFd = tx.into();
    // SAFETY: the caller's promise above; the child runs `body`, writes to its end of
    // the pipe and returns (shm_anon::fork then `_exit`s with the code).
    let child = unsafe {
        shm_anon::fork(move || {
            let line = body() + "\n";
            let mut file = std::fs::File::from(tx);
            match std::io::Write::write_all(&mut file, line.as_bytes()) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        })
    }
    .map_err(|e| Failure::new(format!("fork: {e}")))?;
    Ok(Peer::Forked(child, rx.into()))
}

impl Peer {
    pub fn pid(&self) -> u32 {
        match self {
            Peer::Spawned(c, _) => c.id(),
            Peer::Forked(c, _) => c.pid(),
        }
    }

    /// After our side failed with `ours`: the peer's own failure, if it had one, said
    /// beside ours (it often names the cause: a truncation it saw, say). A peer that
    /// does not end within `grace` is killed: our failure may leave it waiting.
    pub fn fail(mut self, ours: Failure, grace: Duration) -> Failure {
        let end = std::time::Instant::now() + grace;
        loop {
            let done = match &mut self {
                Peer::Spawned(c, _) => c.try_wait().map(|s| s.is_some()).unwrap_or(true),
                Peer::Forked(c, _) => c.try_wait().map(|s| s.is_some()).unwrap_or(true),
            };
            if done || std::time::Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = match &mut self {
            Peer::Spawned(c, _) => c.kill(),
            Peer::Forked(c, _) => c.kill(),
        };
        let theirs = match self.finish() {
            Err(f) => Some(f.what),
            // A consumer's report says `"problem"`; a role's failure says `"error"`.
            Ok(line) => crate::util::parse_peer_line(&line)
                .err()
                .map(|f| f.what)
                .or_else(|| crate::util::json_str(&line, "problem")),
        };
        match theirs {
            Some(t) => Failure {
                what: format!("{}; the peer: {t}", ours.what),
                ..ours
            },
            None => ours,
        }
    }

    /// Waits for the peer and returns its report line; a failed peer is an error that
    /// carries what it said on stderr.
    pub fn finish(self) -> Result<String> {
        match self {
            Peer::Spawned(child, _server) => {
                let out = child
                    .wait_with_output()
                    .map_err(|e| Failure::new(format!("waiting for the peer: {e}")))?;
                let stdout = String::from_utf8_lossy(&out.stdout);
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    return Err(Failure::new(format!(
                        "the peer process failed ({}): {}",
                        out.status,
                        err.trim()
                    )));
                }
                Ok(stdout.lines().last().unwrap_or("").to_owned())
            }
            Peer::Forked(mut child, rx) => {
                let mut text = String::new();
                let read = std::fs::File::from(rx).read_to_string(&mut text);
                let status = child
                    .wait()
                    .map_err(|e| Failure::new(format!("waiting for the child: {e}")))?;
                read.map_err(|e| Failure::new(format!("reading from the child: {e}")))?;
                if !status.success() {
                    return Err(Failure::new(format!(
                        "the forked child failed ({status}){}",
                        match text.trim() {
                            "" => String::new(),
                            said => format!(": {said}"),
                        }
                    )));
                }
                Ok(text.lines().last().unwrap_or("").to_owned())
            }
        }
    }
}

pub use shm_core::os::cpu::pin_to_cpu;
