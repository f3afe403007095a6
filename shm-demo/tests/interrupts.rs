//! The demo ends when asked and when its segment is cut from under it: SIGINT or SIGTERM
//! during any run ends it with 130 or 143, removes what it made and leaves no child; a
//! posix stream whose segment a third process truncates ends with an error. Every wait
//! in these tests is bounded (generously: no test asserts a speed).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shm_core::os::proc::{liveness, Liveness};
use shm_core::testing::{children_of, dev_shm_entries, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_shm-demo");
const BOUND: Duration = Duration::from_secs(30);

fn start(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shm-demo")
}

/// The exit status of `child`, waiting at most BOUND.
fn exit_within(child: &mut Child) -> std::process::ExitStatus {
    let end = Instant::now() + BOUND;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shm-demo did not exit within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill on our own unreaped child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Starts a long run, waits until it has its segment (posix) or its children, signals
/// it, and checks the end: status 128 + sig, nothing of its left in /dev/shm, no child
/// alive.
fn interrupted_run(args: &[&str], sig: i32) {
    let mut child = start(args);
    let pid = child.id();
    let prefix = format!("shm-demo-{pid}-");
    let posix = args.contains(&"posix");
    eventually(&format!("{args:?} started"), BOUND, || {
        (!posix || !dev_shm_entries(&prefix).is_empty()) && !children_of(pid).is_empty()
    });
    std::thread::sleep(Duration::from_millis(200)); // well into the run
    let kids = children_of(pid);
    signal(&child, sig);
    let status = exit_within(&mut child);
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
    assert_eq!(
        status.code(),
        Some(128 + sig),
        "{args:?}: {status} (stderr: {err})"
    );
    assert!(
        dev_shm_entries(&prefix).is_empty(),
        "{args:?} left {:?}",
        dev_shm_entries(&prefix)
    );
    for k in kids {
        eventually(&format!("{args:?}: child {k} gone"), BOUND, || {
            liveness(k) != Liveness::Alive
        });
    }
}

#[test]
fn ctrl_c_and_sigterm_end_every_run_and_clean_up() {
    let runs: &[&[&str]] = &[
        &[
            "--backend",
            "posix",
            "stream",
            "--messages",
            "4000000000",
            "--size",
            "64",
        ],
        &[
            "--backend",
            "memfd",
            "stream",
            "--messages",
            "4000000000",
            "--size",
            "4096",
        ],
        &[
            "--backend",
            "posix",
            "pingpong",
            "--round-trips",
            "4000000000",
        ],
        &[
            "--backend",
            "anon",
            "pingpong",
            "--round-trips",
            "4000000000",
            "--wait",
            "block",
        ],
        &[
            "--backend",
            "posix",
            "broadcast",
            "--subscribers",
            "2",
            "--messages",
            "4000000000",
            "--size",
            "64",
        ],
        &[
            "--backend",
            "memfd",
            "stream",
            "--messages",
            "4000000000",
            "--wait",
            "async",
        ],
        &[
            "--backend",
            "posix",
            "event",
            "--notifiers",
            "2",
            "--events",
            "4000000000",
        ],
        &[
            "--backend",
            "posix",
            "waitset",
            "--subscribers",
            "2",
            "--messages",
            "4000000000",
        ],
        &[
            "--backend",
            "posix",
            "service",
            "run",
            "--clients",
            "2",
            "--servers",
            "2",
            "--calls",
            "4000000000",
        ],
    ];
    for args in runs {
        interrupted_run(args, libc::SIGINT);
    }
    for args in &runs[..3] {
        interrupted_run(args, libc::SIGTERM);
    }
}

/// A posix stream whose segment a third process truncates ends with an error that says
/// so (it used to hang both processes), and removes its segment.
#[test]
fn a_stream_whose_segment_is_truncated_ends_with_an_error() {
    let mut child = start(&[
        "--backend",
        "posix",
        "stream",
        "--messages",
        "200000000",
        "--size",
        "4096",
    ]);
    let pid = child.id();
    let prefix = format!("shm-demo-{pid}-");
    eventually("the stream's segment", BOUND, || {
        !dev_shm_entries(&prefix).is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    for name in dev_shm_entries(&prefix) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/{name}"))
            .unwrap();
        f.set_len(4096).unwrap();
    }
    let status = exit_within(&mut child);
    let err: String = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .map(|l| l + "\n")
        .collect();
    assert_eq!(status.code(), Some(1), "{status}: {err}");
    assert!(err.to_lowercase().contains("truncated"), "{err}");
    assert!(dev_shm_entries(&prefix).is_empty());
}
