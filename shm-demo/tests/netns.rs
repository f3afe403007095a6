//! Across hosts, for real (issue 31): each host is a network namespace, hosts are joined
//! by veth links with addresses in 10.99.0.0/16 (used only inside the namespaces the
//! test makes), and every bridge end is an `shm-demo` process run in its host with
//! `ip netns exec`. Links are cut with nftables and degraded with `tc netem` (or, on a
//! kernel without it, nftables and `tbf`: see [`Link::degrade`]); a host "dies" when its
//! link goes silent and its processes are SIGKILLed.
//!
//! Needs root, `ip`, `tc` and `nft`. Without them each test says so on stderr and passes
//! without checking anything; under CI (`CI` set, as `.ci/run` is) a missing capability
//! fails the test instead. Every namespace is removed when its test ends, also when it
//! fails (`Drop`), and namespaces left by a test process that was killed are removed by
//! the next run. Every wait is bounded; no time is asserted.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shm_core::testing::{numbered, unique_name};
use shm_core::{Error, Subscriber};
use shm_posix::PosixShm;

mod support;
use support::{attach, json_num, seq, Proc};

/// How long a whole stream may take to be read here (a hang stops at this bound).
const STREAM_BOUND: Duration = Duration::from_secs(150);
/// The Zenoh lease the cut tests use: a silent link is closed after this long, so a
/// 2 s cut outlives the session and the importer must recover from the cache.
const LEASE_MS: &str = "1000";
const PORT: u16 = 7447;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    run(args).unwrap_or_else(|e| panic!("{e}"));
}

/// Whether this machine lets the test make namespaces; `None` means skip (outside CI).
fn capable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = run(&["ip", "-V"]).is_ok()
        && run(&["tc", "-V"]).is_ok()
        && run(&["nft", "--version"]).is_ok();
    if root && tools {
        return true;
    }
    let why = if root {
        "`ip`, `tc` or `nft` is missing"
    } else {
        "not root"
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "the network-namespace tests must run under CI, but {why}"
    );
    eprintln!("skipped: network namespaces need root, `ip` and `tc` ({why})");
    false
}

/// Removes namespaces a killed test process left behind (their names carry its pid).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("shmz") else {
            continue;
        };
        let Some(pid) = rest
            .split('n')
            .next()
            .and_then(|p| u32::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_in(name);
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

fn kill_all_in(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill has no memory preconditions; the pid is in the test's
                // own namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// One veth link: its two ends (namespace, device).
#[derive(Clone, Debug)]
struct Link {
    ends: [(String, String); 2],
}

impl Link {
    fn nft(ns: &str, rule: &str) {
        let mut a = vec!["ip", "netns", "exec", ns, "nft"];
        a.extend(rule.split(' '));
        must(&a);
    }
    /// Every packet dropped, both ways, on both ends, until [`restore`](Self::restore)
    /// (nftables rules in the hosts' own tables: the link stays up, as a cut cable's
    /// would to TCP).
    fn cut(&self) {
        for (ns, dev) in &self.ends {
            Link::nft(ns, &format!("add rule inet shmz out oifname {dev} drop"));
            Link::nft(ns, &format!("add rule inet shmz in iifname {dev} drop"));
        }
    }
    fn restore(&self) {
        for (ns, _) in &self.ends {
            Link::nft(ns, "flush chain inet shmz out");
            Link::nft(ns, "flush chain inet shmz in");
        }
    }
    /// 50 ms more delay and 10% packet loss, each way. With `tc netem` where the kernel
    /// has it; where it has not (this project's CI kernel has no `sch_netem`), 10% of
    /// the packets each end sends are dropped by nftables (`numgen random`) and a token
    /// bucket (`tbf`, 2 Mbit/s, up to 50 ms of queue) slows the link. Returns which.
    fn degrade(&self) -> &'static str {
        let netem = self.ends.iter().all(|(ns, dev)| {
            run(&[
                "tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "netem", "delay", "50ms",
                "loss", "10%",
            ])
            .is_ok()
        });
        if netem {
            return "tc netem delay 50ms loss 10%";
        }
        for (ns, dev) in &self.ends {
            Link::nft(
                ns,
                &format!("add rule inet shmz out oifname {dev} numgen random mod 10 0 drop"),
            );
            must(&[
                "tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", "2mbit",
                "burst", "8kb", "latency", "50ms",
            ]);
        }
        "nftables 10% random drop + tbf 2mbit latency 50ms (no sch_netem in this kernel)"
    }
}

/// Hosts (network namespaces) and the links between them; removed on drop.
struct Hosts {
    ns: Vec<String>,
    links: Vec<Link>,
}

impl Hosts {
    /// `n` hosts; each pair in `links` joined by a veth link: link `l` is
    /// 10.99.`l`.0/24, `.1` on its first host and `.2` on its second.
    fn new(n: usize, links: &[(usize, usize)]) -> Option<Hosts> {
        if !capable() {
            return None;
        }
        remove_stale();
        let id = format!(
            "{:x}n{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut h = Hosts {
            ns: Vec::new(),
            links: Vec::new(),
        };
        for i in 0..n {
            let ns = format!("shmz{id}h{i}");
            must(&["ip", "netns", "add", &ns]);
            h.ns.push(ns.clone());
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            Link::nft(&ns, "add table inet shmz");
            Link::nft(
                &ns,
                "add chain inet shmz out { type filter hook output priority 0 ; policy accept ; }",
            );
            Link::nft(
                &ns,
                "add chain inet shmz in { type filter hook input priority 0 ; policy accept ; }",
            );
        }
        for (l, &(a, b)) in links.iter().enumerate() {
            // Interface names are at most 15 bytes: the namespace keeps them apart, so
            // they need not carry the test's id.
            let (da, db) = (format!("zl{l}a"), format!("zl{l}b"));
            must(&[
                "ip", "link", "add", &da, "netns", &h.ns[a], "type", "veth", "peer", "name", &db,
                "netns", &h.ns[b],
            ]);
            for (ns, dev, end) in [(&h.ns[a], &da, 1), (&h.ns[b], &db, 2)] {
                must(&[
                    "ip",
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("10.99.{l}.{end}/24"),
                    "dev",
                    dev,
                ]);
                must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            }
            h.links.push(Link {
                ends: [(h.ns[a].clone(), da), (h.ns[b].clone(), db)],
            });
        }
        Some(h)
    }

    /// The endpoint of link `l`'s end `end` (0: its first host, 1: its second).
    fn endpoint(&self, l: usize, end: usize) -> String {
        format!("tcp/10.99.{l}.{}:{PORT}", end + 1)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.ns {
            kill_all_in(ns);
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// A publisher, an exporter and importers, each a demo process in its host; the
/// segments they made are unlinked on drop (a SIGKILLed publisher cannot).
struct Chain {
    src: String,
    key: String,
    procs: Vec<Proc>,
    names: Vec<String>,
}

impl Chain {
    fn new() -> Chain {
        let src = format!("/{}", unique_name("nsrc"));
        Chain {
            names: vec![src.clone()],
            src,
            key: format!("shm-test/{}", unique_name("net")),
            procs: Vec::new(),
        }
    }

    fn publish(&mut self, ns: &str, messages: u64, rate: u64) {
        let (m, r) = (messages.to_string(), rate.to_string());
        let args = [
            "--backend",
            "posix",
            "--json",
            "publish",
            "--name",
            &self.src,
            "--messages",
            &m,
            "--rate",
            &r,
            // The exporter is the one subscriber the stream waits for.
            "--wait-subscribers",
            "1",
        ];
        self.procs.push(Proc::start_in(ns, "publisher", &args));
        attach(&self.src);
    }

    fn export(&mut self, ns: &str, listen: &[String], extra: &[&str]) -> usize {
        let mut args = vec![
            "--backend",
            "posix",
            "--json",
            "bridge",
            "export",
            "--name",
            &self.src,
            "--key",
            &self.key,
        ];
        for l in listen {
            args.extend(["--listen", l]);
        }
        args.extend(extra);
        let mut p = Proc::start_in(ns, "exporter", &args);
        p.event("exporting");
        self.procs.push(p);
        self.procs.len() - 1
    }

    /// An importer in `ns` connected to `connect`, into a new segment; returns its name
    /// and the index of its process.
    fn import(&mut self, ns: &str, connect: &str, extra: &[&str]) -> (String, usize) {
        let dst = format!("/{}", unique_name("ndst"));
        self.names.push(dst.clone());
        let mut args = vec![
            "--backend",
            "posix",
            "--json",
            "bridge",
            "import",
            "--key",
            &self.key,
            "--name",
            &dst,
            "--connect",
            connect,
        ];
        args.extend(extra);
        let mut p = Proc::start_in(ns, "importer", &args);
        p.event("importing");
        self.procs.push(p);
        (dst, self.procs.len() - 1)
    }

    /// Every process's unread output, for a failure's message.
    fn dump(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("{:?}", p.unread()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for process `i` to end by itself and returns its last line.
    fn finish(&mut self, i: usize) -> String {
        let p = self.procs.remove(i);
        let (line, ok) = p.finish();
        assert!(ok, "{line}");
        line
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.procs.clear();
        for n in &self.names {
            let _ = shm_posix::unlink(n);
        }
    }
}

/// What a subscriber of an import saw, read to the end of the stream.
#[derive(Debug, Default)]
struct Seen {
    first: Option<u64>,
    last: Option<u64>,
    got: u64,
    lagged: Vec<u64>,
    upstream_lost: u32,
}

/// Reads `sub` until `Closed`, checking that every message carries the number expected
/// (after a `Lagged { missed }`, exactly `missed` further on); `each(got)` is called
/// after every message.
fn read_to_end(sub: &mut Subscriber<PosixShm>, mut each: impl FnMut(u64)) -> Seen {
    let mut seen = Seen::default();
    let mut expected: Option<u64> = None;
    let mut buf = Vec::new();
    let end = Instant::now() + STREAM_BOUND;
    loop {
        assert!(
            Instant::now() < end,
            "no end within {STREAM_BOUND:?}: {seen:?}"
        );
        match numbered(sub, |s| {
            s.recv_into_timeout(&mut buf, Duration::from_millis(100))
        }) {
            Ok(_) => {
                let s = seq(&buf);
                if let Some(e) = expected {
                    assert_eq!(s, e, "messages in order, each once: {seen:?}");
                }
                seen.first.get_or_insert(s);
                seen.last = Some(s);
                expected = Some(s + 1);
                seen.got += 1;
                each(seen.got);
            }
            Err(Error::Lagged { missed }) => {
                seen.lagged.push(missed);
                expected = expected.map(|e| e + missed);
            }
            Err(Error::UpstreamLost) => seen.upstream_lost += 1,
            Err(Error::Timeout { .. }) => {}
            Err(Error::Closed) => return seen,
            Err(e) => panic!("unexpected {e:?} after {seen:?}"),
        }
    }
}

/// Cuts `link` for `secs` seconds, in the background; the thread returns when the link
/// came back.
fn cut_for(link: &Link, secs: f64) -> std::thread::JoinHandle<Instant> {
    let link = link.clone();
    std::thread::spawn(move || {
        link.cut();
        std::thread::sleep(Duration::from_secs_f64(secs));
        link.restore();
        Instant::now()
    })
}

/// A reliable stream of `total` messages (1,000 a second) from host 0 to host 1 with a
/// 1 s Zenoh lease, its only link cut for `secs` seconds once the subscriber here has
/// 1,500 messages; `export` adds to the exporter's arguments. Returns what the
/// subscriber saw to the end and the importer's last line.
fn across_a_cut(total: u64, secs: f64, export: &[&str]) -> Option<(Seen, String)> {
    let hosts = Hosts::new(2, &[(0, 1)])?;
    let mut c = Chain::new();
    c.publish(&hosts.ns[0], total, 1000);
    let mut args = vec!["--lease-ms", LEASE_MS];
    args.extend(export);
    c.export(&hosts.ns[0], &[hosts.endpoint(0, 0)], &args);
    let (dst, importer) = c.import(
        &hosts.ns[1],
        &hosts.endpoint(0, 0),
        &["--lease-ms", LEASE_MS],
    );
    let mut sub = attach(&dst).subscriber().unwrap();
    let mut cut = None;
    // When each message came: the first after the link is back says how long recovery
    // took (printed, never asserted).
    let mut arrivals = Vec::with_capacity(total as usize);
    let seen = read_to_end(&mut sub, |got| {
        arrivals.push(Instant::now());
        if got == 1500 {
            cut = Some(cut_for(&hosts.links[0], secs));
        }
    });
    let back = cut.expect("the stream reached the cut").join().unwrap();
    if let Some(first) = arrivals.iter().find(|&&t| t >= back) {
        eprintln!(
            "recovery after a {secs} s cut: the first message {} ms after the link came back",
            first.duration_since(back).as_millis()
        );
    }
    assert_eq!(seen.last, Some(total - 1), "to the last message: {seen:?}");
    let line = c.finish(importer);
    assert_eq!(json_num(&line, "rejected"), 0, "{line}");
    // The cut did lose messages on the wire (the session closed with the lease): what
    // the subscriber got of them came from the cache, not from TCP's retransmission.
    assert!(json_num(&line, "recovered") > 0, "{line}");
    Some((seen, line))
}

/// (a) A reliable stream (1,000 messages a second) across a 2 s cut of the only link,
/// with a 1 s Zenoh lease: the session dies with the cut, what was on the wire is lost,
/// and the importer recovers it from the exporter's cache when the link is back. Its
/// subscriber sees every message from its first to the last, in order, no gap.
#[test]
fn a_two_second_cut_loses_nothing_of_a_reliable_stream() {
    let total = 12_000;
    let Some((seen, line)) = across_a_cut(total, 2.0, &[]) else {
        return;
    };
    assert!(seen.lagged.is_empty(), "no gap: {seen:?}");
    assert_eq!(seen.got, total - seen.first.unwrap(), "{seen:?}");
    assert_eq!(json_num(&line, "missed"), 0, "{line}");
    eprintln!("(a) {seen:?}; importer {line}");
}

/// (b) A cut longer than the cache (300 messages, about 0.3 s of this stream, against a
/// 3 s cut): the importer recovers what the cache still holds and its subscriber gets
/// one exact `Lagged` for the rest: every number accounted for.
#[test]
fn a_cut_longer_than_the_cache_is_one_exact_gap() {
    let total = 12_000;
    let Some((seen, line)) = across_a_cut(total, 3.0, &["--cache-messages", "300"]) else {
        return;
    };
    assert_eq!(seen.lagged.len(), 1, "one gap: {seen:?}");
    let missed: u64 = seen.lagged.iter().sum();
    assert_eq!(seen.first.unwrap() + seen.got + missed, total, "{seen:?}");
    assert_eq!(json_num(&line, "missed"), missed, "{line}");
    eprintln!("(b) {seen:?}; importer {line}");
}

/// (c) 50 ms delay and 10% packet loss each way on the link (`tc netem`): the reliable
/// stream arrives whole and in order.
#[test]
fn a_slow_lossy_link_delivers_everything_in_order() {
    let Some(hosts) = Hosts::new(2, &[(0, 1)]) else {
        return;
    };
    let how = hosts.links[0].degrade();
    let total = 3_000;
    let mut c = Chain::new();
    c.publish(&hosts.ns[0], total, 1000);
    c.export(&hosts.ns[0], &[hosts.endpoint(0, 0)], &[]);
    let (dst, importer) = c.import(&hosts.ns[1], &hosts.endpoint(0, 0), &[]);
    let mut sub = attach(&dst).subscriber().unwrap();
    let seen = read_to_end(&mut sub, |_| {});
    assert!(seen.lagged.is_empty(), "{seen:?}");
    assert_eq!(seen.last, Some(total - 1), "{seen:?}");
    assert_eq!(seen.got, total - seen.first.unwrap(), "{seen:?}");
    let line = c.finish(importer);
    assert_eq!(json_num(&line, "missed"), 0, "{line}");
    eprintln!("(c) {how}: {seen:?}; importer {line}");
}

/// (d) The exporter's host dies: its link goes silent and every process in it is
/// SIGKILLed, so nothing closes a connection. The importer learns it from the lease:
/// its subscriber gets `UpstreamLost`.
#[test]
fn the_exporters_host_dying_is_upstream_lost() {
    let Some(hosts) = Hosts::new(2, &[(0, 1)]) else {
        return;
    };
    let mut c = Chain::new();
    c.publish(&hosts.ns[0], 1_000_000, 1000);
    c.export(
        &hosts.ns[0],
        &[hosts.endpoint(0, 0)],
        &["--lease-ms", LEASE_MS],
    );
    let (dst, _importer) = c.import(
        &hosts.ns[1],
        &hosts.endpoint(0, 0),
        &["--lease-ms", LEASE_MS],
    );
    let mut sub = attach(&dst).subscriber().unwrap();
    let mut buf = Vec::new();
    let mut got = 0;
    let end = Instant::now() + STREAM_BOUND;
    while got < 300 {
        assert!(Instant::now() < end, "the stream did not start");
        if sub
            .recv_into_timeout(&mut buf, Duration::from_millis(100))
            .is_ok()
        {
            got += 1;
        }
    }
    hosts.links[0].cut();
    kill_all_in(&hosts.ns[0]);
    let mut told = false;
    while !told {
        assert!(
            Instant::now() < end,
            "no UpstreamLost within {STREAM_BOUND:?}"
        );
        match sub.recv_into_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(_) => {}
            Err(e) => match Error::from(e) {
                Error::UpstreamLost => told = true,
                Error::Timeout { .. } => {}
                e => panic!("unexpected {e:?}"),
            },
        }
    }
}

/// (e) One exporter, importers on two other hosts (each over its own link): both
/// subscribers get the whole stream, in order.
#[test]
fn one_exporter_feeds_importers_on_two_hosts() {
    let Some(hosts) = Hosts::new(3, &[(0, 1), (0, 2)]) else {
        return;
    };
    let total = 4_000;
    let mut c = Chain::new();
    c.publish(&hosts.ns[0], total, 1000);
    c.export(
        &hosts.ns[0],
        &[hosts.endpoint(0, 0), hosts.endpoint(1, 0)],
        &[],
    );
    let (d1, i1) = c.import(&hosts.ns[1], &hosts.endpoint(0, 0), &[]);
    let (d2, i2) = c.import(&hosts.ns[2], &hosts.endpoint(1, 0), &[]);
    let mut s1 = attach(&d1).subscriber().unwrap();
    let mut s2 = attach(&d2).subscriber().unwrap();
    let t = std::thread::spawn(move || read_to_end(&mut s2, |_| {}));
    let seen1 = read_to_end(&mut s1, |_| {});
    let seen2 = t.join().unwrap();
    for seen in [&seen1, &seen2] {
        assert!(seen.lagged.is_empty(), "{seen:?}");
        assert_eq!(seen.last, Some(total - 1), "{seen:?}");
        assert_eq!(seen.got, total - seen.first.unwrap(), "{seen:?}");
    }
    // (Indices shift as processes are taken out: the later one first.)
    for i in [i2, i1] {
        let line = c.finish(i);
        assert_eq!(json_num(&line, "missed"), 0, "{line}");
    }
}

/// The line `bridge list`, run on host `ns` connected to `ep`, prints for `key` (asked
/// again until it shows, within the bound: a session that just connected may not have
/// heard every token yet).
fn listed(ns: &str, ep: &str, key: &str) -> String {
    let end = Instant::now() + STREAM_BOUND;
    loop {
        let (lines, ok) = Proc::start_in(
            ns,
            "bridge list",
            &[
                "--json",
                "bridge",
                "list",
                "--connect",
                ep,
                "--seconds",
                "0",
            ],
        )
        .finish_all();
        assert!(ok, "{lines:?}");
        if let Some(l) = lines.into_iter().find(|l| l.contains(key)) {
            return l;
        }
        assert!(Instant::now() < end, "{key} never listed");
    }
}

/// One `service call` process here (shared memory is not a network thing): `calls` calls
/// on `name`, each with `deadline_ms`; returns its JSON line.
fn call(name: &str, calls: u64, deadline_ms: u64) -> String {
    let (c, d) = (calls.to_string(), deadline_ms.to_string());
    let p = Proc::start(
        "service call",
        &[
            "--backend",
            "posix",
            "--json",
            "service",
            "call",
            "--name",
            name,
            "--calls",
            &c,
            "--deadline-ms",
            &d,
        ],
    );
    let (line, _) = p.finish();
    line
}

/// (f) A service across hosts, called across a cut: host 0 runs the service's server
/// and the service exporter, host 1 the importer; the clients are `service call`
/// processes on host 1's side of the shared memory. Calls succeed; during a cut a call
/// ends at its deadline with `Timeout` (never a hang, never a late answer); after the
/// link is back (the session re-forms: the lease is 1 s) the next call succeeds.
#[test]
fn a_service_called_across_a_cut_times_out_then_answers_again() {
    let Some(hosts) = Hosts::new(2, &[(0, 1)]) else {
        return;
    };
    let mut c = Chain::new();
    let served = format!("/{}", unique_name("nsvc"));
    c.names.push(served.clone());
    c.procs.push(Proc::start_in(
        &hosts.ns[0],
        "server",
        &[
            "--backend",
            "posix",
            "--json",
            "service",
            "serve",
            "--name",
            &served,
        ],
    ));
    // (Attached, not only opened: the server is done creating it.)
    shm_core::testing::eventually("the service is made", support::BOUND, || {
        shm_posix::ShmOptions::new(&served)
            .open()
            .is_ok_and(|m| shm_core::service::Service::attach(m).is_ok())
    });
    let ep = hosts.endpoint(0, 0);
    let key = c.key.clone();
    let mut e = Proc::start_in(
        &hosts.ns[0],
        "service exporter",
        &[
            "--backend",
            "posix",
            "--json",
            "bridge",
            "export-service",
            "--name",
            &served,
            "--key",
            &key,
            "--listen",
            &ep,
            "--lease-ms",
            LEASE_MS,
        ],
    );
    e.event("exporting");
    c.procs.push(e);
    let remote = format!("/{}", unique_name("nsvcr"));
    c.names.push(remote.clone());
    let mut i = Proc::start_in(
        &hosts.ns[1],
        "service importer",
        &[
            "--backend",
            "posix",
            "--json",
            "bridge",
            "import-service",
            "--key",
            &key,
            "--name",
            &remote,
            "--connect",
            &ep,
            "--lease-ms",
            LEASE_MS,
        ],
    );
    i.event("importing");
    c.procs.push(i);

    let line = call(&remote, 20, 10_000);
    assert_eq!(json_num(&line, "ok"), 20, "{line}");
    // `bridge list` on host 1 shows the service, with its limits.
    let svc = listed(&hosts.ns[1], &ep, &key);
    let v: serde_json::Value = serde_json::from_str(&svc).unwrap();
    assert_eq!(v["kind"], "service", "{svc}");
    assert_eq!(v["max_request"], 4096, "{svc}");
    hosts.links[0].cut();
    let line = call(&remote, 1, 1000);
    assert_eq!(json_num(&line, "timeouts"), 1, "during the cut: {line}");
    assert_eq!(json_num(&line, "ok"), 0, "{line}");
    // Past the lease: the session is gone too, and must form again.
    std::thread::sleep(Duration::from_millis(1500));
    hosts.links[0].restore();
    let line = call(&remote, 1, 20_000);
    assert_eq!(json_num(&line, "ok"), 1, "after the cut: {line}");
    let line = call(&remote, 20, 10_000);
    assert_eq!(json_num(&line, "ok"), 20, "{line}");
}

/// (g) A channel across hosts: host 0 runs `send` and `bridge export --channel`, host 1
/// `bridge import --channel`; 80 MB of 4 KiB messages against rings of a few MiB and a
/// receiver here that reads slowly, so back-pressure holds the sender all the way; the
/// receiver gets every message in order, once, then `Closed`. (Not across a cut: see
/// BENCHMARKS.md section 16 for what a cut under full back-pressure did.)
#[test]
fn a_channel_across_hosts_holds_the_sender_and_delivers_in_order() {
    let Some(hosts) = Hosts::new(2, &[(0, 1)]) else {
        return;
    };
    let total = 20_000u64;
    let mut c = Chain::new();
    let q = c.src.clone();
    let n = total.to_string();
    c.procs.push(Proc::start_in(
        &hosts.ns[0],
        "sender",
        &[
            "--backend",
            "posix",
            "--json",
            "send",
            "--name",
            &q,
            "--messages",
            &n,
            "--size",
            "4096",
        ],
    ));
    // (Attached, not only opened: the sender is done creating it.)
    shm_core::testing::eventually("the channel is made", support::BOUND, || {
        shm_posix::ShmOptions::new(&q)
            .open()
            .is_ok_and(|m| shm_core::Channel::attach(m).is_ok())
    });
    c.export(&hosts.ns[0], &[hosts.endpoint(0, 0)], &["--channel"]);
    let (dst, importer) = c.import(&hosts.ns[1], &hosts.endpoint(0, 0), &["--channel"]);
    // `bridge list` on host 1 shows it as a channel.
    let line = listed(&hosts.ns[1], &hosts.endpoint(0, 0), &c.key);
    assert!(line.contains("\"kind\":\"channel\""), "{line}");
    let chan = shm_core::Channel::attach(shm_posix::ShmOptions::new(&dst).open().unwrap()).unwrap();
    let mut rx = chan.receiver(0).unwrap();
    let mut buf = Vec::new();
    let end = Instant::now() + STREAM_BOUND;
    for i in 0..total {
        loop {
            assert!(
                Instant::now() < end,
                "message {i} did not come; the processes said:\n{}",
                c.dump()
            );
            match rx.recv_into_timeout(&mut buf, Duration::from_millis(100)) {
                Ok(_) => break,
                Err(shm_core::RecvTimeoutError::Timeout { .. }) => {}
                Err(e) => panic!("message {i}: {e:?}"),
            }
        }
        assert_eq!(seq(&buf), i, "in order, each once");
        if i % 16 == 0 {
            std::thread::sleep(Duration::from_millis(1)); // a slow receiver
        }
    }
    loop {
        assert!(Instant::now() < end, "no Closed");
        match rx.recv_into_timeout(&mut buf, Duration::from_millis(100)) {
            Err(shm_core::RecvTimeoutError::Closed) => break,
            Err(shm_core::RecvTimeoutError::Timeout { .. }) => {}
            r => panic!("after the last message: {r:?}"),
        }
    }
    drop(rx);
    let line = c.finish(importer);
    assert_eq!(json_num(&line, "missed"), 0, "{line}");
    assert_eq!(json_num(&line, "rejected"), 0, "{line}");
    eprintln!("(g) importer {line}");
}
