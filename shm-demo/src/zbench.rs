//! `shm-demo bridge bench`: what the bridge adds to Zenoh, measured in one run.
//!
//! * `--what raw`: plain Zenoh pub/sub between two processes (peer mode, TCP on
//!   127.0.0.1, scouting off, `CongestionControl::Block`, a fresh buffer per put: the
//!   exporter's settings), the subscriber verifying order and checksums as ours do.
//! * `--what rtt-raw`: the 64-byte round trip over plain Zenoh: ping on one key, the
//!   other process answers on another (express).
//! * `--what rtt-bridge`: the same round trip through the bridge: local broadcast →
//!   exporter → Zenoh → importer → local broadcast → the echo's subscriber, and back the
//!   same way; each process runs its exporter and importer as threads.
//!
//! * `--what rtt-get`: a plain Zenoh `get` to a queryable in the other process that
//!   answers with the request's bytes.
//! * `--what rtt-service`: the same call through the service bridge: a local service
//!   (imported) → importer → Zenoh query → exporter → the other process's local service
//!   and its server, which answers with the request's bytes; and back.
//!
//! The bridge's end-to-end throughput is `broadcast --via zenoh --subscribers 1`.

use std::io::{BufRead, BufReader, Write as _};
use std::time::{Duration, Instant};

use shm_core::{Broadcast, BroadcastOptions, RecvTimeoutError};
use shm_posix::{PosixShm, ShmOptions};
use shm_zenoh::{BridgeConfig, ExportOptions, Exporter, ImportOptions, Importer};
use zenoh::qos::CongestionControl;
use zenoh::Wait as _;

use crate::msg::{Follow, Maker};
use crate::util::{Failure, Json, Result};

/// What `bridge bench` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    Raw,
    RttRaw,
    RttBridge,
    RttGet,
    RttService,
}

/// The hidden second process's roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    RawSub,
    RawEcho,
    BridgeEcho,
    GetAnswer,
    ServiceAnswer,
}

fn z<E: std::fmt::Display>(e: E) -> Failure {
    Failure::new(format!("zenoh: {e}"))
}

fn session(listen: Option<&str>, connect: Option<&str>) -> Result<zenoh::Session> {
    let mut c = BridgeConfig::new();
    if let Some(l) = listen {
        c = c.listen(l);
    }
    if let Some(k) = connect {
        c = c.connect(k);
    }
    c.open().map_err(|e| Failure::new(e.to_string()))
}

fn wait_matched(p: &zenoh::pubsub::Publisher<'_>) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(30);
    while !p.matching_status().wait().map_err(z)?.matching() {
        if Instant::now() > end {
            return Err(Failure::new("no subscriber matched within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn p50(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// `shm-demo bridge bench`.
///
/// `spin`: for `rtt-bridge`, how long the exporters and the subscribers spin before they
/// sleep, in µs (default: the library's, which leave the CPU to Zenoh).
/// Prints one JSON line (with the CPU model) whatever `--json` says: its output is for
/// scripts (`benches/bridge.sh`).
pub fn run(what: What, messages: u64, size: u64, spin: Option<u64>) -> Result<()> {
    let size = size.max(16);
    let ep = format!("tcp/127.0.0.1:{}", crate::util::free_port()?);
    let pid = std::process::id();
    let role = match what {
        What::Raw => "raw-sub",
        What::RttRaw => "raw-echo",
        What::RttBridge => "bridge-echo",
        What::RttGet => "get-answer",
        What::RttService => "service-answer",
    };
    let mut child = crate::host::spawn_demo(&[
        "bridge".into(),
        "bench-peer".into(),
        "--role".into(),
        role.into(),
        "--listen".into(),
        ep.clone(),
        "--key".into(),
        format!("shm-bench/{pid}"),
        "--messages".into(),
        messages.to_string(),
        "--size".into(),
        size.to_string(),
        "--spin-us".into(),
        spin.map_or_else(|| "default".into(), |us| us.to_string()),
    ])?;
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut ready = String::new();
    out.read_line(&mut ready)
        .map_err(|e| Failure::new(e.to_string()))?;
    if !ready.contains("ready") {
        let _ = child.kill();
        return Err(Failure::new(format!(
            "the bench peer did not start: {ready}"
        )));
    }
    let s = session(None, Some(&ep))?;
    let key = format!("shm-bench/{pid}");
    let line = match what {
        What::Raw => {
            let p = s
                .declare_publisher(format!("{key}/data"))
                .congestion_control(CongestionControl::Block)
                .wait()
                .map_err(z)?;
            wait_matched(&p)?;
            let mut maker = Maker::new(size as usize);
            let t = Instant::now();
            for n in 0..messages {
                p.put(maker.make(n).to_vec()).wait().map_err(z)?;
            }
            let pub_s = t.elapsed().as_secs_f64();
            let mut l = String::new();
            out.read_line(&mut l)
                .map_err(|e| Failure::new(e.to_string()))?;
            let received = crate::util::json_num(&l, "received").unwrap_or(0.0);
            let secs = crate::util::json_num(&l, "seconds").unwrap_or(0.0);
            let rate = if secs > 0.0 { received / secs } else { 0.0 };
            Json::new()
                .str("what", "raw")
                .num("size", size)
                .num("messages", messages)
                .float("received", received)
                .float("msgs_per_s", rate)
                .float("bytes_per_s", rate * size as f64)
                .float("publisher_msgs_per_s", messages as f64 / pub_s)
                .bool("verified", l.contains("\"verified\":true"))
                .finish()
        }
        What::RttRaw => {
            let p = s
                .declare_publisher(format!("{key}/ping"))
                .congestion_control(CongestionControl::Block)
                .express(true)
                .wait()
                .map_err(z)?;
            let sub = s
                .declare_subscriber(format!("{key}/pong"))
                .wait()
                .map_err(z)?;
            wait_matched(&p)?;
            let buf = vec![7u8; size as usize];
            let mut rtts = Vec::with_capacity(messages as usize);
            for _ in 0..messages {
                let t = Instant::now();
                p.put(buf.clone()).wait().map_err(z)?;
                sub.recv_timeout(Duration::from_secs(10))
                    .map_err(z)?
                    .ok_or_else(|| Failure::new("no pong within 10 s"))?;
                rtts.push(t.elapsed().as_nanos() as u64);
            }
            Json::new()
                .str("what", "rtt-raw")
                .num("size", size)
                .num("round_trips", messages)
                .num("p50_ns", p50(rtts))
                .finish()
        }
        What::RttBridge => rtt_bridge(&s, &key, messages, size, spin, &mut out)?,
        What::RttGet => {
            let buf = vec![7u8; size as usize];
            let mut rtts = Vec::with_capacity(messages as usize);
            for round in 0..messages + 100 {
                let t = Instant::now();
                let replies = s
                    .get(format!("{key}/q"))
                    .payload(buf.clone())
                    .timeout(Duration::from_secs(10))
                    .wait()
                    .map_err(z)?;
                let reply = replies
                    .recv()
                    .map_err(|_| Failure::new("no reply within 10 s"))?;
                reply.result().map_err(|_| Failure::new("an error reply"))?;
                if round >= 100 {
                    rtts.push(t.elapsed().as_nanos() as u64);
                }
            }
            Json::new()
                .str("what", "rtt-get")
                .num("size", size)
                .num("round_trips", messages)
                .num("p50_ns", p50(rtts))
                .finish()
        }
        What::RttService => {
            let name = format!("/shm-demo-zs-{pid}");
            crate::util::remember_segment(&name);
            let n2 = name.clone();
            let imp = shm_zenoh::ServiceImporter::start(
                &s,
                &shm_zenoh::ServiceImportOptions::new(format!("{key}/svc"))
                    .wait_exporter(Duration::from_secs(30))
                    .workers(1),
                move |len| Ok(ShmOptions::new(&n2).size(len).create()?),
            )
            .map_err(|e| Failure::new(e.to_string()))?;
            let mut c = imp.service().client()?;
            let buf = vec![7u8; size as usize];
            let mut rtts = Vec::with_capacity(messages as usize);
            // A few calls first: the first query may wait for its route.
            for round in 0..messages + 100 {
                let t = Instant::now();
                let r = c
                    .call_timeout(&buf, Duration::from_secs(10))
                    .map_err(|e| Failure::new(format!("call: {e}")))?;
                if r.data != buf {
                    return Err(Failure::new("a response that is not the request's echo"));
                }
                if round >= 100 {
                    rtts.push(t.elapsed().as_nanos() as u64);
                }
            }
            drop(c);
            drop(imp);
            crate::util::forget_segment(&name);
            Json::new()
                .str("what", "rtt-service")
                .num("size", size)
                .num("round_trips", messages)
                .num("p50_ns", p50(rtts))
                .finish()
        }
    };
    terminate(&mut child);
    let model = shm_core::os::cpu::model();
    let line = format!(
        "{},\"cpu\":\"{}\"}}",
        line.trim_end_matches('}'),
        model.replace('"', "'")
    );
    println!("{line}");
    Ok(())
}

/// Ends a child with SIGTERM (its handler removes the segments it made) and reaps it.
fn terminate(child: &mut std::process::Child) {
    crate::util::terminate(child.id());
    let _ = child.wait();
}

/// Local broadcast + exporter (on `out_key`) and importer (of `in_key`) into a second
/// local broadcast; returns (publisher side, subscriber side, exporter, importer).
type Ends = (
    Broadcast<PosixShm>,
    shm_core::Subscriber<PosixShm>,
    Exporter,
    Importer<PosixShm>,
);

fn bridge_ends(
    s: &zenoh::Session,
    out_key: &str,
    in_key: &str,
    size: u64,
    spin: Option<u64>,
) -> Result<Ends> {
    let opts = BroadcastOptions::new().slots(64).max_message(size);
    let name = format!(
        "/shm-demo-zb-{}-{}",
        std::process::id(),
        out_key.replace('/', "_")
    );
    crate::util::remember_segment(&name);
    let mem = ShmOptions::new(&name).size(opts.segment_len()?).create()?;
    let b = Broadcast::create(mem, &opts)?;
    let mut eo = ExportOptions::new(out_key).express(true);
    if let Some(us) = spin {
        eo = eo.wait(shm_core::WaitMode::Block {
            spin: Duration::from_micros(us),
        });
    }
    let e = Exporter::start(s, b.clone(), &eo).map_err(|e| Failure::new(e.to_string()))?;
    let dst = format!(
        "/shm-demo-zbi-{}-{}",
        std::process::id(),
        in_key.replace('/', "_")
    );
    crate::util::remember_segment(&dst);
    let d2 = dst.clone();
    let i = Importer::start(s, &ImportOptions::new(in_key), move |len| {
        Ok(ShmOptions::new(&d2).size(len).create()?)
    })
    .map_err(|e| Failure::new(e.to_string()))?;
    let mut sub = Broadcast::attach(ShmOptions::new(&dst).open()?)?.subscriber()?;
    if let Some(us) = spin {
        sub.set_wait(shm_core::WaitMode::Block {
            spin: Duration::from_micros(us),
        });
    }
    Ok((b, sub, e, i))
}

fn rtt_bridge(
    s: &zenoh::Session,
    key: &str,
    messages: u64,
    size: u64,
    spin: Option<u64>,
    out: &mut impl BufRead,
) -> Result<String> {
    let (b, mut sub, e, _i) = bridge_ends(
        s,
        &format!("{key}/ping"),
        &format!("{key}/pong"),
        size,
        spin,
    )?;
    let mut l = String::new();
    out.read_line(&mut l)
        .map_err(|e| Failure::new(e.to_string()))?; // the echo's ends are up
    if !e.wait_matched(Duration::from_secs(30)) {
        return Err(Failure::new("the echo's importer never matched"));
    }
    let mut p = b.publisher()?;
    let msg = vec![7u8; size as usize];
    let mut buf = Vec::new();
    let mut rtts = Vec::with_capacity(messages as usize);
    // A few rounds first: the first message through may wait for the echo's import.
    for round in 0..messages + 100 {
        let t = Instant::now();
        p.publish(&msg)?;
        loop {
            match sub.recv_into_timeout(&mut buf, Duration::from_secs(10)) {
                Ok(_) => break,
                Err(RecvTimeoutError::Lagged { .. }) => {}
                Err(e) => return Err(crate::errors::core(e)),
            }
        }
        if round >= 100 {
            rtts.push(t.elapsed().as_nanos() as u64);
        }
    }
    Ok(Json::new()
        .str("what", "rtt-bridge")
        .str(
            "spin_us",
            &spin.map_or_else(|| "default".into(), |us| us.to_string()),
        )
        .num("size", size)
        .num("round_trips", messages)
        .num("p50_ns", p50(rtts))
        .finish())
}

/// The hidden second process.
pub fn peer(
    role: Role,
    listen: &str,
    key: &str,
    messages: u64,
    size: u64,
    spin: Option<u64>,
) -> Result<()> {
    let s = session(Some(listen), None)?;
    let say = |l: &str| {
        println!("{l}");
        let _ = std::io::stdout().flush();
    };
    match role {
        Role::RawSub => {
            let sub = s
                .declare_subscriber(format!("{key}/data"))
                .wait()
                .map_err(z)?;
            say("{\"event\":\"ready\"}");
            let mut follow = Follow::default();
            let mut start = None;
            let mut received = 0u64;
            let mut verified = true;
            while received < messages {
                let Some(sample) = sub.recv_timeout(Duration::from_secs(30)).map_err(z)? else {
                    break;
                };
                start.get_or_insert_with(Instant::now);
                let bytes = sample.payload().to_bytes();
                if follow.message(&bytes, size as usize).is_err() {
                    verified = false;
                }
                received += 1;
            }
            let secs = start.map_or(0.0, |t| t.elapsed().as_secs_f64());
            say(&Json::new()
                .num("received", received)
                .float("seconds", secs)
                .bool("verified", verified && received == messages)
                .finish());
        }
        Role::RawEcho => {
            let sub = s
                .declare_subscriber(format!("{key}/ping"))
                .wait()
                .map_err(z)?;
            let p = s
                .declare_publisher(format!("{key}/pong"))
                .congestion_control(CongestionControl::Block)
                .express(true)
                .wait()
                .map_err(z)?;
            say("{\"event\":\"ready\"}");
            while let Some(sample) = sub.recv_timeout(Duration::from_secs(30)).map_err(z)? {
                p.put(sample.payload().clone()).wait().map_err(z)?;
            }
        }
        Role::GetAnswer => {
            let q = s.declare_queryable(format!("{key}/q")).wait().map_err(z)?;
            say("{\"event\":\"ready\"}");
            while let Some(query) = q.recv_timeout(Duration::from_secs(30)).map_err(z)? {
                let payload = query.payload().cloned().unwrap_or_default();
                query
                    .reply(query.key_expr().clone(), payload)
                    .wait()
                    .map_err(z)?;
            }
        }
        Role::ServiceAnswer => {
            let opts = shm_core::service::ServiceOptions::new()
                .max_request(size.max(1) as u32)
                .max_response(size.max(1) as u32);
            let name = format!("/shm-demo-zsa-{}", std::process::id());
            crate::util::remember_segment(&name);
            let mem = ShmOptions::new(&name).size(opts.segment_len()?).create()?;
            let svc = shm_core::service::Service::create(mem, &opts)?;
            let mut server = svc.server()?;
            let _e = shm_zenoh::ServiceExporter::start(
                &s,
                svc.clone(),
                &shm_zenoh::ServiceExportOptions::new(format!("{key}/svc")).workers(1),
            )
            .map_err(|e| Failure::new(e.to_string()))?;
            say("{\"event\":\"ready\"}");
            let mut idle = Instant::now();
            while idle.elapsed() < Duration::from_secs(30) && !crate::util::interrupted() {
                match server.receive_timeout(Duration::from_millis(100)) {
                    Ok(mut req) => {
                        let data = req.take_data();
                        let _ = req.respond_last(&data);
                        idle = Instant::now();
                    }
                    Err(shm_core::RecvTimeoutError::Timeout { .. }) => {}
                    Err(e) => return Err(crate::errors::core(e)),
                }
            }
        }
        Role::BridgeEcho => {
            say("{\"event\":\"ready\"}");
            let (b, mut sub, e, _i) = bridge_ends(
                &s,
                &format!("{key}/pong"),
                &format!("{key}/ping"),
                size,
                spin,
            )?;
            if !e.wait_matched(Duration::from_secs(30)) {
                return Err(Failure::new("the pinger's importer never matched"));
            }
            say("{\"event\":\"up\"}");
            let mut p = b.publisher()?;
            let mut buf = Vec::new();
            loop {
                match sub.recv_into_timeout(&mut buf, Duration::from_secs(30)) {
                    Ok(_) => p.publish(&buf)?,
                    Err(RecvTimeoutError::Lagged { .. }) => {}
                    Err(_) => break,
                }
            }
        }
    }
    Ok(())
}
