//! iceoryx2 publish-subscribe fan-out, measured as `shm-demo broadcast` measures ours:
//! one publisher pinned to CPU 0, N subscriber processes pinned to CPU 1 busy-polling
//! `receive()`, `[u64; 8]` (64-byte) payloads, reliable delivery
//! (`BackpressureStrategy::RetryUntilDelivered`, safe overflow off), every subscriber
//! checks the order. Prints one JSON line: the slowest subscriber's rate (messages/s
//! from its first message to its last), the publisher's, and the CPU model.
//!
//! `icebench MESSAGES SUBSCRIBERS [BUFFER]` (default buffer 65536: the best of 64 to
//! 65536 on the machine it was tried on; smaller buffers were slower).
use iceoryx2::port::update_connections::UpdateConnections;
use shm_core::os::cpu::{self, pin_to_cpu};
use iceoryx2::prelude::*;
use std::io::{BufRead, Write};
use std::time::Instant;

type Factory =
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u64; 8], ()>;

fn service(node: &Node<ipc::Service>, name: &str, subs: usize, buf: usize) -> Factory {
    node.service_builder(&name.try_into().expect("service name"))
        .publish_subscribe::<[u64; 8]>()
        .max_subscribers(subs + 1)
        .subscriber_max_buffer_size(buf)
        .history_size(0)
        .enable_safe_overflow(false)
        .open_or_create()
        .expect("service")
}

/// The event service's round trip (`icebench event ROUND_TRIPS [GAP_US]`): two
/// processes, two event services; each side notifies, then blocks in `blocking_wait` for
/// the other's notify (GAP_US: an untimed pause before each round). Prints p50/p99 of the last ROUND_TRIPS (after as many warm-up rounds, at
/// least 1,000) as one JSON line.
fn event_round_trips(node: &Node<ipc::Service>, args: &[String]) {
    let event = |name: &str| {
        node.service_builder(&name.try_into().expect("service name"))
            .event()
            .open_or_create()
            .expect("event service")
    };
    if args[1] == "event-child" {
        let (name, total): (&str, u64) = (&args[2], args[3].parse().expect("rounds"));
        let ping = event(&format!("{name}/ping"));
        let pong = event(&format!("{name}/pong"));
        let listener = ping.listener_builder().create().expect("listener");
        let notifier = pong.notifier_builder().create().expect("notifier");
        println!("ready");
        std::io::stdout().flush().expect("stdout");
        for _ in 0..total {
            while listener.blocking_wait(|_| {}).expect("wait") == 0 {}
            notifier.notify().expect("notify");
        }
        return;
    }
    let n: u64 = args[2].parse().expect("ROUND_TRIPS");
    // An untimed pause before each round (so the other side is asleep when it begins).
    let gap = std::time::Duration::from_micros(args.get(3).map_or(0, |g| g.parse().expect("GAP_US")));
    let total = (n / 10).max(1000) + n;
    let name = format!("shmbench/event/{}", std::process::id());
    let ping = event(&format!("{name}/ping"));
    let pong = event(&format!("{name}/pong"));
    let listener = pong.listener_builder().create().expect("listener");
    let exe = std::env::current_exe().expect("exe");
    let mut c = std::process::Command::new(&exe)
        .args(["event-child", &name, &total.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = std::io::BufReader::new(c.stdout.take().expect("stdout"));
    let mut l = String::new();
    out.read_line(&mut l).expect("ready line");
    let notifier = ping.notifier_builder().create().expect("notifier");
    let mut times = Vec::with_capacity(n as usize);
    for i in 0..total {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        let t = Instant::now();
        notifier.notify().expect("notify");
        while listener.blocking_wait(|_| {}).expect("wait") == 0 {}
        if i >= total - n {
            times.push(t.elapsed().as_nanos() as u64);
        }
    }
    c.wait().expect("child");
    times.sort_unstable();
    let q = |f: f64| times[((times.len() - 1) as f64 * f) as usize];
    println!(
        "{{\"what\":\"iceoryx2-event\",\"mode\":\"round_trip\",\"round_trips\":{n},\"p50_ns\":{},\"p99_ns\":{},\"cpu\":\"{}\",\"cores\":{}}}",
        q(0.5),
        q(0.99),
        cpu::model(),
        cpu::cores()
    );
}

/// Request/response round trips (`icebench reqres ROUND_TRIPS`): a server process
/// busy-polls `receive()` and answers each `[u64; 8]` request with a copy of it; this
/// process sends a request and busy-polls its pending response. Prints p50/p99 of the
/// last ROUND_TRIPS (after as many warm-up rounds, at least 1,000) as one JSON line.
fn reqres_round_trips(node: &Node<ipc::Service>, args: &[String]) {
    let svc = |name: &str| {
        node.service_builder(&name.try_into().expect("service name"))
            .request_response::<[u64; 8], [u64; 8]>()
            .open_or_create()
            .expect("request-response service")
    };
    if args[1] == "reqres-child" {
        let (name, total): (&str, u64) = (&args[2], args[3].parse().expect("rounds"));
        let svc = svc(name);
        let server = svc.server_builder().create().expect("server");
        println!("ready");
        std::io::stdout().flush().expect("stdout");
        let mut served = 0;
        while served < total {
            if let Some(req) = server.receive().expect("receive") {
                let p = *req.payload();
                req.send_copy(p).expect("respond");
                served += 1;
            }
        }
        return;
    }
    let n: u64 = args[2].parse().expect("ROUND_TRIPS");
    let total = (n / 10).max(1000) + n;
    let name = format!("shmbench/reqres/{}", std::process::id());
    let service = svc(&name);
    let client = service.client_builder().create().expect("client");
    let exe = std::env::current_exe().expect("exe");
    let mut c = std::process::Command::new(&exe)
        .args(["reqres-child", &name, &total.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = std::io::BufReader::new(c.stdout.take().expect("stdout"));
    let mut l = String::new();
    out.read_line(&mut l).expect("ready line");
    // Let the client see the server before the first request.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut times = Vec::with_capacity(n as usize);
    for i in 0..total {
        let t = Instant::now();
        let pending = client.send_copy([i, 0, 0, 0, 0, 0, 0, 0]).expect("request");
        loop {
            if let Some(r) = pending.receive().expect("response") {
                assert_eq!(r.payload()[0], i, "a response to another request");
                break;
            }
        }
        if i >= total - n {
            times.push(t.elapsed().as_nanos() as u64);
        }
    }
    c.wait().expect("child");
    times.sort_unstable();
    let q = |f: f64| times[((times.len() - 1) as f64 * f) as usize];
    println!(
        "{{\"what\":\"iceoryx2-reqres\",\"mode\":\"round_trip\",\"round_trips\":{n},\"size\":64,\"p50_ns\":{},\"p99_ns\":{},\"cpu\":\"{}\",\"cores\":{}}}",
        q(0.5),
        q(0.99),
        cpu::model(),
        cpu::cores()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let node = NodeBuilder::new().create::<ipc::Service>().expect("node");
    if matches!(args.get(1).map(String::as_str), Some("reqres" | "reqres-child")) {
        reqres_round_trips(&node, &args);
        return;
    }
    if matches!(args.get(1).map(String::as_str), Some("event" | "event-child")) {
        event_round_trips(&node, &args);
        return;
    }
    if args.get(1).map(String::as_str) == Some("sub") {
        pin_to_cpu(1);
        let (name, n, subs, buf): (&str, u64, usize, usize) = (
            &args[2],
            args[3].parse().expect("messages"),
            args[4].parse().expect("subscribers"),
            args[5].parse().expect("buffer"),
        );
        let svc = service(&node, name, subs, buf);
        let sub = svc.subscriber_builder().buffer_size(buf).create().expect("subscriber");
        println!("ready");
        std::io::stdout().flush().expect("stdout");
        let (mut got, mut expect, mut ok, mut start) = (0u64, 0u64, true, None);
        while got < n {
            if let Some(s) = sub.receive().expect("receive") {
                start.get_or_insert_with(Instant::now);
                ok &= s.payload()[0] == expect;
                expect = s.payload()[0] + 1;
                got += 1;
            }
        }
        let secs = start.map_or(0.0, |s: Instant| s.elapsed().as_secs_f64());
        println!("{} {} {}", got, got as f64 / secs, ok);
        return;
    }
    let n: u64 = args[1].parse().expect("MESSAGES");
    let subs: usize = args[2].parse().expect("SUBSCRIBERS");
    let buf: usize = args.get(3).map_or(65536, |b| b.parse().expect("BUFFER"));
    let name = format!("shmbench/fanout/{}", std::process::id());
    pin_to_cpu(0);
    let svc = service(&node, &name, subs, buf);
    let publisher = svc
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .expect("publisher");
    let exe = std::env::current_exe().expect("exe");
    let mut kids = Vec::new();
    for _ in 0..subs {
        let mut c = std::process::Command::new(&exe)
            .args(["sub", &name, &n.to_string(), &subs.to_string(), &buf.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut out = std::io::BufReader::new(c.stdout.take().expect("stdout"));
        let mut l = String::new();
        out.read_line(&mut l).expect("ready line");
        kids.push((c, out));
    }
    // Let the publisher see every subscriber before the first message.
    std::thread::sleep(std::time::Duration::from_millis(300));
    publisher.update_connections().expect("connections");
    let t = Instant::now();
    for i in 0..n {
        let s = publisher.loan_uninit().expect("loan");
        s.write_payload([i, 0, 0, 0, 0, 0, 0, 0]).send().expect("send");
    }
    let publisher_rate = n as f64 / t.elapsed().as_secs_f64();
    let (mut slowest, mut all_ok) = (f64::MAX, true);
    for (mut c, mut out) in kids {
        let mut l = String::new();
        out.read_line(&mut l).expect("report line");
        c.wait().expect("wait");
        let f: Vec<&str> = l.split_whitespace().collect();
        all_ok &= f.get(2) == Some(&"true") && f.first() == Some(&n.to_string().as_str());
        slowest = slowest.min(f.get(1).and_then(|r| r.parse().ok()).unwrap_or(0.0));
    }
    println!(
        "{{\"what\":\"iceoryx2\",\"subscribers\":{subs},\"messages\":{n},\"size\":64,\"buffer\":{buf},\"msgs_per_s\":{slowest:.0},\"publisher_msgs_per_s\":{publisher_rate:.0},\"verified\":{all_ok},\"cpu\":\"{}\",\"cores\":{}}}",
        cpu::model(),
        cpu::cores()
    );
}
