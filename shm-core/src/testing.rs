//! Helpers for tests that need real processes and unique names (behind the
//! `conformance` feature, for backend crates' tests).
//!
//! A test that needs a second process re-runs its own test binary with
//! [`spawn_self`]: the child runs one `#[ignore]`d test (the entry point) with an
//! environment variable naming its role, so it is never run, or counted as passing, by
//! itself.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The tutorial's record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MyData {
    /// First column.
    pub col1: u64,
    /// Second column.
    pub col2: u64,
    /// Third column.
    pub col3: u64,
}

impl crate::format::record::Record for MyData {
    const NAME: &'static str = "MyData";
}

/// The tutorial's values: `{100, 876, 8021}`.
pub const TUTORIAL: MyData = MyData {
    col1: 100,
    col2: 876,
    col3: 8021,
};

/// A name unique to this process and call: `{prefix}-{pid}-{counter}`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The environment variable that tells a child which role to play.
pub const ROLE_VAR: &str = "SHM_TEST_ROLE";

/// Runs the `#[ignore]`d test `entry` of the current test binary in a child process, with
/// `envs` set and `stdin` written to its standard input; returns its output.
pub fn spawn_self(entry: &str, role: &str, envs: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = self_command(entry, role, envs);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the test binary");
    let mut input = child.stdin.take().expect("stdin");
    // The child may exit without reading; a broken pipe is its business.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    child.wait_with_output().expect("wait for the child")
}

/// The command that runs the `#[ignore]`d test `entry` of this test binary as `role`.
fn self_command(entry: &str, role: &str, envs: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        entry,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE_VAR, role);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `f` on a thread and returns what it returns, or panics if it has not returned
/// within `bound`: how a test asserts that a call ends (the bound is generous; no test
/// asserts a speed). A call that hangs is left behind on its thread; the test fails.
pub fn within<T: Send + 'static>(
    bound: std::time::Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(bound) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not return within {bound:?}")
        }
    }
}

/// A child process running one role of the current test binary (see [`spawn_self`]) in
/// the background: it is started, its `RESULT ready` line awaited, and it is killed and
/// reaped when dropped, so no test leaves a process behind.
pub struct Peer {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Starts `entry` with `role` and `envs` and waits (at most 30 s) until it prints
    /// `RESULT ready`.
    pub fn start(entry: &str, role: &str, envs: &[(&str, &str)]) -> Peer {
        let mut cmd = self_command(entry, role, envs);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn the test binary");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(i) = line.find("RESULT ") {
                    if tx.send(line[i + 7..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let peer = Peer { child, lines };
        let first = peer.next_result(std::time::Duration::from_secs(30));
        assert_eq!(
            first.as_deref(),
            Some("ready"),
            "peer {role} did not get ready"
        );
        peer
    }

    /// The next `RESULT` line the peer prints, waiting at most `timeout`.
    pub fn next_result(&self, timeout: std::time::Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The peer's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the peer (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the peer (SIGKILL) and does not reap it: it stays a zombie until this
    /// handle is dropped, as a child of a parent blocked in a wait does.
    pub fn kill_unreaped(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits (at most `timeout`) for the peer to exit by itself; its status.
    pub fn wait(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        crate::wait::poll_until(timeout, || self.child.try_wait().ok().flatten()).ok()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a child printed after `RESULT ` on each line that has it (libtest may print
/// `test name ... ` before the first one on the same line).
pub fn results(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.find("RESULT ").map(|i| l[i + 7..].to_owned()))
        .collect()
}

/// Panics with the child's stderr unless it exited successfully.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "child failed with {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Encodes `(offset, bytes)` writes as text lines, for a child's stdin.
pub fn encode_writes(writes: &[(usize, Vec<u8>)]) -> String {
    let mut s = String::new();
    for (off, bytes) in writes {
        s.push_str(&off.to_string());
        s.push(' ');
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
    }
    s
}

/// Decodes what [`encode_writes`] wrote.
pub fn decode_writes(text: &str) -> Vec<(usize, Vec<u8>)> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (off, hex) = l.split_once(' ').unwrap_or((l, ""));
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
                .collect();
            (off.parse().expect("offset"), bytes)
        })
        .collect()
}

/// The payload a [`TUTORIAL`] segment of `payload_len` bytes holds after `writes`, those
/// that fit applied in order (the model the cross-process proptests compare against).
pub fn expected_payload(payload_len: usize, writes: &[(usize, Vec<u8>)]) -> Vec<u8> {
    let mut model = vec![0u8; payload_len];
    model[..std::mem::size_of::<MyData>()].copy_from_slice(bytemuck::bytes_of(&TUTORIAL));
    for (off, bytes) in writes {
        if off
            .checked_add(bytes.len())
            .is_some_and(|end| end <= payload_len)
        {
            model[*off..off + bytes.len()].copy_from_slice(bytes);
        }
    }
    model
}

/// The child side of the cross-process write tests: reads [`encode_writes`] text from
/// stdin, applies each write to `seg`, and prints `RESULT ok` or `RESULT oob` for each.
pub fn apply_writes_from_stdin<M: crate::format::memory::SharedMemory>(
    seg: &crate::format::record::Segment<MyData, M>,
) {
    let mut input = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut input).expect("read stdin");
    for (off, bytes) in decode_writes(&input) {
        match seg.write_at(off, &bytes) {
            Ok(()) => println!("RESULT ok"),
            Err(crate::format::error::Error::OutOfBounds { .. }) => println!("RESULT oob"),
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

/// What [`apply_writes_from_stdin`] prints for `writes` on a payload of `payload_len`.
pub fn expected_write_results(payload_len: usize, writes: &[(usize, Vec<u8>)]) -> Vec<String> {
    writes
        .iter()
        .map(|(off, b)| {
            if off + b.len() <= payload_len {
                "ok"
            } else {
                "oob"
            }
            .to_owned()
        })
        .collect()
}

/// Checks a child's first `RESULT` line of `before after` pairs (`"12 12 40 40"`): each
/// count must be the same after as before.
pub fn assert_counts_unchanged(out: &Output, what: &[&str]) {
    assert_success(out);
    let line = results(out).into_iter().next().expect("a RESULT line");
    let n: Vec<u64> = line
        .split(' ')
        .map(|x| x.parse().expect("a count"))
        .collect();
    assert_eq!(n.len(), 2 * what.len(), "{line}");
    for (i, w) in what.iter().enumerate() {
        assert_eq!(n[2 * i], n[2 * i + 1], "{w} before and after: {line}");
    }
}

/// The test message number `i` of `len` bytes.
pub fn message(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 131 + j * 7 + len) as u8).collect()
}

/// The child side of the cross-process channel tests: reads one message size per line of
/// stdin and sends [`message`]`(i, size)` for each on ring 0 of `chan`.
pub fn send_sizes_from_stdin<M: crate::format::memory::SharedMemory>(chan: &crate::Channel<M>) {
    let mut input = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut input).expect("read stdin");
    let mut tx = chan.sender(0).expect("sending end");
    for (i, line) in input.lines().enumerate() {
        let len: usize = line.trim().parse().expect("a size");
        tx.send(&message(i, len)).expect("send");
    }
}

/// The parent side: receives `sizes.len()` messages on ring 0 and checks each is
/// [`message`]`(i, size)`, in order, then that the sender closed.
pub fn receive_sizes<M: crate::format::memory::SharedMemory>(
    chan: &crate::Channel<M>,
    sizes: &[usize],
) -> Result<(), String> {
    let mut rx = chan.receiver(0).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .map_err(|e| format!("message {i}: {e}"))
            .map(|m| {
                buf = m.to_vec();
            })?;
        if buf != message(i, len) {
            return Err(format!("message {i} ({len} bytes) differs"));
        }
    }
    let end = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Err(crate::RecvTimeoutError::Closed) => Ok(()),
        Err(e) => Err(format!("after the last message: {e}")),
        Ok(m) => Err(format!("an extra message of {} bytes", m.len())),
    };
    end
}

/// The number of open fds of this process (entries of `/proc/self/fd`, less the one
/// `read_dir` itself holds).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
        .saturating_sub(1)
}

/// The names in `/dev/shm` that start with `prefix` (without the leading `/`).
pub fn dev_shm_entries(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// Waits (at most `bound`, polling) until `pred` holds; panics with `what` if it never
/// does: how a test waits for another process to get somewhere.
pub fn eventually(what: &str, bound: std::time::Duration, mut pred: impl FnMut() -> bool) {
    if let Err(e) = crate::wait::poll_until(bound, || pred().then_some(())) {
        panic!("{what}: {e}");
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then let go): for tests that
/// must name the port a peer will listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a port on 127.0.0.1")
        .port()
}

/// The pids whose parent is `pid`, sorted (from `/proc/*/stat`): a test's view of the
/// children a program it started has made.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold anything: read after it.
        let Some(i) = stat.rfind(')') else { continue };
        if stat[i + 1..].split_whitespace().nth(1) == Some(&pid.to_string()) {
            out.push(p);
        }
    }
    out.sort_unstable();
    out
}

/// A subscriber's copy-out (`recv_into`, `try_recv_into`, `recv_into_timeout`, ...) as
/// the number of the message it received, with the umbrella [`Error`](crate::Error): what
/// the tests compare (`numbered(&mut sub, |s| s.recv_into(&mut buf)) == Ok(7)`).
///
/// # Errors
/// The operation's error, as [`Error`](crate::Error).
pub fn numbered<M: crate::format::memory::SharedMemory, E: Into<crate::Error>>(
    sub: &mut crate::Subscriber<M>,
    op: impl FnOnce(&mut crate::Subscriber<M>) -> Result<usize, E>,
) -> Result<u64, crate::Error> {
    op(sub).map_err(Into::into)?;
    Ok(sub.last_number().expect("a message was received"))
}

/// A tiny executor with no runtime, for tests of the `_async` forms: polls `f`, parks
/// the thread until its waker fires (or 50 ms pass), and polls again. The futures work
/// with any executor's `Waker`; this one needs no dependency.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_round_trip_through_text() {
        let w = vec![(0, vec![]), (17, vec![0, 255, 16]), (4096, vec![1; 40])];
        assert_eq!(decode_writes(&encode_writes(&w)), w);
        assert_ne!(unique_name("x"), unique_name("x"));
    }
}

/// A child process a test started, ended when dropped: Ctrl-C first (a demo removes what
/// it made), SIGKILL if it does not end within 5 s, then reaped. A child the test already
/// reaped is left alone (its pid may be another process's by then).
#[derive(Debug)]
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_some() {
            return;
        }
        let Ok(pid) = i32::try_from(self.0.id()) else {
            return;
        };
        // SAFETY: kill(2) on our own child, not reaped yet (checked just above).
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGINT)
        };
        let ended = crate::wait::poll_until(std::time::Duration::from_secs(5), || {
            self.0.try_wait().ok().flatten()
        });
        if ended.is_err() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
