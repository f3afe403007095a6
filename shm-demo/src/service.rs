//! Request/response between processes: `service run` (server and client processes, every
//! response matched to its request and checksummed), and `service serve` / `service call`
//! for two terminals on a named posix service.

use std::time::{Duration, Instant};

use shm_core::service::{Client, Service, ServiceOptions};
use shm_core::{CallTimeoutError, RecvTimeoutError, WaitMode};

use crate::cli::Ctx;
use crate::host::{self, Backend, Mem};
use crate::measure::histogram;
use crate::role::{Role, RoleArgs};
use crate::util::{json_num, Failure, Json, Result};

/// The smallest request: the call's number, the client's number, a checksum.
const HEAD: u64 = 24;
/// How long one call of `service run` may take before the run fails (a bound).
const CALL_BOUND: Duration = Duration::from_secs(10);
/// What a `run`'s servers are told to stop with (each takes one and leaves).
const STOP: &[u8] = b"stop";

/// A checksum of `bytes`, a word at a time (FNV-1a's constants over 8-byte words, with a
/// rotation): fast enough that a 64 KiB call measures the service, not the check.
fn sum(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Request `i` of client `c`, `size` bytes: the numbers, the checksum of the rest, the
/// rest derived from the numbers (a word at a time).
fn request(buf: &mut Vec<u8>, c: u64, i: u64, size: u64) {
    buf.clear();
    buf.extend_from_slice(&i.to_le_bytes());
    buf.extend_from_slice(&c.to_le_bytes());
    buf.extend_from_slice(&[0; 8]);
    let seed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ c;
    let body = (size - HEAD) as usize;
    let mut j = 0u64;
    while buf.len() < HEAD as usize + body {
        let w = (seed ^ j.wrapping_mul(0xD6E8_FEB8_6659_FD93)).to_le_bytes();
        let take = (HEAD as usize + body - buf.len()).min(8);
        buf.extend_from_slice(&w[..take]);
        j += 1;
    }
    let s = sum(&buf[HEAD as usize..]);
    buf[16..24].copy_from_slice(&s.to_le_bytes());
}

/// A server's answer to `req`: its numbers, the checksum of its whole bytes, then the
/// request's body (so the response depends on every byte of the request).
fn answer(req: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(req.len());
    out.extend_from_slice(&req[..16.min(req.len())]);
    out.extend_from_slice(&sum(req).to_le_bytes());
    out.extend_from_slice(req.get(HEAD as usize..).unwrap_or_default());
    out
}

/// Whether `resp` is the answer to `req`.
fn matches(req: &[u8], resp: &[u8]) -> bool {
    resp == answer(req).as_slice()
}

/// Busy work of `us` µs (a server's work per request: a spin, as a computation is).
fn work(us: u64) {
    if us == 0 {
        return;
    }
    let t = Instant::now();
    let d = Duration::from_micros(us);
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Serves requests until it takes a `stop` (a `run`'s server) or Ctrl-C (`serve`),
/// answering each after `work_us` of work. Returns how many it answered.
fn serve_loop(svc: &Service<Mem>, work_us: u64, spin: bool) -> std::result::Result<u64, String> {
    let mut server = svc.server().map_err(|e| e.to_string())?;
    if spin {
        server.set_wait(WaitMode::Spin);
    }
    let mut served = 0u64;
    loop {
        if crate::util::interrupted() {
            return Ok(served);
        }
        let mut req = match server.receive_timeout(Duration::from_millis(50)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout { .. }) => continue,
            Err(e) => return Err(format!("receive: {e}")),
        };
        let data = req.take_data();
        if data == STOP {
            let _ = req.respond_last(b"");
            return Ok(served);
        }
        work(work_us);
        // A cancelled request (its client went away) needs no answer.
        match req.respond_last(&answer(&data)) {
            Ok(()) => served += 1,
            Err(shm_core::RespondError::Cancelled) => {}
            Err(e) => return Err(format!("respond: {e}")),
        }
    }
}

/// A `run`'s server process (`pin`: on CPU 1, as a ping-pong's echo).
pub fn serve_role(mem: Mem, work_us: u64, spin: bool, pin: bool) -> String {
    if pin {
        host::pin_to_cpu(1);
    }
    let run = || -> std::result::Result<String, String> {
        let svc = Service::attach(mem).map_err(|e| e.to_string())?;
        let served = serve_loop(&svc, work_us, spin)?;
        Ok(Json::new()
            .num("pid", std::process::id())
            .num("served", served)
            .finish())
    };
    run().unwrap_or_else(|e| Json::new().str("error", &e).finish())
}

/// A `run`'s client process: `count` calls of `size` bytes, each answer checked, timed.
/// `who` is the client's number (bits 32 to 62), its spin in µs (low 32) and whether it
/// is pinned to CPU 0 (bit 63).
pub fn call_role(mem: Mem, who: u64, count: u64, size: u64, spin: bool) -> String {
    let (client, spin_us) = ((who >> 32) & 0x7fff_ffff, who & u64::from(u32::MAX));
    if who >> 63 == 1 {
        host::pin_to_cpu(0);
    }
    let run = || -> std::result::Result<String, String> {
        let svc = Service::attach(mem).map_err(|e| e.to_string())?;
        let mut c = svc.client().map_err(|e| e.to_string())?;
        c.set_wait(if spin {
            WaitMode::Spin
        } else {
            WaitMode::Block {
                spin: Duration::from_micros(spin_us),
            }
        });
        let mut hist = histogram();
        let mut req = Vec::new();
        let warm = (count / 10).min(1000);
        let mut measured = Instant::now();
        for i in 0..warm + count {
            if i == warm {
                measured = Instant::now();
            }
            request(&mut req, client, i, size);
            let t = Instant::now();
            let r = c
                .call_timeout(&req, CALL_BOUND)
                .map_err(|e| format!("call {i}: {e}"))?;
            let took = t.elapsed();
            if !matches(&req, &r.data) {
                return Err(format!(
                    "call {i}: the response is not this request's answer"
                ));
            }
            if i >= warm {
                let _ = hist.record(took.as_nanos() as u64);
            }
        }
        Ok(Json::new()
            .num("pid", std::process::id())
            .num("calls", count)
            .num("made", warm + count)
            .float("seconds", measured.elapsed().as_secs_f64())
            .num("p50_ns", hist.value_at_quantile(0.5))
            .num("p99_ns", hist.value_at_quantile(0.99))
            .finish())
    };
    run().unwrap_or_else(|e| Json::new().str("error", &e).finish())
}

/// `shm-demo --backend B service ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ServiceCmd {
    /// Server and client processes: every call's response matched to its request and
    /// checksummed; p50/p99 per call and calls per second.
    Run(RunArgs),
    /// Serve a named posix service until Ctrl-C (creating it if it does not exist).
    Serve(ServeArgs),
    /// Call a named posix service K times, each call with a deadline.
    Call(CallArgs),
}

impl ServiceCmd {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        match self {
            ServiceCmd::Run(a) => a.run(ctx),
            ServiceCmd::Serve(a) => a.run(ctx),
            ServiceCmd::Call(a) => a.run(ctx),
        }
    }
}

/// `service run`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  shm-demo --backend posix service run --clients 4 --servers 2 --calls 10000 --size 64 --json"
)]
pub struct RunArgs {
    /// Client processes (1 to 64).
    #[arg(long, default_value_t = 1)]
    clients: u32,
    /// Server processes (1 to 64).
    #[arg(long, default_value_t = 1)]
    servers: u32,
    /// Calls in all (shared out among the clients).
    #[arg(long, default_value_t = 10_000)]
    calls: u64,
    /// Bytes per request and per response (24 to 64 MiB).
    #[arg(long, default_value = "64", value_parser = crate::util::parse_size)]
    size: u64,
    /// The servers' work per request, in µs (a busy spin).
    #[arg(long, default_value_t = 0)]
    work_us: u64,
    /// Every end busy-polls instead of spinning then sleeping.
    #[arg(long)]
    spin: bool,
    /// How long a waiting client spins before it sleeps, in µs (default 50, as every
    /// end). 0: clients sleep at once, leaving the CPUs to the servers (how a server
    /// pool's scaling is measured on a machine with fewer cores than processes).
    #[arg(long, default_value_t = 50)]
    client_spin_us: u64,
}

impl RunArgs {
    fn run(self, ctx: Ctx) -> Result<()> {
        let backend = ctx.require_shm("service run needs --backend: posix, anon or memfd")?;
        if !(1..=64).contains(&self.clients) || !(1..=64).contains(&self.servers) {
            return Err(Failure::usage("--clients and --servers must be 1 to 64"));
        }
        if !(HEAD..=u64::from(shm_core::service::MAX_MESSAGE)).contains(&self.size) {
            return Err(Failure::usage("--size must be 24 bytes to 64 MiB"));
        }
        let size = self.size as u32;
        let opts = ServiceOptions::new()
            .max_request(size)
            .max_response(size)
            .slots((2 * self.clients + self.servers).max(8))
            .response_depth(1)
            .max_clients(self.clients + 1)
            .max_servers(self.servers);
        let mem = host::create(backend, opts.segment_len()?)?;
        let svc = Service::create(mem, &opts)?;
        let wait = if self.spin {
            crate::measure::Wait::Spin
        } else {
            crate::measure::Wait::Block
        };
        let mut servers = Vec::new();
        // One client and one server: pinned to CPUs 0 and 1, as `pingpong` pins its two
        // sides, so that the round trip compares with the channel's.
        let pin = self.clients == 1 && self.servers == 1;
        for _ in 0..self.servers {
            let role = RoleArgs::new(Role::Serve)
                .gap_us(self.work_us)
                .size(u64::from(pin))
                .wait(wait);
            servers.push(host::start_peer(
                backend,
                svc.raw().memory(),
                role,
                |r, m| {
                    serve_role(
                        m,
                        r.gap_us,
                        r.wait == crate::measure::Wait::Spin,
                        r.size == 1,
                    )
                },
            )?);
        }
        let n = u64::from(self.clients);
        let share = |j: u64| self.calls / n + u64::from(j < self.calls % n);
        let mut clients = Vec::new();
        let t = Instant::now();
        for j in 0..n {
            // The client's number and its spin travel in `gap_us` (number << 32 | spin).
            let role = RoleArgs::new(Role::Call)
                .count(share(j))
                .size(self.size)
                .gap_us(
                    (u64::from(pin) << 63)
                        | (j << 32)
                        | self.client_spin_us.min(u64::from(u32::MAX)),
                )
                .wait(wait);
            clients.push(host::start_peer(
                backend,
                svc.raw().memory(),
                role,
                |r, m| {
                    call_role(
                        m,
                        r.gap_us,
                        r.count,
                        r.size,
                        r.wait == crate::measure::Wait::Spin,
                    )
                },
            )?);
        }
        let mut problem = None;
        let mut lines = Vec::new();
        for c in clients {
            match c
                .finish()
                .and_then(|l| crate::util::parse_peer_line(&l).map(|()| l))
            {
                Ok(l) => lines.push(l),
                Err(f) => {
                    problem.get_or_insert(f.what);
                }
            }
        }
        let seconds = t.elapsed().as_secs_f64();
        // Each server takes one stop and leaves (one-of-N: no two take the same).
        let mut stopper = svc.client()?;
        for _ in 0..self.servers {
            if let Err(e) = stopper.call_timeout(STOP, CALL_BOUND) {
                problem.get_or_insert(format!("stopping a server: {e}"));
                break;
            }
        }
        let mut served = 0.0;
        for s in servers {
            match s
                .finish()
                .and_then(|l| crate::util::parse_peer_line(&l).map(|()| l))
            {
                Ok(l) => served += json_num(&l, "served").unwrap_or(0.0),
                Err(f) => {
                    problem.get_or_insert(f.what);
                }
            }
        }
        let calls: f64 = lines.iter().filter_map(|l| json_num(l, "calls")).sum();
        // Every call made (warm-up included) was served once, by one server.
        let made: f64 = lines.iter().filter_map(|l| json_num(l, "made")).sum();
        if problem.is_none() && (calls as u64 != self.calls || served != made) {
            problem = Some(format!(
                "{calls} calls answered and checked of {}; {served} served of {made} made",
                self.calls
            ));
        }
        let worst = |k: &str| {
            lines
                .iter()
                .filter_map(|l| json_num(l, k))
                .fold(0.0f64, f64::max)
        };
        let (p50, p99) = (worst("p50_ns"), worst("p99_ns"));
        // The measured calls (after each client's warm-up) over the longest client's time
        // for them: the clients run at once.
        let rate = calls / worst("seconds");
        let line = Json::new()
            .str("backend", backend.name())
            .num("clients", self.clients)
            .num("servers", self.servers)
            .num("calls", calls as u64)
            .num("size", self.size)
            .num("work_us", self.work_us)
            .bool("spin", self.spin)
            .num("client_spin_us", self.client_spin_us)
            .num("p50_ns", p50 as u64)
            .num("p99_ns", p99 as u64)
            .float("calls_per_s", rate)
            .float("seconds", seconds)
            .raw("per_client", &format!("[{}]", lines.join(",")));
        let text = |verdict: &str| {
            format!(
                "service ({}): {} calls of {} B from {} client process(es) to {} server process(es){}: p50 {:.1} µs, p99 {:.1} µs (worst client), {:.0} calls/s; {verdict}",
                backend.name(),
                calls as u64,
                self.size,
                self.clients,
                self.servers,
                if self.work_us > 0 {
                    format!(" working {} µs each", self.work_us)
                } else {
                    String::new()
                },
                p50 / 1000.0,
                p99 / 1000.0,
                rate
            )
        };
        crate::util::conclude(ctx.json, line, text, problem)
    }
}

/// Opens the named posix service, or creates it (the first `serve`).
fn open_or_create(name: &str, size: u64) -> Result<(Service<Mem>, bool)> {
    let opened = shm_posix::ShmOptions::new(name).open();
    if let Ok(mem) = opened {
        return Ok((Service::attach(Mem::Posix(mem))?, false));
    }
    let opts = ServiceOptions::new()
        .max_request(size as u32)
        .max_response(size as u32)
        .slots(64)
        .max_clients(64)
        .max_servers(64);
    crate::util::remember_segment(name);
    let mem = shm_posix::ShmOptions::new(name)
        .size(opts.segment_len()?)
        .create()?;
    Ok((Service::create(Mem::Posix(mem), &opts)?, true))
}

/// `service serve`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  shm-demo --backend posix service serve --name /calc --work-us 10   # terminal 1 (and 2, ...)\n  shm-demo --backend posix service call --name /calc --calls 1000       # another terminal"
)]
pub struct ServeArgs {
    /// The service's name.
    #[arg(long)]
    name: String,
    /// Work per request, in µs (a busy spin).
    #[arg(long, default_value_t = 0)]
    work_us: u64,
    /// The largest request and response, when this `serve` creates the service.
    #[arg(long, default_value = "4096", value_parser = crate::util::parse_size)]
    size: u64,
}

impl ServeArgs {
    fn run(self, ctx: Ctx) -> Result<()> {
        ctx.require(
            Backend::Posix,
            "service serve works on a named posix segment",
            false,
        )?;
        if !(HEAD..=u64::from(shm_core::service::MAX_MESSAGE)).contains(&self.size) {
            return Err(Failure::usage("--size must be 24 bytes to 64 MiB"));
        }
        let (svc, created) = open_or_create(&self.name, self.size)?;
        // Ctrl-C ends the loop (a flag it looks at every 50 ms), which then reports and
        // lets the segment go (the creator's drop removes the name).
        crate::util::hold_until_signal();
        if !ctx.json {
            println!(
                "serving {} ({}; pid {}) until Ctrl-C",
                self.name,
                if created { "created" } else { "attached" },
                std::process::id()
            );
        }
        let served = serve_loop(&svc, self.work_us, false).map_err(Failure::new)?;
        let line = Json::new()
            .str("name", &self.name)
            .num("pid", std::process::id())
            .num("served", served)
            .machine()
            .finish();
        if ctx.json {
            println!("{line}");
        } else {
            println!("served {served} request(s)");
        }
        if created {
            crate::util::forget_segment(&self.name);
        }
        Ok(())
    }
}

/// `service call`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  shm-demo --backend posix service call --name /calc --calls 1000 --deadline-ms 100 --json"
)]
pub struct CallArgs {
    /// The service's name.
    #[arg(long)]
    name: String,
    /// Calls to make.
    #[arg(long, default_value_t = 1000)]
    calls: u64,
    /// Bytes per request (24 up to the service's largest).
    #[arg(long, default_value = "64", value_parser = crate::util::parse_size)]
    size: u64,
    /// Each call's deadline, in ms: it travels with the request, and the call ends by
    /// then whatever the servers do.
    #[arg(long, default_value_t = 1000)]
    deadline_ms: u64,
    /// Send the requests idempotent: a request whose server dies before answering goes
    /// back to the queue once (counted as `retried`) instead of ending `peer_died`.
    #[arg(long)]
    idempotent: bool,
}

impl CallArgs {
    fn run(self, ctx: Ctx) -> Result<()> {
        ctx.require(
            Backend::Posix,
            "service call works on a named posix segment",
            false,
        )?;
        let mem = shm_posix::ShmOptions::new(&self.name).open()?;
        let svc = Service::attach(Mem::Posix(mem))?;
        if !(HEAD..=u64::from(svc.max_request())).contains(&self.size) {
            return Err(Failure::usage(format!(
                "--size must be 24 to {} bytes (the service's largest request)",
                svc.max_request()
            )));
        }
        let mut c = svc.client()?;
        c.set_idempotent(self.idempotent);
        let deadline = Duration::from_millis(self.deadline_ms);
        let tally = call_loop(&mut c, self.calls, self.size, deadline)?;
        let line = Json::new()
            .str("name", &self.name)
            .num("calls", self.calls)
            .num("ok", tally.ok)
            .num("timeouts", tally.timeouts)
            .num("peer_died", tally.peer_died)
            .num("retried", tally.retried)
            .num("other", tally.other)
            .num("p50_ns", tally.hist.value_at_quantile(0.5))
            .num("p99_ns", tally.hist.value_at_quantile(0.99));
        let problem = tally
            .wrong
            .map(|i| format!("call {i}: a response that is not this request's answer"));
        let text = |verdict: &str| {
            format!(
                "service call {}: {} calls: {} ok, {} timeouts, {} peer died, {} retried, {} other; p50 {:.1} µs, p99 {:.1} µs; {verdict}",
                self.name,
                self.calls,
                tally.ok,
                tally.timeouts,
                tally.peer_died,
                tally.retried,
                tally.other,
                tally.hist.value_at_quantile(0.5) as f64 / 1000.0,
                tally.hist.value_at_quantile(0.99) as f64 / 1000.0,
            )
        };
        crate::util::conclude(ctx.json, line, text, problem)
    }
}

struct Tally {
    ok: u64,
    timeouts: u64,
    peer_died: u64,
    retried: u64,
    other: u64,
    wrong: Option<u64>,
    hist: hdrhistogram::Histogram<u64>,
}

/// `calls` calls, each with `deadline`; every outcome counted, never a hang.
fn call_loop(c: &mut Client<Mem>, calls: u64, size: u64, deadline: Duration) -> Result<Tally> {
    let mut t = Tally {
        ok: 0,
        timeouts: 0,
        peer_died: 0,
        retried: 0,
        other: 0,
        wrong: None,
        hist: histogram(),
    };
    let mut req = Vec::new();
    for i in 0..calls {
        crate::util::check_interrupted()?;
        request(&mut req, u64::from(std::process::id()), i, size);
        let start = Instant::now();
        let outcome = c.send_request_timeout(&req, deadline).and_then(|mut p| {
            let r = p.receive_timeout(deadline);
            if p.retried() {
                t.retried += 1;
            }
            r
        });
        match outcome {
            Ok(r) => {
                let _ = t.hist.record(start.elapsed().as_nanos() as u64);
                if matches(&req, &r.data) {
                    t.ok += 1;
                } else {
                    t.wrong.get_or_insert(i);
                }
            }
            Err(CallTimeoutError::Timeout { .. }) => t.timeouts += 1,
            Err(CallTimeoutError::PeerDied { .. }) => t.peer_died += 1,
            Err(_) => t.other += 1,
        }
    }
    Ok(t)
}
