//! What the cross-process bridge tests share: demo processes whose output lines are read
//! with a bound, and a subscriber that checks every message number.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use shm_core::testing::{eventually, numbered};
use shm_core::{Broadcast, Error};
use shm_posix::{PosixShm, ShmOptions};

pub const BIN: &str = env!("CARGO_BIN_EXE_shm-demo");
pub const BOUND: Duration = Duration::from_secs(60);

pub fn json_num(line: &str, key: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// A demo process whose stdout lines arrive on a channel; killed on drop.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    what: String,
}

impl Proc {
    pub fn start(what: &str, args: &[&str]) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        Proc::spawn(what, cmd)
    }

    /// As [`start`](Self::start), in the network namespace `ns` (`ip netns exec`, which
    /// execs the demo: the child is the demo itself, so killing it kills the demo).
    pub fn start_in(ns: &str, what: &str, args: &[&str]) -> Proc {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, BIN]).args(args);
        Proc::spawn(what, cmd)
    }

    fn spawn(what: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run shm-demo");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            what: what.to_owned(),
        }
    }

    /// The next line with `"event":"<event>"`, within BOUND.
    pub fn event(&mut self, event: &str) -> String {
        let want = format!("\"event\":\"{event}\"");
        let end = Instant::now() + BOUND;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(&want) => return l,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no '{event}' within {BOUND:?}", self.what)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: ended before '{event}'", self.what)
                }
            }
        }
    }

    /// The last line it printed before exiting, within BOUND, and its exit status.
    pub fn finish(self) -> (String, bool) {
        let (all, ok) = self.finish_all();
        (all.last().cloned().unwrap_or_default(), ok)
    }

    /// Every line it printed, once it exited (within BOUND), and its exit status.
    pub fn finish_all(mut self) -> (Vec<String>, bool) {
        let end = Instant::now() + BOUND;
        let mut all = Vec::new();
        loop {
            match self
                .lines
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                Ok(l) => all.push(l),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{} did not end within {BOUND:?}", self.what)
                }
            }
        }
        let ok = self.child.wait().unwrap().success();
        (all, ok)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it printed so far and nobody read (for a failure's message).
    pub fn unread(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// The process id (for a test that signals it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn term(&mut self) {
        // SAFETY: kill on our own unreaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.term();
    }
}

pub fn attach(name: &str) -> Broadcast<PosixShm> {
    let end = Instant::now() + BOUND;
    loop {
        if let Ok(m) = ShmOptions::new(name).open() {
            if let Ok(b) = Broadcast::attach(m) {
                return b;
            }
        }
        assert!(Instant::now() < end, "{name} did not appear");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Attaches to `name` once at least one subscriber has joined it.
pub fn joined(name: &str) -> Broadcast<PosixShm> {
    let b = attach(name);
    eventually(&format!("a subscriber joined {name}"), BOUND, || {
        b.subscriber_count() >= 1
    });
    b
}

/// A subscriber of `name` held by this process (one more for a publisher that waits for
/// subscribers; it reads nothing).
pub fn probe(name: &str) -> shm_core::Subscriber<PosixShm> {
    Broadcast::attach(ShmOptions::new(name).open().unwrap())
        .unwrap()
        .subscriber()
        .unwrap()
}

/// The number a demo message carries (its first 8 bytes).
pub fn seq(buf: &[u8]) -> u64 {
    u64::from_ne_bytes(buf[..8].try_into().unwrap())
}

/// Reads from `sub` until `pred` says stop (or BOUND), checking every message's number
/// against the one expected; returns how many messages arrived.
pub fn follow(
    sub: &mut shm_core::Subscriber<PosixShm>,
    expected: &mut Option<u64>,
    mut stop: impl FnMut(&Result<u64, Error>, u64) -> bool,
) -> u64 {
    let mut buf = Vec::new();
    let mut got = 0;
    let end = Instant::now() + BOUND;
    loop {
        assert!(
            Instant::now() < end,
            "no end within {BOUND:?} ({got} messages)"
        );
        let r = numbered(sub, |s| {
            s.recv_into_timeout(&mut buf, Duration::from_millis(50))
        });
        match &r {
            Ok(_) => {
                let s = seq(&buf);
                if let Some(e) = *expected {
                    assert_eq!(s, e, "message numbers are exact");
                }
                *expected = Some(s + 1);
                got += 1;
            }
            Err(Error::Lagged { missed }) => {
                *expected = expected.map(|e| e + missed);
            }
            Err(Error::Timeout { .. } | Error::UpstreamLost) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        if stop(&r, got) {
            return got;
        }
    }
}
