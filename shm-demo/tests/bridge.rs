//! Beyond one host, tried with real processes: publisher, exporter, importer and
//! subscribers are separate `shm-demo` processes (or this test process), meeting over
//! Zenoh on 127.0.0.1 only, with multicast scouting off. Every wait is bounded; no test
//! asserts a speed.

use shm_core::testing::numbered;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shm_core::testing::{dev_shm_entries, eventually, free_port, unique_name};
use shm_core::Error;
use shm_posix::PosixShm;
use zenoh::Wait as _;

mod support;
use support::{attach, follow, joined, json_num, probe, seq, Proc, BIN, BOUND};

fn via_zenoh(backend: &str, messages: u64, size: &str, subscribers: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "--backend",
            backend,
            "broadcast",
            "--via",
            "zenoh",
            "--subscribers",
            subscribers,
            "--messages",
            &messages.to_string(),
            "--size",
            size,
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "{backend} {size}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn reliable_end_to_end_in_order_on_posix_and_memfd() {
    for backend in ["posix", "memfd"] {
        let line = via_zenoh(backend, 100_000, "64", "2");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["via"], "zenoh", "{line}");
        assert_eq!(v["verified"], true, "{line}");
        assert_eq!(v["missed"], 0, "{line}");
        assert_eq!(v["import"]["delivered"], 100_000, "{line}");
        assert_eq!(v["import"]["rejected"], 0, "{line}");
    }
}

#[test]
fn one_and_sixteen_mebibyte_messages_arrive_whole() {
    for (size, n) in [("1MiB", 40u64), ("16MiB", 6)] {
        let line = via_zenoh("posix", n, size, "1");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["verified"], true, "{line}");
        assert_eq!(v["import"]["delivered"], n, "{line}");
    }
}

/// A subscriber process of the (posix) broadcast `name`.
fn subscriber(name: &str) -> Proc {
    Proc::start(
        "subscriber",
        &["--backend", "posix", "--json", "subscribe", "--name", name],
    )
}

/// The two-terminal pieces: a named publisher, an exporter, an importer.
struct Chain {
    src: String,
    dst: String,
    key: String,
    endpoint: String,
}

impl Chain {
    fn new() -> Chain {
        Chain {
            src: format!("/{}", unique_name("zsrc")),
            dst: format!("/{}", unique_name("zdst")),
            key: format!("shm-test/{}", unique_name("k")),
            endpoint: format!("tcp/127.0.0.1:{}", free_port()),
        }
    }
    fn publish(&self, extra: &[&str]) -> Proc {
        let mut args = vec![
            "--backend",
            "posix",
            "--json",
            "publish",
            "--name",
            &self.src,
        ];
        args.extend(extra);
        let p = Proc::start("publisher", &args);
        attach(&self.src);
        p
    }
    fn export(&self) -> Proc {
        let mut p = Proc::start(
            "exporter",
            &[
                "--backend",
                "posix",
                "--json",
                "bridge",
                "export",
                "--name",
                &self.src,
                "--key",
                &self.key,
                "--listen",
                &self.endpoint,
            ],
        );
        p.event("exporting");
        p
    }
    fn import(&self, extra: &[&str]) -> Proc {
        let mut args = vec![
            "--backend",
            "posix",
            "--json",
            "bridge",
            "import",
            "--key",
            &self.key,
            "--name",
            &self.dst,
            "--connect",
            &self.endpoint,
        ];
        args.extend(extra);
        let mut p = Proc::start("importer", &args);
        p.event("importing");
        p
    }
}

#[test]
fn lossy_with_a_throttled_importer_counts_every_drop() {
    let c = Chain::new();
    let total = 20_000u64;
    let mut publisher = c.publish(&[
        "--lossy",
        "--messages",
        &total.to_string(),
        "--rate",
        "20000",
        "--wait-subscribers",
        "2",
    ]);
    let mut exporter = c.export();
    let importer = c.import(&["--throttle", "2000", "--queue", "16"]);
    exporter.event("matched");
    let sub = subscriber(&c.dst);
    joined(&c.dst);
    // The second subscriber the publisher waits for: this process, which then leaves.
    let probe = probe(&c.src);
    let (line, ok) = sub.finish();
    drop(probe);
    assert!(ok, "{line}");
    let first = json_num(&line, "first");
    let got = json_num(&line, "got");
    let missed = json_num(&line, "missed");
    assert_eq!(first + got + missed, total, "{line}");
    assert!(missed > 0, "a throttled importer drops: {line}");
    assert!(got > 0, "{line}");
    let (iline, _) = importer.finish();
    assert!(json_num(&iline, "missed") > 0, "{iline}");
    assert_eq!(json_num(&iline, "rejected"), 0, "{iline}");
    publisher.term();
}

#[test]
fn a_killed_exporter_is_told_then_resumes_with_exact_numbers() {
    let c = Chain::new();
    let _publisher = c.publish(&["--messages", "1000000", "--rate", "2000"]);
    let mut exporter = c.export();
    let _importer = c.import(&[]);
    let imported = attach(&c.dst);
    let mut sub = imported.subscriber().unwrap();
    let mut expected = None;
    follow(&mut sub, &mut expected, |_, got| got >= 300);
    exporter.kill9();
    // Told (`follow` fails as hung past its own bound): the TCP link closes with the
    // process.
    follow(&mut sub, &mut expected, |r, _| {
        r == &Err(Error::UpstreamLost)
    });
    // Seen from outside too: `inspect` shows an import whose source is gone.
    let out = Command::new(BIN)
        .args(["inspect", &c.dst, "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(v["relayed"], true, "{v}");
    assert_eq!(v["upstream_lost"], true, "{v}");
    let _exporter = c.export();
    let mut lagged = None;
    let mut buf = Vec::new();
    let end = Instant::now() + BOUND;
    loop {
        assert!(Instant::now() < end, "did not resume");
        match numbered(&mut sub, |s| {
            s.recv_into_timeout(&mut buf, Duration::from_millis(50))
        }) {
            Ok(_) => {
                let e = expected.unwrap() + lagged.unwrap_or(0);
                assert_eq!(
                    seq(&buf),
                    e,
                    "the first message after the restart: exact gap"
                );
                expected = Some(e + 1);
                break;
            }
            Err(Error::Lagged { missed }) => lagged = Some(missed),
            Err(Error::Timeout { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(
        lagged.is_some_and(|m| m > 0),
        "messages published while no exporter ran"
    );
    follow(&mut sub, &mut expected, |_, got| got >= 300);
}

#[test]
fn a_killed_importer_is_peer_death_and_a_new_one_takes_the_name() {
    let c = Chain::new();
    let _publisher = c.publish(&["--messages", "1000000", "--rate", "2000"]);
    let _exporter = c.export();
    let mut importer = c.import(&[]);
    let mut sub = attach(&c.dst).subscriber().unwrap();
    let mut expected = None;
    follow(&mut sub, &mut expected, |_, got| got >= 200);
    importer.kill9();
    let mut buf = Vec::new();
    let end = Instant::now() + BOUND;
    loop {
        assert!(Instant::now() < end, "no PeerDied");
        match numbered(&mut sub, |s| {
            s.recv_into_timeout(&mut buf, Duration::from_millis(50))
        }) {
            Err(Error::PeerDied { .. }) => break,
            Ok(_) | Err(Error::Timeout { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    drop(sub);
    // The name still names the dead import; a new importer replaces it.
    let _importer = c.import(&[]);
    let b = attach(&c.dst);
    assert!(b.relayed());
    let mut sub = b.subscriber().unwrap();
    let mut expected = None;
    follow(&mut sub, &mut expected, |_, got| got >= 200);
}

#[test]
fn a_second_importer_on_another_port_gets_the_same_stream() {
    let c = Chain::new();
    let total = 3000u64;
    let _publisher = c.publish(&[
        "--messages",
        &total.to_string(),
        "--rate",
        "3000",
        "--wait-subscribers",
        "2",
    ]);
    let second = format!("tcp/127.0.0.1:{}", free_port());
    let mut exporter = Proc::start(
        "exporter",
        &[
            "--backend",
            "posix",
            "--json",
            "bridge",
            "export",
            "--name",
            &c.src,
            "--key",
            &c.key,
            "--listen",
            &c.endpoint,
            "--listen",
            &second,
        ],
    );
    exporter.event("exporting");
    let _i1 = c.import(&[]);
    let dst2 = format!("/{}", unique_name("zdst2"));
    let mut i2 = Proc::start(
        "importer 2",
        &[
            "--backend",
            "posix",
            "--json",
            "bridge",
            "import",
            "--key",
            &c.key,
            "--name",
            &dst2,
            "--connect",
            &second,
        ],
    );
    i2.event("importing");
    let subs: Vec<Proc> = [&c.dst, &dst2].iter().map(|d| subscriber(d)).collect();
    for d in [&c.dst, &dst2] {
        joined(d);
    }
    // The second subscriber the publisher waits for: this process (kept until the end;
    // it reads nothing and is evicted if it ever holds the publisher back).
    let _probe = probe(&c.src);
    for s in subs {
        let (line, ok) = s.finish();
        assert!(ok, "{line}");
        let (first, got, missed) = (
            json_num(&line, "first"),
            json_num(&line, "got"),
            json_num(&line, "missed"),
        );
        assert_eq!(first + got + missed, total, "{line}");
        assert_eq!(missed, 0, "reliable: {line}");
        assert!(got > 0, "{line}");
    }
}

#[test]
fn garbage_on_the_key_is_counted_and_never_delivered() {
    let c = Chain::new();
    let total = 2000u64;
    let _publisher = c.publish(&[
        "--messages",
        &total.to_string(),
        "--rate",
        "1000",
        "--wait-subscribers",
        "2",
    ]);
    let mut exporter = c.export();
    let junk_at = format!("tcp/127.0.0.1:{}", free_port());
    let importer = c.import(&["--listen", &junk_at]);
    exporter.event("matched");
    let sub = subscriber(&c.dst);
    let b = joined(&c.dst);
    // A plain Zenoh publisher on the same key (this process), reaching the importer.
    let z = shm_zenoh::BridgeConfig::new()
        .connect(&junk_at)
        .open()
        .unwrap();
    let junk = z
        .declare_publisher(c.key.clone())
        .congestion_control(zenoh::qos::CongestionControl::Block)
        .wait()
        .unwrap();
    eventually("the junk publisher matched", BOUND, || {
        junk.matching_status().wait().unwrap().matching()
    });
    let _probe = probe(&c.src);
    let good = shm_zenoh::wire::SampleHeader {
        mode: shm_core::BroadcastMode::Reliable,
        flags: 0,
        exporter: 1, // not the exporter: foreign
        number: 5,
        schema: shm_zenoh::wire::fingerprint(&b.schema()),
    };
    let mut sent = 0;
    for i in 0..50u8 {
        let r = match i % 5 {
            0 => junk.put(vec![i; 64]).wait(),
            1 => junk.put(vec![i; 64]).attachment(vec![i; 7]).wait(),
            2 => junk.put(vec![i; 64]).attachment(vec![0u8; 32]).wait(),
            3 => junk
                .put(vec![i; 64])
                .attachment(good.encode().to_vec())
                .wait(),
            _ => junk
                .put(vec![i; 1 << 20])
                .attachment(good.encode().to_vec())
                .wait(),
        };
        r.unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let (line, ok) = sub.finish();
    assert!(ok, "every message delivered was verified: {line}");
    assert_eq!(
        json_num(&line, "first") + json_num(&line, "got") + json_num(&line, "missed"),
        total,
        "{line}"
    );
    let (iline, _) = importer.finish();
    assert_eq!(json_num(&iline, "rejected"), sent, "{iline}");
    assert_eq!(
        json_num(&iline, "delivered"),
        json_num(&line, "got"),
        "{iline}"
    );
}

#[test]
fn nothing_is_left_in_dev_shm() {
    // Runs after the others in this file only by chance; it checks its own prefix.
    let c = Chain::new();
    {
        let _p = c.publish(&["--messages", "1000000", "--rate", "1000"]);
        let _e = c.export();
        let _i = c.import(&[]);
        attach(&c.dst);
    }
    eventually("nothing left in /dev/shm", BOUND, || {
        dev_shm_entries(&c.src[1..]).is_empty() && dev_shm_entries(&c.dst[1..]).is_empty()
    });
}

#[test]
fn bridge_list_shows_each_export_with_its_schema_and_rate() {
    let c = Chain::new();
    let _publisher = c.publish(&["--messages", "1000000", "--rate", "2000"]);
    let exporter = c.export();
    let out = Command::new(BIN)
        .args([
            "--json",
            "bridge",
            "list",
            "--connect",
            &c.endpoint,
            "--seconds",
            "2",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(&c.key))
        .unwrap_or_else(|| panic!("{} not listed: {text}", c.key));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["mode"], "reliable", "{line}");
    assert_eq!(v["schema"], "bytes", "{line}");
    assert!(v["max_message"].as_u64().unwrap() >= 64, "{line}");
    assert!(
        v["rate"].as_f64().unwrap() > 0.0,
        "it carries messages: {line}"
    );
    drop(exporter);
}

#[test]
fn an_importer_expecting_another_type_is_refused_before_anything_is_made() {
    let c = Chain::new();
    let _publisher = c.publish(&["--messages", "1000000", "--rate", "1000"]);
    let _exporter = c.export(); // exports untyped messages ("bytes")
    let session = shm_zenoh::BridgeConfig::new()
        .connect(&c.endpoint)
        .open()
        .unwrap();
    let made = std::cell::Cell::new(false);
    let r = shm_zenoh::Importer::<PosixShm>::start(
        &session,
        &shm_zenoh::ImportOptions::new(&c.key)
            .record::<u64>()
            .wait_exporter(BOUND),
        |_| {
            made.set(true);
            Err("must not be called".into())
        },
    );
    match r {
        Err(shm_zenoh::BridgeError::Shm(Error::SchemaMismatch { found, expected })) => {
            assert_eq!(found.name(), "bytes");
            assert_eq!(
                expected.name(),
                shm_core::Schema::of::<u64>().unwrap().name()
            );
        }
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
    assert!(!made.get(), "nothing is created for a refused import");
}
