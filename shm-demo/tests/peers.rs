//! Talking to programs in other languages (issue 11), with real peer processes:
//! Python's `multiprocessing.shared_memory`, C programs written the tutorial's way (no
//! header), and a C program that speaks our layout from its written spec alone.
//!
//! A test whose tool is missing (`python3`, `cc`) says so on stderr and passes without
//! checking anything else; CI has both.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use shm_core::testing::unique_name;

const BIN: &str = env!("CARGO_BIN_EXE_shm-demo");
const RECORD: &str = "MyData { col1: 100, col2: 876, col3: 8021 }";

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("run");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn demo(args: &[&str]) -> Output {
    run(Command::new(BIN).args(args))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}\n{}", stdout(o), stderr(o));
    stdout(o)
}

fn have(tool: &str, test: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIPPED {test}: `{tool}` is not installed");
    }
    found
}

/// Removes a segment name when dropped (the tests' peers may fail half way).
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = shm_posix::unlink(&self.0);
    }
}

/// Compiles one of the C peers in `tests/peers/` into the target's temp dir.
fn compile(src: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let exe = dir.join(format!("{src}-{}", std::process::id()));
    let c = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(format!("{src}.c"));
    let out = run(Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-o"])
        .arg(&exe)
        .arg(&c));
    assert!(out.status.success(), "cc {src}.c: {}", stderr(&out));
    exe
}

/// Python creates the segment the way `multiprocessing.shared_memory` does and packs the
/// record with `struct`; our demo reads it with `--raw`. Then the other way round.
#[test]
fn python_to_demo_and_back() {
    if !have("python3", "python_to_demo_and_back") {
        return;
    }
    // Python writes, holds the segment until we have read it, then unlinks it (its
    // resource tracker would unlink it at exit anyway: it created it).
    let name = unique_name("shm_py_w");
    let _unlink = Unlink(name.clone());
    let script = r#"
import struct, sys
from multiprocessing import shared_memory
shm = shared_memory.SharedMemory(name=sys.argv[1], create=True, size=4096)
shm.buf[:24] = struct.pack("qqq", 100, 876, 8021)
print("ready", flush=True)
sys.stdin.read()
shm.close()
shm.unlink()
"#;
    let mut py = Command::new("python3")
        .args(["-c", script, &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(py.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    // Python's name has no slash; ours means the same segment.
    let out = demo(&["--backend", "posix", "read", "--name", &name, "--raw"]);
    let text = ok(&out);
    assert!(text.contains(RECORD), "{text}");
    assert!(
        text.contains(&format!("from /{name}")),
        "normalised name: {text}"
    );
    // Without --raw the header check refuses it, and says what to do.
    let out = demo(&["--backend", "posix", "read", "--name", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not an shm segment"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--raw"), "{}", stderr(&out));
    drop(py.stdin.take());
    assert!(py.wait().unwrap().success());

    // Our demo writes the tutorial's way; Python reads. Python's resource tracker would
    // unlink a segment it merely attached to when it exits (Python < 3.13), so the
    // script unregisters it; the segment stays ours to remove.
    let name = unique_name("shm_py_r");
    let _unlink = Unlink(name.clone());
    let text = ok(&demo(&[
        "--backend",
        "posix",
        "write",
        "--name",
        &name,
        "--raw",
        "--size",
        "4000000000",
    ]));
    assert!(text.contains("the tutorial's way"), "{text}");
    let script = r#"
import struct, sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1])
resource_tracker.unregister(shm._name, "shared_memory")
print(shm.size, *struct.unpack("qqq", bytes(shm.buf[:24])))
shm.close()
"#;
    let out = run(Command::new("python3").args(["-c", script, &name]));
    assert_eq!(ok(&out).trim(), "4000000000 100 876 8021");
    // Still there for us (not unlinked by Python), and our own raw reader agrees.
    let text = ok(&demo(&[
        "--backend",
        "posix",
        "read",
        "--name",
        &name,
        "--raw",
        "--unlink",
    ]));
    assert!(text.contains(RECORD) && text.contains("removed"), "{text}");
}

/// C programs written the tutorial's way: the writer's segment is read by our demo, and
/// the demo's `--raw` segment is read (and unlinked) by the tutorial's reader.
#[test]
fn tutorial_programs_to_demo_and_back() {
    if !have("cc", "tutorial_programs_to_demo_and_back") {
        return;
    }
    let tutorial = compile("tutorial");
    let name = unique_name("my_shm");
    let _unlink = Unlink(name.clone());
    let out = run(Command::new(&tutorial).args(["write", &name]));
    assert_eq!(ok(&out).trim(), "wrote {100 876 8021}");
    let text = ok(&demo(&[
        "--backend",
        "posix",
        "read",
        "--name",
        &name,
        "--raw",
        "--unlink",
    ]));
    assert!(text.contains(RECORD), "{text}");
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());

    let name = unique_name("my_shm");
    let _unlink = Unlink(name.clone());
    ok(&demo(&[
        "--backend",
        "posix",
        "write",
        "--name",
        &name,
        "--raw",
    ]));
    let out = run(Command::new(&tutorial).args(["read", &name]));
    assert_eq!(ok(&out).trim(), "read {100 876 8021}");
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
}

/// A C reader written from the layout table alone attaches to a segment our demo wrote,
/// checks every header field and prints the record; it rejects a segment whose header it
/// does not accept (a raw one, one with a corrupted field).
#[test]
fn c_reader_speaks_our_layout() {
    if !have("cc", "c_reader_speaks_our_layout") {
        return;
    }
    let reader = compile("layout_reader");
    let name = unique_name("/shm_c_layout");
    let _unlink = Unlink(name.clone());
    ok(&demo(&[
        "--backend",
        "posix",
        "write",
        "--name",
        &name,
        "--size",
        "1MiB",
    ]));
    let out = run(Command::new(&reader).arg(&name));
    let text = ok(&out);
    assert!(text.starts_with(RECORD), "{text}");

    // A header it must not accept: kind_version changed in place.
    let path = format!("/dev/shm{name}");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[44] = 9;
    std::fs::write(&path, &bytes).unwrap();
    let out = run(Command::new(&reader).arg(&name));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(
        stdout(&out).trim(),
        "rejected: kind_version is 9, expected 1"
    );

    // A segment without our header.
    let raw = unique_name("/shm_c_raw");
    let _unlink_raw = Unlink(raw.clone());
    ok(&demo(&[
        "--backend",
        "posix",
        "write",
        "--name",
        &raw,
        "--raw",
        "--size",
        "4096",
    ]));
    let out = run(Command::new(&reader).arg(&raw));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("rejected: ready is 0"),
        "{}",
        stdout(&out)
    );
}

/// Headerless segments that cannot hold the record, and names that do not exist, are
/// clean errors: one line and a hint, exit status 1, never a crash.
#[test]
fn raw_reads_of_bad_segments_are_clean_errors() {
    for (what, bytes, needle) in [
        (
            "short",
            &b"0123456789"[..],
            "segment too small: the layout needs at least 24 bytes, the mapping has 10",
        ),
        ("empty", &[][..], "is empty (0 bytes)"),
    ] {
        let name = unique_name("shm_raw_bad");
        let _unlink = Unlink(name.clone());
        std::fs::write(format!("/dev/shm/{name}"), bytes).unwrap();
        let out = demo(&["--backend", "posix", "read", "--name", &name, "--raw"]);
        assert_eq!(out.status.code(), Some(1), "{what}");
        assert!(stderr(&out).contains(needle), "{what}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("error: "), "{what}");
    }
    let name = unique_name("shm_raw_missing");
    let out = demo(&["--backend", "posix", "read", "--name", &name, "--raw"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("segment /{name} not found")),
        "{}",
        stderr(&out)
    );
}
