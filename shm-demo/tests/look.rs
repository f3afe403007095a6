//! `ls`, `inspect`, `hz` and `cleanup` against real processes: live segments listed with
//! their kind, pids and positions; what `kill -9` leaves is stale, named by
//! `cleanup --dry-run` and removed by `cleanup`, never a live one; garbage, a FIFO, a
//! truncated segment and another user's file are reported without hanging; `hz` reports a
//! rate within the producer's own count. Every run of the demo is bounded by a watchdog.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shm_core::testing::{children_of, dev_shm_entries, eventually, unique_name, Reaped};

const BIN: &str = env!("CARGO_BIN_EXE_shm-demo");
const BOUND: Duration = Duration::from_secs(30);

/// Runs the demo to its end, at most BOUND (a hang fails the test, not the suite).
fn demo(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shm-demo");
    let end = Instant::now() + BOUND;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shm-demo {args:?} did not finish within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "shm-demo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn ls() -> Vec<Value> {
    let all = json_lines(&demo(&["ls", "--json"]));
    for v in &all {
        for k in [
            "name",
            "kind",
            "size",
            "record",
            "creator_pid",
            "state",
            "peers",
        ] {
            assert!(v.get(k).is_some(), "ls --json lacks {k}: {v}");
        }
        assert!(v["peers"].is_array(), "{v}");
    }
    all
}

fn entry<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

fn start(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The segment a running demo made, and its children once they are up.
fn segment_of(child: &Child, children: usize) -> (String, Vec<u32>) {
    let prefix = format!("shm-demo-{}-", child.id());
    eventually("the demo's segment and children", BOUND, || {
        !dev_shm_entries(&prefix).is_empty() && children_of(child.id()).len() >= children
    });
    (
        format!("/{}", dev_shm_entries(&prefix)[0]),
        children_of(child.id()),
    )
}

fn pids(v: &Value) -> Vec<u32> {
    let mut p: Vec<u32> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    p.sort_unstable();
    p
}

#[test]
fn live_segments_are_listed_then_stale_after_kill_9_and_cleaned_up() {
    let mut stream = start(&[
        "--backend",
        "posix",
        "stream",
        "--messages",
        "4000000000",
        "--size",
        "64",
    ]);
    let mut bcast = start(&[
        "--backend",
        "posix",
        "broadcast",
        "--subscribers",
        "2",
        "--messages",
        "4000000000",
        "--size",
        "64",
    ]);
    let (chan_name, chan_kids) = segment_of(&stream, 1);
    let (b_name, b_kids) = segment_of(&bcast, 2);
    std::thread::sleep(Duration::from_millis(300));

    let all = ls();
    let c = entry(&all, &chan_name);
    assert_eq!(c["kind"], "channel");
    assert_eq!(c["state"], "live");
    assert_eq!(c["record"], Value::Null);
    assert_eq!(c["creator_pid"], stream.id());
    let mut want = vec![stream.id()];
    want.extend(&chan_kids);
    want.sort_unstable();
    assert_eq!(pids(&c["peers"]), want, "channel ends");
    let b = entry(&all, &b_name);
    assert_eq!(b["kind"], "broadcast");
    assert_eq!(b["state"], "live");
    let mut want = vec![bcast.id()];
    want.extend(&b_kids);
    want.sort_unstable();
    assert_eq!(pids(&b["peers"]), want, "publisher and subscribers");

    // inspect: positions and lines.
    let i = &json_lines(&demo(&["inspect", &b_name, "--json"]))[0];
    assert_eq!(i["publisher_pid"], bcast.id());
    assert_eq!(i["publisher_alive"], true);
    let tail = i["tail"].as_u64().unwrap();
    assert!(tail > 0, "{i}");
    let subs = i["subscribers"].as_array().unwrap();
    assert_eq!(subs.len(), 2, "{i}");
    for s in subs {
        assert!(b_kids.contains(&(s["pid"].as_u64().unwrap() as u32)), "{s}");
        assert_eq!(s["alive"], true);
        assert_eq!(s["state"], "active");
        assert!(s["position"].as_u64().unwrap() <= tail, "{s} tail {tail}");
    }
    let i = &json_lines(&demo(&["inspect", &chan_name, "--json"]))[0];
    let r = &i["rings"][0];
    assert_eq!(r["sender_pid"], stream.id());
    assert_eq!(r["receiver_pid"], chan_kids[0]);
    assert!(
        r["head"].as_u64().unwrap() <= r["tail"].as_u64().unwrap(),
        "{r}"
    );
    let text = String::from_utf8_lossy(&demo(&["inspect", &b_name]).stdout).into_owned();
    assert!(text.contains("tail") && text.contains("line 0"), "{text}");

    // kill -9 every holder of the channel; the broadcast stays live.
    stream.kill().unwrap();
    stream.wait().unwrap();
    for k in &chan_kids {
        eventually("the stream's child to die", BOUND, || {
            shm_core::os::proc::liveness(*k) != shm_core::os::proc::Liveness::Alive
        });
    }
    let all = ls();
    assert_eq!(entry(&all, &chan_name)["state"], "stale");
    assert_eq!(entry(&all, &b_name)["state"], "live");

    // Only the demo's own names: other tests of this binary make stale segments on purpose.
    let dry = json_lines(&demo(&[
        "cleanup",
        "--prefix",
        "/shm-demo-",
        "--dry-run",
        "--json",
    ]));
    let named: Vec<&str> = dry.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(named.contains(&chan_name.as_str()), "{dry:?}");
    assert!(
        !named.contains(&b_name.as_str()),
        "a live one named: {dry:?}"
    );
    assert!(dry.iter().all(|v| v["removed"] == false), "{dry:?}");
    assert!(
        !dev_shm_entries(&chan_name[1..]).is_empty(),
        "dry run removed it"
    );

    let done = json_lines(&demo(&["cleanup", "--prefix", "/shm-demo-", "--json"]));
    let removed: Vec<&str> = done
        .iter()
        .filter(|v| v["removed"] == true)
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(removed.contains(&chan_name.as_str()), "{done:?}");
    assert!(
        !removed.contains(&b_name.as_str()),
        "removed a live one: {done:?}"
    );
    assert!(dev_shm_entries(&chan_name[1..]).is_empty());
    assert!(
        !dev_shm_entries(&b_name[1..]).is_empty(),
        "the live broadcast is gone"
    );

    // SIGINT ends the broadcast, which removes its own segment.
    // SAFETY: kill on our own unreaped child.
    unsafe { libc::kill(bcast.id() as i32, libc::SIGINT) };
    bcast.wait().unwrap();
    assert!(dev_shm_entries(&b_name[1..]).is_empty());
}

#[test]
fn garbage_fifos_truncated_and_foreign_files_are_reported_without_hanging() {
    let base = unique_name("shm-look");
    let garbage = format!("/dev/shm/{base}-garbage");
    std::fs::write(&garbage, b"not a segment at all, just bytes").unwrap();
    let fifo = format!("/dev/shm/{base}-fifo");
    let c = std::ffi::CString::new(fifo.clone()).unwrap();
    // SAFETY: a valid C path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // A real segment, cut to 4096 bytes (its header survives; its payload does not), and
    // one cut inside its header.
    let cut = format!("/{base}-cut");
    let short = format!("/{base}-short");
    for (name, to) in [(&cut, 4096u64), (&short, 64)] {
        let out = demo(&[
            "--backend",
            "posix",
            "write",
            "--name",
            name,
            "--size",
            "1MiB",
        ]);
        assert!(out.status.success());
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm{name}"))
            .unwrap()
            .set_len(to)
            .unwrap();
    }
    let other = format!("/dev/shm/{base}-other");
    std::fs::write(&other, vec![0u8; 4096]).unwrap();
    let root = shm_core::os::proc::effective_uid() == 0;
    if root {
        let c = std::ffi::CString::new(other.clone()).unwrap();
        // SAFETY: a valid C path.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
    } else {
        eprintln!("not root: the other-user file stays ours (listed as foreign: no header)");
    }

    let all = ls();
    let state = |n: &str| entry(&all, n)["state"].as_str().unwrap().to_owned();
    assert_eq!(state(&garbage["/dev/shm".len()..]), "foreign");
    // A foreign file nobody maps is not "held" (it was: "not stale" read as "held").
    assert_eq!(entry(&all, &garbage["/dev/shm".len()..])["held"], false);
    assert_eq!(state(&fifo["/dev/shm".len()..]), "foreign");
    assert_eq!(state(&cut), "corrupt");
    assert_eq!(state(&short), "corrupt");
    assert_eq!(state(&other["/dev/shm".len()..]), "foreign");
    assert!(
        entry(&all, &cut)["reason"]
            .as_str()
            .unwrap()
            .contains("truncated"),
        "{}",
        entry(&all, &cut)
    );
    // Text mode too, and inspect on each: reported, never followed.
    let text = String::from_utf8_lossy(&demo(&["ls"]).stdout).into_owned();
    assert!(text.contains(&cut), "{text}");
    for n in [
        &garbage["/dev/shm".len()..],
        &fifo["/dev/shm".len()..],
        &cut,
        &short,
    ] {
        demo(&["inspect", n, "--json"]);
    }
    // cleanup removes the corrupt segments of ours nobody holds, never foreign files.
    let done = json_lines(&demo(&[
        "cleanup",
        "--prefix",
        &format!("/{base}"),
        "--json",
    ]));
    let removed: Vec<&str> = done.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(
        removed.contains(&cut.as_str()) && removed.contains(&short.as_str()),
        "{done:?}"
    );
    for f in [&garbage, &fifo, &other] {
        assert!(std::path::Path::new(f).exists(), "{f} was removed");
        std::fs::remove_file(f).unwrap();
    }
    assert!(dev_shm_entries(&base).is_empty());
}

#[test]
fn hz_counts_no_more_messages_than_the_producer_published() {
    let messages: u64 = 30_000_000;
    let mut b = start(&[
        "--backend",
        "posix",
        "broadcast",
        "--subscribers",
        "1",
        "--messages",
        &messages.to_string(),
        "--size",
        "64",
    ]);
    let (name, _) = segment_of(&b, 1);
    let out = Command::new(BIN)
        .args(["hz", &name, "--seconds", "2", "--json"])
        .output()
        .unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The run may end before two seconds: every line it printed counts. Each line says
    // how many messages were published in its interval (a count, not a rate): together
    // some, and never more than the producer published.
    assert!(
        !lines.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total: u64 = lines
        .iter()
        .map(|v| v["messages"].as_u64().expect("a counted line"))
        .sum();
    assert!(total > 0, "{lines:?}");
    assert!(total <= messages, "{total} > {messages}: {lines:?}");
    for v in &lines {
        assert_eq!(v["name"], name.as_str());
        assert!(v["lags"].is_array());
    }
    // SAFETY: kill on our own unreaped child.
    unsafe { libc::kill(b.id() as i32, libc::SIGINT) };
    b.wait().unwrap();
}

/// A subscriber process killed with -9 is a dead peer: `ls` marks it "(dead)" and
/// `ls --json` names it in `dead_peers` (a lossy publisher never evicts: its line stays
/// until a new subscriber takes it); a file with no header has no creator, and `inspect` says so instead of "pid 0
/// (dead)".
#[test]
fn dead_peers_are_marked_and_a_foreign_file_has_no_creator() {
    let mut bcast = start(&[
        "--backend",
        "posix",
        "broadcast",
        "--subscribers",
        "2",
        "--messages",
        "4000000000",
        "--size",
        "64",
        "--lossy",
    ]);
    let (b_name, b_kids) = segment_of(&bcast, 2);
    let victim = b_kids[0];
    // Both subscribers joined (the publisher is publishing): only then is a death theirs
    // to report, not a join that never came.
    eventually("both subscribers joined", BOUND, || {
        pids(&entry(&ls(), &b_name)["peers"]).len() == 3
    });
    // SAFETY: kill on a pid our child made; it is not reaped by us (the demo reaps it).
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    eventually("the dead subscriber in dead_peers", BOUND, || {
        let all = ls();
        let b = entry(&all, &b_name);
        pids(&b["dead_peers"]).contains(&victim) && !pids(&b["dead_peers"]).contains(&bcast.id())
    });
    let text = String::from_utf8_lossy(&demo(&["ls"]).stdout).into_owned();
    assert!(text.contains(&format!("{victim} (dead)")), "{text}");
    // SAFETY: kill on our own unreaped child.
    unsafe { libc::kill(bcast.id() as i32, libc::SIGINT) };
    bcast.wait().unwrap();

    let foreign = format!(
        "/dev/shm/{}-foreign",
        unique_name("shm-look").trim_start_matches('/')
    );
    std::fs::write(&foreign, vec![7u8; 4096]).unwrap();
    let out = demo(&["inspect", &foreign["/dev/shm".len()..]]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::remove_file(&foreign).unwrap();
    assert!(!text.contains("pid 0 (dead)"), "{text}");
}

/// A running `service run` seen from outside: `ls` lists it as a service with its client
/// and server processes as peers, `inspect --json` names the servers and what each holds,
/// and `hz` turns its served count into a rate.

#[test]
fn a_service_is_listed_inspected_and_its_rate_measured() {
    let mut run = Reaped(start(&[
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
        "--work-us",
        "20",
    ]));
    let (name, kids) = segment_of(&run.0, 4);
    eventually("the service's four processes joined", BOUND, || {
        pids(&entry(&ls(), &name)["peers"]).len() >= 4
    });
    let all = ls();
    let e = entry(&all, &name);
    assert_eq!(e["kind"], "service", "{e}");
    let peers = pids(&e["peers"]);
    for k in &kids {
        assert!(peers.contains(k), "{k} not among {peers:?}");
    }
    let v = &json_lines(&demo(&["inspect", &name, "--json"]))[0];
    assert_eq!(v["kind"], "service", "{v}");
    let servers = v["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 2, "{v}");
    for s in servers {
        assert!(
            s["alive"].as_bool().unwrap() && s["in_flight"].as_u64().is_some(),
            "{v}"
        );
    }
    assert_eq!(v["client_pids"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["served"].as_u64().unwrap() > 0, "{v}");
    let hz = json_lines(&demo(&["hz", &name, "--seconds", "1", "--json"]));
    let rate = hz
        .last()
        .and_then(|l| l["msgs_per_s"].as_f64())
        .unwrap_or(0.0);
    assert!(rate > 0.0, "{hz:?}");
    // SAFETY: kill on our own unreaped child.
    unsafe { libc::kill(run.0.id() as i32, libc::SIGINT) };
    run.0.wait().unwrap();
    assert!(dev_shm_entries(&name[1..]).is_empty(), "{name} was left");
}

/// What the tools say reads truthfully: a lossy subscriber's line has no position (it
/// keeps its own), `hz` on a quiet channel is 0 msg/s (it printed `?`), and `hz` on a
/// foreign file says it is not ours (it said `is a - (foreign)`).
#[test]
fn lossy_lines_quiet_channels_and_foreign_files_read_truthfully() {
    let lossy = Reaped(start(&[
        "--backend",
        "posix",
        "broadcast",
        "--subscribers",
        "1",
        "--messages",
        "4000000000",
        "--size",
        "64",
        "--lossy",
    ]));
    let (b_name, _) = segment_of(&lossy.0, 1);
    eventually("the subscriber joined", BOUND, || {
        pids(&entry(&ls(), &b_name)["peers"]).len() == 2
    });
    let v = &json_lines(&demo(&["inspect", &b_name, "--json"]))[0];
    let lines = v["subscribers"].as_array().expect("subscribers");
    assert!(!lines.is_empty(), "{v}");
    for l in lines {
        assert!(l["position"].is_null(), "a lossy line's position: {l}");
    }
    drop(lossy);

    let idle = Reaped(start(&["--backend", "posix", "idle", "--seconds", "30"]));
    let (c_name, _) = segment_of(&idle.0, 1);
    let hz = json_lines(&demo(&["hz", &c_name, "--seconds", "1", "--json"]));
    assert_eq!(hz.last().unwrap()["msgs_per_s"], 0.0, "{hz:?}");
    drop(idle);

    let foreign = format!(
        "/dev/shm/{}-hz",
        unique_name("shm-look").trim_start_matches('/')
    );
    std::fs::write(&foreign, vec![7u8; 4096]).unwrap();
    let out = Command::new(BIN)
        .args(["hz", &foreign["/dev/shm".len()..], "--seconds", "1"])
        .output()
        .unwrap();
    std::fs::remove_file(&foreign).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is not a segment of ours"),
        "{err}"
    );
}
