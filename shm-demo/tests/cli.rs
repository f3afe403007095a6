//! The built `shm-demo` binary, run as a user would: exit status, stdout and stderr.

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use shm_core::testing::{dev_shm_entries, unique_name};

const BIN: &str = env!("CARGO_BIN_EXE_shm-demo");

fn demo(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run shm-demo");
    check_no_crash(&out, args);
    out
}

/// Never a panic, a backtrace or a death by signal.
fn check_no_crash(out: &Output, args: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.signal().is_none(),
        "{args:?} died by signal {:?}",
        out.status.signal()
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{args:?} panicked: {err}"
    );
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a failure with `code` whose stderr is one or two lines containing `needle`.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in stderr: {err}");
    if code == 1 {
        let lines = err.lines().count();
        assert!(
            (1..=2).contains(&lines),
            "one or two lines on stderr, got {lines}: {err}"
        );
        assert!(err.starts_with("error: "), "{err}");
    }
}

fn no_demo_segments_of(pid: u32) {
    let left = dev_shm_entries(&format!("shm-demo-{pid}-"));
    assert!(left.is_empty(), "leaked segments: {left:?}");
}

#[test]
fn one_command_runs_every_backend_and_prints_a_table() {
    let child = Command::new(BIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    check_no_crash(&out, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for b in ["== posix", "== anon", "== memfd"] {
        assert!(text.contains(b), "{text}");
    }
    assert_eq!(
        text.matches("read MyData { col1: 100, col2: 876, col3: 8021 }")
            .count(),
        3,
        "{text}"
    );
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("backend"))
        .collect();
    assert_eq!(table.len(), 4, "{text}");
    // Each backend's reader is another process than its writer (spawned or forked).
    let pid_of = |who: &str, backend: &str| -> u32 {
        let section = text
            .split(&format!("== {backend}"))
            .nth(1)
            .unwrap_or_default();
        let line = section
            .lines()
            .find(|l| l.starts_with(who))
            .unwrap_or_else(|| panic!("no {who} line for {backend}: {text}"));
        line.split_whitespace()
            .nth(2)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"))
    };
    for b in ["posix", "anon", "memfd"] {
        let (w, r) = (pid_of("writer", b), pid_of("reader", b));
        assert_eq!(w, pid, "{b}: the writer is the demo process");
        assert_ne!(r, w, "{b}: the reader ran in the writer's process");
    }
    for row in &table[1..] {
        assert!(
            row.contains("4.00 GiB") && row.contains("100 876 8021") && row.ends_with("yes"),
            "{row}"
        );
    }
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    no_demo_segments_of(pid);
}

#[test]
fn json_mode_prints_one_object_per_backend() {
    let out = demo(&["--json", "--size", "64MiB"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, b) in lines.iter().zip(["posix", "anon", "memfd"]) {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        assert!(line.contains(&format!("\"backend\":\"{b}\"")), "{line}");
        assert!(
            line.contains("\"col1\":100,\"col2\":876,\"col3\":8021"),
            "{line}"
        );
        assert!(line.contains("\"ok\":true"), "{line}");
        assert!(
            line.contains(&format!("\"mapped_bytes\":{}", 64 << 20)),
            "{line}"
        );
        let resident: u64 = field(line, "resident_bytes");
        assert!(
            resident > 0 && resident <= 128 * 1024,
            "only touched pages are resident: {line}"
        );
    }
}

fn field(line: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let rest = &line[line.find(&pat).unwrap() + pat.len()..];
    rest[..rest.find([',', '}']).unwrap()].parse().unwrap()
}

#[test]
fn each_backend_alone_with_sizes() {
    for (b, size, shown) in [
        ("posix", "4096", "4.00 KiB"),
        ("anon", "64MiB", "64.00 MiB"),
        ("memfd", "1GiB", "1.00 GiB"),
    ] {
        let out = demo(&["--backend", b, "--size", size]);
        assert!(out.status.success(), "{b}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains(&format!("== {b}")) && text.contains(&format!("mapped {shown}")),
            "{text}"
        );
        assert!(
            !text.contains("backend "),
            "no table for one backend: {text}"
        );
    }
}

fn wait_for_line(child: &mut Child, needle: &str) -> String {
    let stdout = child.stdout.as_mut().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("{needle:?} never printed; got {seen}");
        }
        seen.push_str(&line);
        if line.contains(needle) {
            return seen;
        }
    }
}

/// `shm-demo --backend posix write --name NAME --hold`, running.
fn holding_writer(name: &str) -> Child {
    Command::new(BIN)
        .args(["--backend", "posix", "write", "--name", name, "--hold"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill on our own unreaped child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn two_terminals_posix_with_hold_and_sigterm() {
    let name = unique_name("/shm-demo-test");
    let mut writer = holding_writer(&name);
    let seen = wait_for_line(&mut writer, "holding");
    assert!(
        seen.contains(&format!(
            "wrote MyData {{ col1: 100, col2: 876, col3: 8021 }} to {name}"
        )),
        "{seen}"
    );
    let out = demo(&["--backend", "posix", "read", "--name", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("read MyData {{ col1: 100, col2: 876, col3: 8021 }} from {name}\n")
    );
    let out = demo(&["--backend", "posix", "read", "--name", &name, "--json"]);
    assert_eq!(
        stdout(&out).trim(),
        format!("{{\"source\":\"{name}\",\"col1\":100,\"col2\":876,\"col3\":8021}}")
    );
    signal(&writer, libc::SIGTERM);
    let out = writer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("removed {name}")));
    assert!(
        dev_shm_entries(&name[1..]).is_empty(),
        "SIGTERM must unlink"
    );
}

#[test]
fn writer_without_hold_leaves_it_for_read_unlink() {
    let name = unique_name("/shm-demo-test");
    let out = demo(&[
        "--backend",
        "posix",
        "write",
        "--name",
        &name,
        "--size",
        "64MiB",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("--unlink"));
    assert_eq!(dev_shm_entries(&name[1..]).len(), 1);
    let out = demo(&["--backend", "posix", "read", "--name", &name, "--unlink"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dev_shm_entries(&name[1..]).is_empty());
}

#[test]
fn writer_ctrl_c_unlinks() {
    let name = unique_name("/shm-demo-test");
    let mut writer = holding_writer(&name);
    wait_for_line(&mut writer, "holding");
    signal(&writer, libc::SIGINT);
    let out = writer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dev_shm_entries(&name[1..]).is_empty(), "Ctrl-C must unlink");
}

fn socket_path() -> PathBuf {
    std::env::temp_dir().join(unique_name("shm-demo-test") + ".sock")
}

#[test]
fn two_terminals_memfd_serve_and_connect() {
    let path = socket_path();
    let p = path.to_str().unwrap();
    let mut server = Command::new(BIN)
        .args([
            "--backend",
            "memfd",
            "serve",
            "--socket",
            p,
            "--size",
            "64MiB",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut server, "serving a sealed");
    for _ in 0..2 {
        let out = demo(&["--backend", "memfd", "connect", "--socket", p]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out),
            format!("read MyData {{ col1: 100, col2: 876, col3: 8021 }} from {p}\n")
        );
    }
    signal(&server, libc::SIGINT);
    let out = server.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!path.exists(), "the socket file must be removed");
}

#[test]
fn anon_has_no_two_terminal_mode() {
    for args in [
        ["--backend", "anon", "read", "--name", "/x"],
        ["--backend", "anon", "write", "--name", "/x"],
    ] {
        let out = demo(&args);
        assert_fails(&out, 2, "only a forked child can see it");
    }
    let out = demo(&["--backend", "anon", "connect", "--socket", "/tmp/x"]);
    assert_fails(&out, 2, "only a forked child");
}

#[test]
fn usage_errors_exit_2() {
    assert_fails(&demo(&["--size", "4XB"]), 2, "unknown size unit");
    assert_fails(&demo(&["--backend", "tcp"]), 2, "invalid value 'tcp'");
    assert_fails(
        &demo(&["--backend", "unix"]),
        2,
        "needs a shared-memory backend",
    );
    assert_fails(
        &demo(&["--backend", "memfd", "read", "--name", "/x"]),
        2,
        "use --backend posix",
    );
    assert_fails(&demo(&["pingpong"]), 2, "pingpong needs --backend");
}

#[test]
fn help_on_every_subcommand_has_an_example() {
    for sub in [
        &[][..],
        &["write"],
        &["read"],
        &["serve"],
        &["connect"],
        &["pingpong"],
        &["cleanup"],
        &["service", "run"],
        &["service", "serve"],
        &["service", "call"],
    ] {
        let mut args: Vec<&str> = sub.to_vec();
        args.push("--help");
        let out = demo(&args);
        assert!(out.status.success());
        let text = stdout(&out);
        assert!(text.contains("Example"), "{args:?}: {text}");
    }
}

#[test]
fn missing_and_badly_named_segments() {
    let name = unique_name("/shm-demo-missing");
    let out = demo(&["--backend", "posix", "read", "--name", &name]);
    assert_fails(&out, 1, &format!("segment {name} not found"));
    assert!(stderr(&out).contains("hint: start a writer first"));
    // A name without its leading slash means what glibc takes it to mean, and errors
    // show the normalised name.
    let bare = unique_name("shm-demo-bare");
    let out = demo(&["--backend", "posix", "read", "--name", &bare]);
    assert_fails(&out, 1, &format!("segment /{bare} not found"));
    let out = demo(&["--backend", "posix", "write", "--name", "/a/b"]);
    assert_fails(&out, 1, "invalid segment name");
}

#[test]
fn files_in_dev_shm_that_are_not_ours() {
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    for (what, bytes, needle) in [
        ("random", &random[..], "not an shm segment: expected magic"),
        ("empty", &[][..], "is empty (0 bytes)"),
        (
            "ten",
            &b"0123456789"[..],
            "segment too small: the layout needs at least 128 bytes, the mapping has 10",
        ),
    ] {
        let name = unique_name("/shm-demo-junk");
        std::fs::write(format!("/dev/shm{name}"), bytes).unwrap();
        let out = demo(&["--backend", "posix", "read", "--name", &name]);
        assert_fails(&out, 1, needle);
        assert!(stderr(&out).contains("hint:"), "{what}: {}", stderr(&out));
        std::fs::remove_file(format!("/dev/shm{name}")).unwrap();
    }
}

#[test]
fn truncated_segment_and_schema_mismatch() {
    let name = unique_name("/shm-demo-trunc");
    let out = demo(&[
        "--backend",
        "posix",
        "write",
        "--name",
        &name,
        "--size",
        "1MiB",
    ]);
    assert!(out.status.success());
    let out = demo(&[
        "--backend",
        "posix",
        "read",
        "--name",
        &name,
        "--schema",
        "v2",
    ]);
    assert_fails(
        &out,
        1,
        r#"schema mismatch: segment holds "MyData" v1 (24 bytes, align 8), caller expects "MyData" v2 (24 bytes, align 8)"#,
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{name}"))
        .unwrap()
        .set_len(4096)
        .unwrap();
    let out = demo(&["--backend", "posix", "read", "--name", &name, "--unlink"]);
    assert_fails(
        &out,
        1,
        "segment truncated: its header claims 1048576 bytes, the mapping holds 4096",
    );
    assert_eq!(
        dev_shm_entries(&name[1..]).len(),
        1,
        "a failed read must not unlink"
    );
    std::fs::remove_file(format!("/dev/shm{name}")).unwrap();
}

#[test]
fn socket_that_is_not_there() {
    let path = socket_path();
    let out = demo(&[
        "--backend",
        "memfd",
        "connect",
        "--socket",
        path.to_str().unwrap(),
    ]);
    assert_fails(&out, 1, "connect failed");
    assert!(stderr(&out).contains("hint: start a server first"));
}

/// A hostile server: accepts the demo's connection and sends `fds` (or nothing).
fn hostile_server(send: impl FnOnce(&std::os::unix::net::UnixStream) + Send) -> Output {
    let path = socket_path();
    let listener = UnixListener::bind(&path).unwrap();
    let p = path.to_str().unwrap().to_owned();
    let out = std::thread::scope(|s| {
        let client = s.spawn(|| demo(&["--backend", "memfd", "connect", "--socket", &p]));
        let (stream, _) = listener.accept().unwrap();
        send(&stream);
        drop(stream);
        client.join().unwrap()
    });
    std::fs::remove_file(&path).unwrap();
    out
}

#[test]
fn hostile_servers_get_typed_errors() {
    let unsealed = memfd::MemfdOptions::default()
        .allow_sealing(true)
        .create("x")
        .unwrap();
    unsealed.as_file().set_len(4096).unwrap();
    let out = hostile_server(|s| shm_memfd::send_fds(s, &[unsealed.as_file().as_fd()]).unwrap());
    assert_fails(&out, 1, "memfd is not sealed against shrinking and growing");

    let (r, _w) = std::io::pipe().unwrap();
    let out = hostile_server(|s| shm_memfd::send_fds(s, &[r.as_fd()]).unwrap());
    assert_fails(&out, 1, "expected a memfd, found a pipe");

    let file = std::fs::File::open("/etc/hostname")
        .or_else(|_| std::fs::File::open("/etc/passwd"))
        .unwrap();
    let out = hostile_server(|s| shm_memfd::send_fds(s, &[file.as_fd()]).unwrap());
    assert_fails(&out, 1, "expected a memfd, found a regular file");

    let out = hostile_server(|s| shm_memfd::send_fds(s, &[]).unwrap());
    assert_fails(&out, 1, "expected one fd in the message, found none");

    let good = shm_memfd::MemfdOptions::new().create().unwrap();
    let out = hostile_server(|s| shm_memfd::send_fds(s, &[good.as_fd(), good.as_fd()]).unwrap());
    assert_fails(&out, 1, "expected one fd in the message, found 2");

    let out = hostile_server(|_| {});
    assert_fails(
        &out,
        1,
        "the peer closed the connection without sending an fd",
    );
}

#[test]
fn pingpong_json_last_line_has_the_fields() {
    for b in ["posix", "anon", "memfd", "unix", "pipe"] {
        let out = demo(&[
            "--backend",
            b,
            "pingpong",
            "--round-trips",
            "2000",
            "--json",
        ]);
        assert!(out.status.success(), "{b}: {}", stderr(&out));
        let text = stdout(&out);
        let last = text.lines().last().unwrap();
        assert!(last.contains(&format!("\"backend\":\"{b}\"")), "{last}");
        assert_eq!(field(last, "round_trips"), 2000, "{last}");
        let (p50, p99, p999, max) = (
            field(last, "p50_ns"),
            field(last, "p99_ns"),
            field(last, "p999_ns"),
            field(last, "max_ns"),
        );
        assert!(
            0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
            "{last}"
        );
    }
}

#[test]
fn cleanup_removes_only_stale_segments() {
    let prefix = unique_name("/shm-demo-stale");
    let out = demo(&[
        "--backend",
        "posix",
        "write",
        "--name",
        &format!("{prefix}-a"),
    ]);
    assert!(out.status.success());
    let out = demo(&["cleanup", "--prefix", &prefix]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("removed stale segment {prefix}-a")),
        "{}",
        stdout(&out)
    );
    assert!(dev_shm_entries(&prefix[1..]).is_empty());
}

#[test]
fn stream_json_reports_verified_throughput_on_every_backend() {
    for b in ["posix", "anon", "memfd", "unix", "floor"] {
        let out = demo(&[
            "--backend",
            b,
            "stream",
            "--messages",
            "3000",
            "--size",
            "1000",
            "--json",
        ]);
        assert!(out.status.success(), "{b}: {}", stderr(&out));
        let text = stdout(&out);
        let last = text.lines().last().unwrap();
        for key in [
            "\"messages\":3000",
            "\"size\":1000",
            "\"verified\":true",
            &format!("\"backend\":\"{b}\""),
        ] {
            assert!(last.contains(key), "{b}: {key} missing in {last}");
        }
        for key in ["seconds", "msgs_per_s", "gib_per_s"] {
            assert!(last.contains(&format!("\"{key}\":")), "{last}");
        }
    }
    // 8-byte messages carry the sequence number alone, and are still verified in order.
    for b in ["memfd", "floor", "unix"] {
        let out = demo(&[
            "--backend",
            b,
            "stream",
            "--messages",
            "5000",
            "--size",
            "8",
            "--json",
        ]);
        assert!(out.status.success(), "{b}: {}", stderr(&out));
        assert!(stdout(&out).contains("\"verified\":true"), "{b}");
    }
    let out = demo(&["--backend", "posix", "stream", "--size", "7"]);
    assert_fails(&out, 1, "--size 7 is too small");
    let out = demo(&["--backend", "pipe", "stream"]);
    assert_fails(&out, 2, "stream needs --backend");
}

#[test]
fn pingpong_with_payloads_on_every_backend() {
    for b in ["memfd", "anon", "posix", "unix", "pipe", "floor"] {
        for size in ["8", "4096", "65536"] {
            let out = demo(&[
                "--backend",
                b,
                "pingpong",
                "--round-trips",
                "2000",
                "--size",
                size,
                "--json",
            ]);
            assert!(out.status.success(), "{b} {size}: {}", stderr(&out));
            let text = stdout(&out);
            for key in [
                format!("\"size\":{size}"),
                "\"p50_ns\":".to_owned(),
                "\"p9999_ns\":".to_owned(),
            ] {
                assert!(text.contains(&key), "{b} {size}: {key} in {text}");
            }
        }
    }
    let out = demo(&["--backend", "memfd", "pingpong", "--size", "4"]);
    assert_fails(&out, 1, "--size 4 is out of range");
}

#[test]
fn pingpong_block_mode_and_floor() {
    for args in [
        &[
            "--backend",
            "memfd",
            "pingpong",
            "--round-trips",
            "3000",
            "--wait",
            "block",
            "--json",
        ][..],
        &[
            "--backend",
            "floor",
            "pingpong",
            "--round-trips",
            "3000",
            "--json",
        ],
    ] {
        let out = demo(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let last = stdout(&out).lines().last().unwrap().to_owned();
        assert_eq!(field(&last, "round_trips"), 3000, "{last}");
        assert!(field(&last, "p50_ns") > 0, "{last}");
    }
}

/// `--paired`: the channel and the floor in one pair of processes; both p50s and their
/// ratio are reported, with the machine; other backends are refused with a hint.
#[test]
fn pingpong_paired_with_the_floor() {
    let out = demo(&[
        "--backend",
        "anon",
        "pingpong",
        "--paired",
        "--round-trips",
        "20000",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let last = stdout(&out).lines().last().unwrap().to_owned();
    assert_eq!(field(&last, "round_trips"), 20000, "{last}");
    let (p50, f50) = (field(&last, "p50_ns"), field(&last, "floor_p50_ns"));
    assert!(p50 > 0 && f50 > 0, "{last}");
    assert!(field(&last, "floor_p99_ns") >= f50, "{last}");
    let ratio: f64 = last
        .split("\"ratio_p50\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|r| r.parse().ok())
        .expect("ratio_p50");
    assert!((ratio - p50 as f64 / f50 as f64).abs() < 1e-3, "{last}");
    assert!(
        last.contains("\"cpu\":") && last.contains("\"cores\":"),
        "{last}"
    );
    let out = demo(&["--backend", "posix", "pingpong", "--paired"]);
    assert_fails(
        &out,
        1,
        "--paired measures 8-byte spinning round trips on anon memory",
    );
}

#[test]
fn idle_reports_the_cpu_of_a_blocked_receiver() {
    let out = demo(&["--backend", "anon", "idle", "--seconds", "1", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let last = stdout(&out).lines().last().unwrap().to_owned();
    for key in [
        "\"backend\":\"anon\"",
        "\"cpu_percent\":",
        "\"cpu_seconds\":",
        "\"seconds\":",
    ] {
        assert!(last.contains(key), "{key} missing: {last}");
    }
}

#[test]
fn broadcast_json_on_every_backend_and_mode() {
    for (b, lossy) in [
        ("posix", false),
        ("anon", false),
        ("memfd", false),
        ("unix", false),
        ("memfd", true),
        ("anon", true),
    ] {
        let mut args = vec![
            "--backend",
            b,
            "broadcast",
            "--subscribers",
            "3",
            "--messages",
            "20000",
            "--size",
            "100",
            "--json",
        ];
        if lossy {
            args.push("--lossy");
        }
        let out = demo(&args);
        assert!(out.status.success(), "{b} {lossy}: {}", stderr(&out));
        let text = stdout(&out);
        let mode = if lossy { "lossy" } else { "reliable" };
        for key in [
            format!("\"backend\":\"{b}\""),
            format!("\"mode\":\"{mode}\""),
            "\"subscribers\":3".to_owned(),
            "\"messages\":20000".to_owned(),
            "\"size\":100".to_owned(),
            "\"verified\":true".to_owned(),
            "\"msgs_per_s\":".to_owned(),
            "\"publisher_msgs_per_s\":".to_owned(),
            "\"missed\":".to_owned(),
        ] {
            assert!(text.contains(&key), "{b} {lossy}: {key} in {text}");
        }
        if !lossy {
            assert!(
                text.contains("\"missed\":0"),
                "reliable misses nothing: {text}"
            );
        }
    }
    let out = demo(&["--backend", "pipe", "broadcast"]);
    assert_fails(&out, 2, "broadcast needs --backend");
    let out = demo(&["--backend", "unix", "broadcast", "--lossy"]);
    assert_fails(&out, 1, "reliable only");
    let out = demo(&["--backend", "memfd", "broadcast", "--subscribers", "0"]);
    assert_fails(&out, 1, "--subscribers must be 1 to 64");
}

/// Zero-copy publish across processes: the publisher writes each message into its slot
/// (reserve, write, commit), subscriber processes verify every message's order and
/// checksum; reliable misses nothing, lossy counts what it missed.
#[test]
fn broadcast_zero_copy_across_processes() {
    for (b, lossy) in [("posix", false), ("memfd", false), ("anon", true)] {
        let mut args = vec![
            "--backend",
            b,
            "broadcast",
            "--subscribers",
            "2",
            "--messages",
            "20000",
            "--size",
            "4KiB",
            "--zero-copy",
            "--json",
        ];
        if lossy {
            args.push("--lossy");
        }
        let out = demo(&args);
        assert!(out.status.success(), "{b} {lossy}: {}", stderr(&out));
        let text = stdout(&out);
        for key in ["\"zero_copy\":true", "\"verified\":true", "\"gib_per_s\":"] {
            assert!(text.contains(key), "{b} {lossy}: {key} in {text}");
        }
        if !lossy {
            assert!(text.contains("\"missed\":0"), "{b}: {text}");
        }
    }
    let out = demo(&["--backend", "unix", "broadcast", "--zero-copy"]);
    assert_fails(&out, 1, "--zero-copy publishes into a broadcast segment");
}

#[test]
fn idle_broadcast_subscriber_reports_its_cpu() {
    let out = demo(&[
        "--backend",
        "memfd",
        "idle",
        "--seconds",
        "1",
        "--broadcast",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\"what\":\"broadcast\""), "{text}");
    assert!(text.contains("\"cpu_percent\":"), "{text}");
}

#[test]
fn wait_async_on_pingpong_stream_and_unix() {
    for b in ["memfd", "anon", "posix", "unix"] {
        let out = demo(&[
            "--backend",
            b,
            "pingpong",
            "--wait",
            "async",
            "--round-trips",
            "3000",
            "--json",
        ]);
        assert!(out.status.success(), "{b}: {}", stderr(&out));
        assert!(stdout(&out).contains("\"wait\":\"async\""), "{b}");
        let out = demo(&[
            "--backend",
            b,
            "stream",
            "--wait",
            "async",
            "--messages",
            "20000",
            "--size",
            "200",
            "--json",
        ]);
        assert!(out.status.success(), "{b}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("\"wait\":\"async\""), "{b}: {text}");
        assert!(text.contains("\"verified\":true"), "{b}: {text}");
    }
    let out = demo(&[
        "idle",
        "--async-receivers",
        "300",
        "--seconds",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\"receivers\":300"), "{text}");
    assert!(text.contains("\"bytes_per_receiver\":"), "{text}");
}

#[test]
fn publish_and_subscribe_by_name_in_two_processes() {
    let name = unique_name("/shm-demo-pub");
    let mut publisher = Command::new(BIN)
        .args([
            "--backend",
            "posix",
            "publish",
            "--name",
            &name,
            "--messages",
            "20000",
            "--size",
            "100",
            "--wait-subscribers",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut publisher, "publishing");
    let out = demo(&["--backend", "posix", "subscribe", "--name", &name, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(line.contains("\"got\":20000"), "{line}");
    assert!(
        line.contains("\"missed\":0") && line.contains("\"end\":\"closed\""),
        "{line}"
    );
    let out = publisher.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        dev_shm_entries(&name[1..]).is_empty(),
        "the publisher removes it"
    );
    // Only posix names a segment.
    let out = demo(&["--backend", "anon", "subscribe", "--name", &name]);
    assert_fails(&out, 2, "use --backend posix");
}

#[test]
fn send_and_receive_by_name_in_two_processes() {
    let name = unique_name("/shm-demo-chan");
    let mut sender = Command::new(BIN)
        .args([
            "--backend",
            "posix",
            "send",
            "--name",
            &name,
            "--messages",
            "20000",
            "--size",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut sender, "sending");
    let out = demo(&["--backend", "posix", "receive", "--name", &name, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(
        line.contains("\"got\":20000") && line.contains("\"end\":\"closed\""),
        "{line}"
    );
    let out = sender.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        dev_shm_entries(&name[1..]).is_empty(),
        "the sender removes it"
    );
}

#[test]
fn event_and_waitset_json_on_every_backend() {
    for b in ["posix", "anon", "memfd"] {
        let out = demo(&[
            "--backend",
            b,
            "event",
            "--notifiers",
            "2",
            "--events",
            "3000",
            "--gap-us",
            "20",
            "--json",
        ]);
        assert!(out.status.success(), "{b}: {}", stderr(&out));
        let text = stdout(&out);
        for key in [
            format!("\"backend\":\"{b}\""),
            "\"verified\":true".to_owned(),
            "\"events\":3000".to_owned(),
            "\"notifiers\":2".to_owned(),
            "\"p50_ns\":".to_owned(),
            "\"p99_ns\":".to_owned(),
            "\"cpu\":".to_owned(),
        ] {
            assert!(text.contains(&key), "{b}: {key} in {text}");
        }
        let out = demo(&[
            "--backend",
            b,
            "waitset",
            "--subscribers",
            "3",
            "--messages",
            "3000",
            "--json",
        ]);
        assert!(out.status.success(), "{b}: {}", stderr(&out));
        let text = stdout(&out);
        for key in [
            "\"verified\":true",
            "\"subscribers\":3",
            "\"messages\":9000",
            "\"events\":100",
        ] {
            assert!(text.contains(key), "{b}: {key} in {text}");
        }
    }
}

/// With `--json`, a failure is a JSON object on stdout too (a script reading one object
/// per line never gets plain text), besides the text on stderr and the exit status.
#[test]
fn json_failures_are_json() {
    let missing = unique_name("/shm-demo-nosuch");
    for args in [
        vec!["inspect", missing.as_str(), "--json"],
        vec!["--json", "hz", missing.as_str(), "--seconds", "1"],
        vec!["--backend", "unix", "event", "--json"],
    ] {
        let out = demo(&args);
        assert!(!out.status.success(), "{args:?}");
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {text}");
        assert!(
            lines[0].starts_with("{\"error\":\"") && lines[0].ends_with("\"}"),
            "{args:?}: {text}"
        );
        assert!(stderr(&out).contains("error:"), "{args:?}");
    }
}
