//! C and C++ programs against the library, as real processes: each program is compiled
//! here (`cc` / `c++`, linked with the static library this crate builds) and run against
//! a Rust peer in this process. Without a compiler the tests say so and pass, except
//! under CI (`CI` set), where a missing compiler fails them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use shm_core::{Broadcast, Channel, ChannelOptions, Error};
use shm_posix::{PosixShm, ShmOptions};

const LONG: Duration = Duration::from_secs(20);

/// A segment name no other test (or run) uses.
fn unique(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "/shm-c-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `target/<profile>`, where the static library is built (once per test process, by
/// cargo: a test build makes only the rlib).
fn library_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps/<test>")
            .to_path_buf();
        let target = profile_dir.parent().expect("target").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "shm-c", "--target-dir"])
            .arg(&target);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p shm-c");
        assert!(status.success(), "cargo build -p shm-c failed");
        assert!(
            profile_dir.join("libshm_c.a").exists(),
            "no libshm_c.a in {profile_dir:?}"
        );
        profile_dir
    })
}

/// `cc` or `c++` if this machine has it; `None` (the test is skipped, with a message)
/// if not, and a failure under CI.
fn compiler(cpp: bool) -> Option<&'static str> {
    let name = if cpp { "c++" } else { "cc" };
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(name);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} not found: the C/C++ tests must run under CI"
    );
    eprintln!("skipped: {name} not found (install a C/C++ compiler to run this test)");
    None
}

/// Compiles `tests/c/<src>` into an executable linked with the static library, once per
/// test process (tests that share a program must not rewrite it while another runs it).
fn build(src: &str) -> Option<PathBuf> {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let cpp = src.ends_with(".cpp");
    compiler(cpp)?;
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, exe)) = built.iter().find(|(s, _)| s == src) {
        return Some(exe.clone());
    }
    let exe = compile(src)?;
    built.push((src.to_owned(), exe.clone()));
    Some(exe)
}

fn compile(src: &str) -> Option<PathBuf> {
    let cpp = src.ends_with(".cpp");
    let cc = compiler(cpp)?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = std::env::temp_dir().join(format!("shm-c-tests-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).expect("output directory");
    let exe = out_dir.join(src.replace('.', "_"));
    let std = if cpp { "-std=c++17" } else { "-std=c11" };
    let output = Command::new(cc)
        .args([
            std,
            "-O1",
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-D_GNU_SOURCE",
        ])
        .arg("-I")
        .arg(dir.join("include"))
        .arg("-I")
        .arg(dir.join("tests/c"))
        .arg(dir.join("tests/c").join(src))
        .arg("-o")
        .arg(&exe)
        .arg(library_dir().join("libshm_c.a"))
        .args(["-lpthread", "-ldl", "-lm"])
        .output()
        .expect("run the compiler");
    assert!(
        output.status.success(),
        "{cc} {src} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(exe)
}

/// Message `seq` of `len` bytes, as `tests/c/common.h` makes and checks it.
fn message(seq: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let mut sum: u64 = 0;
    for (i, b) in buf.iter_mut().enumerate().skip(16) {
        *b = (seq.wrapping_mul(31).wrapping_add(i as u64)) as u8;
        sum = sum
            .wrapping_mul(1_099_511_628_211)
            .wrapping_add(u64::from(*b));
    }
    buf[..8].copy_from_slice(&seq.to_ne_bytes());
    buf[8..16].copy_from_slice(&sum.to_ne_bytes());
    buf
}

/// A program this test started: killed (SIGKILL) and reaped if the test ends before it
/// does, and the segment names it was to make removed then, so a failing test leaves no
/// process and nothing in /dev/shm.
struct Peer {
    child: Option<std::process::Child>,
    names: Vec<String>,
}

impl Peer {
    /// `name` is removed if the test ends before the program does.
    fn makes(mut self, name: &str) -> Self {
        self.names.push(name.to_owned());
        self
    }

    fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        let _ = child.wait();
        for name in &self.names {
            if let Ok(c) = std::ffi::CString::new(name.as_str()) {
                // SAFETY: a NUL-terminated name; shm_unlink reads it and nothing else.
                unsafe { libc::shm_unlink(c.as_ptr()) };
            }
        }
    }
}

fn spawn(exe: &Path, args: &[&str]) -> Peer {
    let child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the program");
    Peer {
        child: Some(child),
        names: Vec::new(),
    }
}

/// Waits for the program to end and returns its stdout; it must exit 0 (its stderr is
/// in the panic otherwise).
fn run_to_end(mut peer: Peer) -> String {
    let child = peer.child.take().expect("not waited for yet");
    let out = child.wait_with_output().expect("wait for the program");
    assert!(
        out.status.success(),
        "the program failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The named segment a peer program makes, once it is there (at most 10 s).
fn made_by_peer(name: &str) -> PosixShm {
    (0..10_000)
        .find_map(|_| match ShmOptions::new(name).open() {
            Ok(m) => Some(m),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(1));
                None
            }
        })
        .unwrap_or_else(|| panic!("the peer never made {name}"))
}

fn rust_channel(name: &str) -> Channel<PosixShm> {
    let opts = ChannelOptions::new().capacity(1 << 16);
    let mem = ShmOptions::new(name)
        .size(opts.segment_len().unwrap())
        .create()
        .unwrap();
    Channel::create(mem, &opts).unwrap()
}

/// A Rust sender, a C (or C++) receiver: every message checksummed and in order, then
/// the close.
fn rust_to(program: &str) {
    let Some(exe) = build(program) else { return };
    let name = unique("to-c");
    let chan = rust_channel(&name);
    let mut tx = chan.sender(0).unwrap();
    let (count, size) = (20_000u64, 256usize);
    let args = [name.as_str(), &count.to_string(), &size.to_string()];
    // The C receiver runs under memcheck too (the C++ one plainly: its exceptions'
    // runtime allocations are not ours to judge).
    let child = if program.ends_with(".c") {
        spawn_memchecked(&exe, &args)
    } else {
        spawn(&exe, &args)
    };
    for i in 0..count {
        tx.send_timeout(&message(i, size), LONG).unwrap();
    }
    drop(tx);
    assert_eq!(run_to_end(child).trim(), format!("received {count}"));
}

#[test]
fn rust_sender_to_c_receiver() {
    rust_to("receiver.c");
}

#[test]
fn rust_sender_to_cpp_receiver() {
    rust_to("receiver.cpp");
}

/// A C publisher (which creates the broadcast), a Rust subscriber: every message whole
/// and in order, then the close; the C side removes the segment's name when it is done.
#[test]
fn c_publisher_to_rust_subscriber() {
    let Some(exe) = build("publisher.c") else {
        return;
    };
    let name = unique("from-c");
    let (count, size) = (20_000u64, 200usize);
    let child = spawn(&exe, &[&name, &count.to_string(), &size.to_string(), "1"]).makes(&name);
    let mem = made_by_peer(&name);
    let mut sub = Broadcast::attach(mem).unwrap().subscriber().unwrap();
    let mut buf = Vec::new();
    for i in 0..count {
        assert_eq!(sub.recv_into_timeout(&mut buf, LONG).unwrap(), size);
        assert_eq!(sub.last_number(), Some(i));
        assert_eq!(buf, message(i, size), "message {i}");
    }
    assert_eq!(
        Error::from(sub.recv_into_timeout(&mut buf, LONG).unwrap_err()),
        Error::Closed
    );
    drop(sub);
    assert_eq!(run_to_end(child).trim(), format!("published {count}"));
    assert!(
        !Path::new(&format!("/dev/shm{name}")).exists(),
        "the C side removed its segment"
    );
}

/// A C sender killed (SIGKILL) in the middle of writing a reserved message: its Rust
/// receiver gets every message it committed, then `PeerDied` with its pid, never the
/// half-written one.
#[test]
fn c_sender_killed_mid_write_is_peer_died() {
    let Some(exe) = build("dies_mid_write.c") else {
        return;
    };
    let name = unique("dies");
    let chan = rust_channel(&name);
    let mut rx = chan.receiver(0).unwrap();
    let (count, size) = (100u64, 64usize);
    let mut peer = spawn(&exe, &[&name, &count.to_string(), &size.to_string()]);
    let pid = peer.id();
    let mut buf = Vec::new();
    for i in 0..count {
        assert_eq!(rx.recv_into_timeout(&mut buf, LONG).unwrap(), size);
        assert_eq!(buf, message(i, size), "message {i}");
    }
    let e = Error::from(rx.recv_into_timeout(&mut buf, LONG).unwrap_err());
    assert_eq!(e, Error::PeerDied { pid });
    let status = peer.child.take().unwrap().wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
}

/// Bad input from C (NULLs, sizes, names, handles freed twice, the wrong kind, a
/// segment made by another program, status values that are none, a panic at the
/// boundary) is refused with its status, never a crash; and valgrind's memcheck finds
/// no invalid access and no definite leak in the same program, where valgrind is here.
#[test]
fn bad_input_from_c_is_refused() {
    let Some(exe) = build("bad_input.c") else {
        return;
    };
    let name = unique("bad");
    let out = run_to_end(spawn(&exe, &[&name]));
    assert_eq!(out.trim(), "bad input refused");
    memcheck(&exe, &[&unique("bad-vg")]);
}

/// valgrind's memcheck, as a command to put before a program: no invalid access and no
/// definite leak, or exit status 99. `None` (with a message) where valgrind is not
/// installed.
fn memcheck_command() -> Option<Command> {
    let has_valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_valgrind {
        eprintln!("valgrind not found: the memcheck run is skipped");
        return None;
    }
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--quiet",
    ]);
    Some(cmd)
}

/// Runs `exe args` alone under memcheck; it must exit 0.
fn memcheck(exe: &Path, args: &[&str]) {
    let Some(mut cmd) = memcheck_command() else {
        return;
    };
    let out = cmd.arg(exe).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "memcheck of {exe:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `exe args` under memcheck (plainly where valgrind is not installed), for a
/// test that runs a peer against it.
fn spawn_memchecked(exe: &Path, args: &[&str]) -> Peer {
    let Some(mut cmd) = memcheck_command() else {
        return spawn(exe, args);
    };
    let child = cmd
        .arg(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start valgrind");
    Peer {
        child: Some(child),
        names: Vec::new(),
    }
}

/// No panic crosses the boundary: the guard every entry point runs in turns one into
/// `SHM_STATUS_PANIC` with the panic's text as the thread's message.
#[test]
fn a_panic_is_a_status_not_an_unwind() {
    let st = shm_c::shm_test_panic();
    assert_eq!(st, shm_c::ShmStatus::Panic);
    // SAFETY: the library's message is a NUL-terminated string, valid until the next
    // call on this thread.
    let msg = unsafe { std::ffi::CStr::from_ptr(shm_c::shm_last_error_message()) };
    assert!(msg.to_string_lossy().contains("shm_test_panic"), "{msg:?}");
}

/// `shm-c/install.sh` into a fresh prefix, then the examples built the way the README
/// says (`cc prog.c $(pkg-config --cflags --libs shm)`, `c++ -std=c++17 ...`) and run:
/// the C publisher and subscriber as two processes, and the C++ ping-pong.
#[test]
fn install_pkg_config_and_the_examples() {
    if compiler(false).is_none() || compiler(true).is_none() {
        return;
    }
    let has_pkg_config = Command::new("pkg-config")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_pkg_config {
        assert!(
            std::env::var_os("CI").is_none(),
            "pkg-config not found: the install test must run under CI"
        );
        eprintln!("skipped: pkg-config not found");
        return;
    }
    let lib = library_dir();
    let profile = lib.file_name().unwrap().to_str().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prefix = std::env::temp_dir().join(format!("shm-c-prefix-{}", std::process::id()));
    let st = Command::new("bash")
        .arg(dir.join("install.sh"))
        .arg(&prefix)
        .env("PROFILE", profile)
        .env("CARGO_TARGET_DIR", lib.parent().unwrap())
        .status()
        .unwrap();
    assert!(st.success(), "install.sh failed");
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "shm"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .unwrap();
    assert!(flags.status.success(), "pkg-config shm");
    let flags = String::from_utf8(flags.stdout).unwrap();
    let compile = |src: &str, cc: &str, std: &str| -> PathBuf {
        let exe = prefix.join(src.replace('.', "_"));
        let out = Command::new(cc)
            .arg(std)
            .arg(dir.join("examples").join(src))
            .args(flags.split_whitespace())
            .arg("-o")
            .arg(&exe)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cc} {src}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        exe
    };
    let publisher = compile("publisher.c", "cc", "-std=c11");
    let subscriber = compile("subscriber.c", "cc", "-std=c11");
    let pingpong = compile("pingpong.cpp", "c++", "-std=c++17");
    let name = unique("example");
    let p = spawn(&publisher, &[&name, "2000"]).makes(&name);
    let s = spawn(&subscriber, &[&name]);
    assert_eq!(run_to_end(s).trim(), "received 2000, missed 0");
    assert_eq!(run_to_end(p).trim(), "published 2000");
    let out = run_to_end(spawn(&pingpong, &["2000", "64"]));
    assert!(
        out.contains("\"round_trips\":2000") && out.contains("\"p50_ns\":"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&prefix);
}

/// The tutorial's record across languages: a Rust `SeqLock<MyData>` holds {100, 876,
/// 8021}; a C program reads exactly that (and is refused with a wrong schema), then
/// stores {i, 2i, 3i} while this process reads: never a mix of two values.
#[test]
fn the_tutorial_record_between_rust_and_c() {
    use shm_core::testing::{MyData, TUTORIAL};
    let Some(exe) = build("record.c") else { return };
    let name = unique("record");
    let mem = ShmOptions::new(&name).size(8192).create().unwrap();
    let lock = shm_core::SeqLock::<MyData, _>::create(mem, &TUTORIAL).unwrap();
    let n = 200_000u64;
    let child = spawn(&exe, &[&name, &n.to_string()]);
    let mut last = 0;
    while last < n {
        let v = lock.load().unwrap();
        if v != TUTORIAL {
            assert_eq!((v.col2, v.col3), (2 * v.col1, 3 * v.col1), "a torn read");
            assert!(v.col1 >= last, "went back");
            last = v.col1;
        }
    }
    assert_eq!(run_to_end(child).trim(), format!("stored {n}"));
}

/// A C client of a Rust service: every response is its own request's (checked by the C
/// side), an error response arrives as `SHM_STATUS_SERVER_ERROR` with its code, and a
/// response larger than the client's buffer is `SHM_STATUS_MESSAGE_TOO_LARGE` with its
/// size.
#[test]
fn c_client_to_rust_service() {
    use shm_core::{Service, ServiceOptions};
    let Some(exe) = build("client.c") else { return };
    let name = unique("svc");
    let opts = ServiceOptions::new().max_request(256).max_response(256);
    let mem = ShmOptions::new(&name)
        .size(opts.segment_len().unwrap())
        .create()
        .unwrap();
    let svc = Service::create(mem, &opts).unwrap();
    let mut server = svc.server().unwrap();
    let n = 2000u64;
    let child = spawn_memchecked(&exe, &[&name, &n.to_string()]);
    for _ in 0..n + 2 {
        let mut req = server.receive_timeout(LONG).unwrap();
        let data = req.take_data();
        if data[..8] == 0xE000_0000u64.to_ne_bytes() {
            req.respond_error(42).unwrap();
        } else {
            req.respond_last(&data).unwrap();
        }
    }
    assert_eq!(run_to_end(child).trim(), format!("called {n}"));
}

/// A Rust client of a C server (which creates the service): every call answered with
/// its own request, whole.
#[test]
fn rust_client_to_c_service() {
    let Some(exe) = build("server.c") else { return };
    let name = unique("csvc");
    let n = 2000u64;
    let child = spawn(&exe, &[&name, &n.to_string()]).makes(&name);
    let mem = made_by_peer(&name);
    let svc = shm_core::Service::attach(mem).unwrap();
    let mut client = svc.client().unwrap();
    for i in 0..n {
        let req = message(i, 100);
        let resp = client.call_timeout(&req, LONG).unwrap();
        assert_eq!(resp.data, req, "call {i}");
        assert!(resp.last);
    }
    drop(client);
    assert_eq!(run_to_end(child).trim(), format!("served {n}"));
}

/// Waiting on many things from C: a channel receiver, a broadcast subscriber, an event
/// listener and an interval in one wait set; every message and every id the Rust side
/// sends arrives.
#[test]
fn a_c_wait_set_over_a_channel_a_broadcast_and_an_event() {
    c_wait_set("wait");
}

/// As above, through the set's fd with poll(2) and a try, as an event loop waits.
#[test]
fn a_c_wait_set_through_its_fd() {
    c_wait_set("fd");
}

fn c_wait_set(mode: &str) {
    use shm_core::{BroadcastOptions, Event, EventOptions};
    use std::io::{BufRead, BufReader, Read};
    let Some(exe) = build("waitset.c") else {
        return;
    };
    let name = unique("ws");
    let chan = rust_channel(&format!("{name}-chan"));
    let bopts = BroadcastOptions::new().slots(64).max_message(256);
    let bmem = ShmOptions::new(format!("{name}-bc"))
        .size(bopts.segment_len().unwrap())
        .create()
        .unwrap();
    let bc = Broadcast::create(bmem, &bopts).unwrap();
    let eopts = EventOptions::new().max_ids(1024);
    let emem = ShmOptions::new(format!("{name}-ev"))
        .size(eopts.segment_len().unwrap())
        .create()
        .unwrap();
    let ev = Event::create(emem, &eopts).unwrap();
    let (mut tx, mut publisher, mut notifier) = (
        chan.sender(0).unwrap(),
        bc.publisher().unwrap(),
        ev.notifier().unwrap(),
    );
    let n = 500u64;
    let mut peer = spawn(&exe, &[&name, &n.to_string(), mode]);
    let mut out = BufReader::new(peer.child.as_mut().unwrap().stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "joined");
    for i in 0..n {
        tx.send_timeout(&message(i, 100), LONG).unwrap();
        publisher.publish_timeout(&message(i, 100), LONG).unwrap();
        notifier.notify(i).unwrap();
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = peer.child.take().unwrap().wait_with_output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(rest.trim(), format!("waited {n}"));
}

/// A Rust client of a C++ server (shm.hpp: Service, Server, Request, WaitSet with an
/// interval), which creates the service: every call answered with its own request,
/// first byte flipped.
#[test]
fn rust_client_to_cpp_service_waiting_in_a_wait_set() {
    let Some(exe) = build("server.cpp") else {
        return;
    };
    let name = unique("cppsvc");
    let n = 1000u64;
    let child = spawn(&exe, &[&name, &n.to_string()]).makes(&name);
    let mem = made_by_peer(&name);
    let svc = shm_core::Service::attach(mem).unwrap();
    let mut client = svc.client().unwrap();
    for i in 0..n {
        let req = message(i, 100);
        let mut want = req.clone();
        want[0] ^= 0xFF;
        assert_eq!(
            client.call_timeout(&req, LONG).unwrap().data,
            want,
            "call {i}"
        );
    }
    drop(client);
    assert_eq!(run_to_end(child).trim(), format!("served {n}"));
}

/// Anonymous memory across fork, from C: the child takes its end from the inherited
/// handle and gets every message the parent sends.
#[test]
fn anonymous_memory_across_fork_from_c() {
    let Some(exe) = build("anon_fork.c") else {
        return;
    };
    // Not under valgrind: it does not emulate mremap with an old size of 0, which is how
    // anonymous shared memory is mapped a second time (the channel's own mapping).
    assert_eq!(run_to_end(spawn(&exe, &["5000"])).trim(), "forked 5000");
}

/// A memfd from C to Rust: the C program lays out a channel in a sealed memfd, serves
/// its fd over a Unix socket, and sends; the Rust side connects, attaches, and gets
/// every message, then the close.
#[test]
fn a_memfd_from_c_to_rust() {
    let Some(exe) = build("memfd_server.c") else {
        return;
    };
    let socket =
        std::env::temp_dir().join(format!("{}.sock", unique("memfd").trim_start_matches('/')));
    let path = socket.to_str().unwrap().to_owned();
    let n = 5000u64;
    let child = spawn(&exe, &[&path, &n.to_string()]);
    // The socket appears once the C side serves: connect when it is there.
    let mem = (0..10_000)
        .find_map(|_| match shm_memfd::connect_timeout(&socket, LONG) {
            Ok(m) => Some(m),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(1));
                None
            }
        })
        .expect("the C side served its memfd");
    let chan = Channel::attach(mem).unwrap();
    let mut rx = chan.receiver(0).unwrap();
    let mut buf = Vec::new();
    for i in 0..n {
        assert_eq!(rx.recv_into_timeout(&mut buf, LONG).unwrap(), 200);
        assert_eq!(buf, message(i, 200), "message {i}");
    }
    assert_eq!(
        Error::from(rx.recv_into_timeout(&mut buf, LONG).unwrap_err()),
        Error::Closed
    );
    assert_eq!(run_to_end(child).trim(), format!("served {n}"));
    assert!(!socket.exists(), "the C side removed its socket");
}

/// The tutorial's record read from C, both ways: a Rust `Segment<MyData>` (the schema
/// checked, a wrong one refused) and a segment made the tutorial's way with no header
/// (read and written through `shm_segment_open_foreign`).
#[test]
fn the_tutorial_record_from_c_typed_and_foreign() {
    use shm_core::testing::{MyData, TUTORIAL};
    let Some(exe) = build("tutorial.c") else {
        return;
    };
    let name = unique("tutorial");
    let mem = ShmOptions::new(&name).size(8192).create().unwrap();
    let _seg = shm_core::Segment::<MyData, _>::create(mem, &TUTORIAL).unwrap();
    let peer = spawn(&exe, &[&name]).makes(&format!("{name}-raw"));
    assert_eq!(run_to_end(peer).trim(), "tutorial ok");
}
