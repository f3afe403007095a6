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

/// A spawned demo process, the one harness for every child the demo starts: its stdout
/// lines arrive on a channel (for a long-running child's event lines, or the last line
/// a peer reports), its stderr is kept for the error message; ended with SIGTERM (its
/// handler removes what it made), then SIGKILL, when dropped unfinished.
pub struct Child {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    err: std::sync::Arc<std::sync::Mutex<String>>,
    what: &'static str,
}

impl Child {
    /// Starts this executable with `args` ([`spawn_demo`]); `what` names it in errors.
    pub fn start(what: &'static str, args: &[String]) -> Result<Child> {
        let mut child = spawn_demo(args)?;
        let out = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for l in out.lines().map_while(std::result::Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let e2 = err.clone();
        let mut stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            *e2.lock().expect("not poisoned") = s;
        });
        Ok(Child {
            child,
            lines,
            err,
            what,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn failure(&mut self, what: String) -> Failure {
        // Its stderr is complete once it has exited (give the reader a moment).
        std::thread::sleep(Duration::from_millis(50));
        let err = self.err.lock().expect("not poisoned").trim().to_owned();
        Failure::new(format!(
            "{what}{}",
            if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            }
        ))
    }

    /// The next stdout line with `"event":"<event>"` (others are skipped), within
    /// `timeout`; fails when the process ends first.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Result<String> {
        let want = format!("\"event\":\"{event}\"");
        let end = std::time::Instant::now() + timeout;
        let mut seen = String::new();
        loop {
            crate::util::check_interrupted()?;
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l.contains(&want) => return Ok(l),
                Ok(l) => seen = l,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    return Err(self.failure(format!("the {} ended before '{event}'", self.what)));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    if std::time::Instant::now() > end =>
                {
                    return Err(self.failure(format!(
                        "the {} said no '{event}' within {timeout:?} (last: {seen})",
                        self.what
                    )));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Whether it has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Its last stdout line once it has exited, within `timeout` (`None`: as long as it
    /// runs; Ctrl-C still ends the wait). A child that exits unsuccessfully is an error
    /// carrying what it said on stderr.
    pub fn last_line(&mut self, timeout: Option<Duration>) -> Result<String> {
        let end = timeout.map(|t| std::time::Instant::now() + t);
        let mut last = String::new();
        loop {
            crate::util::check_interrupted()?;
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => last = l,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self
                        .child
                        .wait()
                        .map_err(|e| Failure::new(format!("waiting for the {}: {e}", self.what)))?;
                    if !status.success() {
                        return Err(
                            self.failure(format!("the {} process failed ({status})", self.what))
                        );
                    }
                    return Ok(last);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    if end.is_some_and(|e| std::time::Instant::now() > e) =>
                {
                    return Err(self.failure(format!(
                        "the {} did not end within {:?}",
                        self.what,
                        timeout.unwrap_or_default()
                    )));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// SIGKILL, reaped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL if it has not ended within 5 s; reaped.
    pub fn end(&mut self) {
        if self.exited().is_some() {
            return;
        }
        crate::util::terminate(self.child.id());
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while self.exited().is_none() {
            if std::time::Instant::now() > end {
                self.kill();
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.end();
    }
}

/// The second process of an exchange.
pub enum Peer {
    Spawned(Child, Option<Server>),
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
    let spawn = |endpoint: &[&str]| -> Result<Child> {
        let mut args: Vec<String> = ["--backend", backend.name(), "peer"]
            .iter()
            .chain(endpoint)
            .map(|s| (*s).to_owned())
            .collect();
        args.extend(role_args.iter().cloned());
        Child::start("peer", &args)
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
                child.kill();
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
            Peer::Spawned(c, _) => c.pid(),
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
                Peer::Spawned(c, _) => c.exited().is_some(),
                Peer::Forked(c, _) => c.try_wait().map(|s| s.is_some()).unwrap_or(true),
            };
            if done || std::time::Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match &mut self {
            Peer::Spawned(c, _) => c.kill(),
            Peer::Forked(c, _) => {
                let _ = c.kill();
            }
        }
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
            Peer::Spawned(mut child, _server) => child.last_line(None),
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
