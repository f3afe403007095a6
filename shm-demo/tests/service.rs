//! `shm-demo service`: `run` on every backend (every response checked, the JSON line's
//! fields), and `serve` / `call` from separate terminals, where a server SIGKILLed in
//! the middle of a run is reported and the calls go on with the other server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shm_core::testing::{dev_shm_entries, unique_name, Reaped};

const BIN: &str = env!("CARGO_BIN_EXE_shm-demo");

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run shm-demo");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

fn num(line: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let i = line.find(&pat).unwrap_or_else(|| panic!("{key} in {line}")) + pat.len();
    line[i..]
        .split([',', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {line}: {e}"))
}

#[test]
fn run_checks_every_call_on_every_backend() {
    for b in ["posix", "anon", "memfd"] {
        let args = [
            "--backend",
            b,
            "service",
            "run",
            "--clients",
            "2",
            "--servers",
            "2",
            "--calls",
            "4000",
            "--size",
            "100",
            "--json",
        ];
        let (ok, out, err) = run(&args);
        assert!(ok, "{b}: {err}");
        let line = out.lines().last().unwrap_or_default();
        for key in [
            "\"verified\":true",
            "\"calls\":4000",
            "\"p50_ns\":",
            "\"p99_ns\":",
            "\"calls_per_s\":",
            "\"cpu\":",
            "\"cores\":",
        ] {
            assert!(line.contains(key), "{b}: {key} in {line}");
        }
        assert!(num(line, "p50_ns") > 0.0 && num(line, "calls_per_s") > 0.0);
    }
    // A streamed size and server work, text mode.
    let (ok, out, err) = run(&[
        "--backend",
        "posix",
        "service",
        "run",
        "--servers",
        "3",
        "--calls",
        "300",
        "--size",
        "64KiB",
        "--work-us",
        "10",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("all accounted for"), "{out}");
    let (ok, _, err) = run(&["--backend", "posix", "service", "run", "--size", "8"]);
    assert!(!ok && err.contains("--size must be"), "{err}");
}

/// Removes a segment's name when dropped (a test that failed before its creator's Ctrl-C).
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.0));
    }
}

fn serve(name: &str) -> Reaped {
    let mut child = Command::new(BIN)
        .args([
            "--backend",
            "posix",
            "service",
            "serve",
            "--name",
            name,
            "--work-us",
            "200",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    // Wait for its first line: the service exists and it serves.
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("serving"), "{line}");
    Reaped(child)
}

fn caller(name: &str, idempotent: bool) -> Child {
    let mut args = vec![
        "--backend",
        "posix",
        "service",
        "call",
        "--name",
        name,
        "--calls",
        "2000",
        "--deadline-ms",
        "2000",
        "--json",
    ];
    if idempotent {
        args.push("--idempotent");
    }
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("call")
}

/// Whether process `pid` is stopped (state `T` in `/proc/PID/stat`).
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
        .unwrap_or(false)
}

/// Two callers keep both servers busy (200 µs of work per request), one server is
/// SIGKILLed holding a request: the callers report it (`peer_died`, or `retried` for
/// idempotent requests, answered by the other server) and finish their calls.
fn kill_one_server_under(name: &str, victim: &mut Child, idempotent: bool) -> (f64, f64, f64) {
    let callers = [
        Reaped(caller(name, idempotent)),
        Reaped(caller(name, idempotent)),
    ];
    // Kill it while it holds a request (looked at from outside, as `inspect` does).
    let mem = shm_posix::ShmOptions::new(name).open().expect("open");
    let svc = shm_core::Service::attach(mem).expect("attach");
    let pid = victim.id();
    let start = Instant::now();
    // Seen holding one, it is stopped (SIGSTOP) and looked at again: a request it
    // finished between the look and the signal (a loaded host) would leave nothing to
    // report, so only a server stopped while it holds one is killed.
    let held = || svc.state().map_or(0, |s| s.in_flight(pid)) > 0;
    let signal = |sig| {
        // SAFETY: kill(2) on our own child, which we have not reaped.
        unsafe { libc::kill(pid as i32, sig) };
    };
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the server never held a request when stopped"
        );
        if !held() {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        signal(libc::SIGSTOP);
        while !stopped(pid) {
            std::thread::sleep(Duration::from_micros(50));
        }
        if held() {
            break;
        }
        signal(libc::SIGCONT);
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let t = Instant::now();
    let (mut ok, mut dead, mut retried) = (0.0, 0.0, 0.0);
    for mut c in callers {
        let mut text = String::new();
        std::io::Read::read_to_string(c.stdout.as_mut().unwrap(), &mut text).unwrap();
        let status = c.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(status.success(), "{text} {err}");
        let line = text.lines().last().unwrap_or_default();
        assert!(line.contains("\"verified\":true"), "{line}");
        assert_eq!(num(line, "timeouts") + num(line, "other"), 0.0, "{line}");
        assert_eq!(num(line, "ok") + num(line, "peer_died"), 2000.0, "{line}");
        ok += num(line, "ok");
        dead += num(line, "peer_died");
        retried += num(line, "retried");
    }
    assert!(t.elapsed() < Duration::from_secs(60), "the calls hung");
    (ok, dead, retried)
}

#[test]
fn serve_and_call_from_separate_terminals_survive_a_killed_server() {
    let name = format!("/{}", unique_name("svc"));
    let _unlink = Unlink(name.clone());
    let mut first = serve(&name);
    let mut second = serve(&name);
    let (ok, dead, retried) = kill_one_server_under(&name, &mut second, false);
    assert!(dead >= 1.0, "the killed server held a request: {ok} {dead}");
    assert_eq!(retried, 0.0);
    let mut third = serve(&name);
    let (ok, dead, retried) = kill_one_server_under(&name, &mut third, true);
    assert_eq!(
        (ok, dead),
        (4000.0, 0.0),
        "idempotent calls are all answered"
    );
    assert!(
        retried >= 1.0,
        "the killed server held a request: {retried}"
    );
    // Ctrl-C ends the first server (the creator), which reports and removes the name.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    let status = first.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(first.stdout.as_mut().unwrap(), &mut rest).unwrap();
    assert!(rest.contains("served"), "{rest}");
    assert!(dev_shm_entries(&name[1..]).is_empty(), "the name was left");
}
