//! Seeing inside a running system: `ls`, `inspect`, `hz` and `cleanup`. Everything here
//! maps segments read-only, writes nothing and waits for nothing (but `hz`, which watches
//! on purpose until its time is up or Ctrl-C).

use crate::cli::Ctx;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shm_core::inspect::{Detail, Inspection};
use shm_core::os::proc::{liveness, Liveness};
use shm_posix::{Listing, SegmentState};

use crate::errors;
use crate::util::{fmt_bytes, interrupted, Failure, Json, Result};

fn alive(pid: u32) -> bool {
    liveness(pid) == Liveness::Alive
}

/// A holder's pid for people: "nobody", or the pid and whether it lives.
fn who(p: u32) -> String {
    if p == 0 {
        "nobody".to_owned()
    } else {
        format!("pid {p} ({})", if alive(p) { "alive" } else { "dead" })
    }
}

fn kind_name(i: Option<&Inspection>) -> &'static str {
    match i.and_then(|i| i.kind) {
        Some(shm_core::Kind::Record) => "record",
        Some(shm_core::Kind::SeqLock) => "seqlock",
        Some(shm_core::Kind::Channel) => "channel",
        Some(shm_core::Kind::Broadcast) => "broadcast",
        Some(shm_core::Kind::Event) => "event",
        Some(shm_core::Kind::Service) => "service",
        None => "-",
    }
}

/// A memfd server's segment, looked at through a read-only connection.
fn listing_of_socket(path: &Path) -> Listing {
    let name = path.display().to_string();
    match shm_memfd::connect_read_only(path, Duration::from_secs(2)) {
        Ok(mem) => {
            let size = shm_core::SharedMemory::len(&mem) as u64;
            let seen = shm_core::inspect::inspect(mem);
            let state = match seen.verdict {
                shm_core::inspect::Verdict::Foreign => SegmentState::Foreign,
                shm_core::inspect::Verdict::Corrupt => SegmentState::Corrupt,
                // A server that answers is alive.
                _ => SegmentState::Live,
            };
            Listing {
                name,
                size,
                state,
                reason: seen.problem.clone(),
                held: true,
                inspection: Some(seen),
            }
        }
        Err(e) => Listing {
            name,
            size: 0,
            state: SegmentState::Foreign,
            reason: Some(e.to_string()),
            held: false,
            inspection: None,
        },
    }
}

/// A peer's pid for the listing: as it is, or marked "(dead)".
fn pid_mark(p: u32) -> String {
    if alive(p) {
        p.to_string()
    } else {
        format!("{p} (dead)")
    }
}

/// "sender 12, receiver 13" / "publisher 12, 3 subscribers (4, 5, 6)"; a dead peer is
/// marked "(dead)".
fn peers_text(i: &Inspection) -> String {
    match &i.detail {
        Detail::Channel(rings) => rings
            .iter()
            .map(|r| {
                let who = |p: u32| {
                    if p == 0 {
                        "-".to_owned()
                    } else {
                        pid_mark(p)
                    }
                };
                format!(
                    "ring {}: sender {}, receiver {}",
                    r.ring,
                    who(r.sender_pid),
                    who(r.receiver_pid)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Detail::Broadcast(b) => {
            let subs: Vec<String> = b
                .lines
                .iter()
                .filter(|l| l.state == "active")
                .map(|l| pid_mark(l.pid))
                .collect();
            format!(
                "publisher {}, {} subscriber(s){}",
                if b.publisher_pid == 0 {
                    "-".to_owned()
                } else {
                    pid_mark(b.publisher_pid)
                },
                subs.len(),
                if subs.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", subs.join(", "))
                }
            )
        }
        Detail::SeqLock { writer_pid, .. } if *writer_pid != 0 => {
            format!("writer {}", pid_mark(*writer_pid))
        }
        Detail::Service(s) => {
            let list = |v: &[u32]| {
                v.iter()
                    .map(|&p| pid_mark(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "{} client(s) ({}), {} server(s) ({}), {} request(s) in flight",
                s.client_pids.len(),
                list(&s.client_pids),
                s.server_pids.len(),
                list(&s.server_pids),
                s.requests.len()
            )
        }
        _ => String::new(),
    }
}

fn listing_json(l: &Listing) -> String {
    let i = l.inspection.as_ref();
    let peers: Vec<String> = i
        .map(|i| i.peers().iter().map(u32::to_string).collect())
        .unwrap_or_default();
    // Of those, the ones whose process is gone (zombies included).
    let dead_peers: Vec<String> = i
        .map(|i| {
            i.peers()
                .into_iter()
                .filter(|&p| p != 0 && !alive(p))
                .map(|p| p.to_string())
                .collect()
        })
        .unwrap_or_default();
    let creator = i.map_or(0, |i| i.creator_pid);
    Json::new()
        .str("name", &l.name)
        .str("kind", kind_name(i))
        .num("size", l.size)
        .opt_str("record", i.and_then(|i| i.record_name()))
        .num("creator_pid", creator)
        .bool("creator_alive", creator != 0 && alive(creator))
        .str("state", l.state.name())
        .opt_str("reason", l.reason.as_deref())
        .bool("held", l.held)
        .raw("peers", &format!("[{}]", peers.join(",")))
        .raw("dead_peers", &format!("[{}]", dead_peers.join(",")))
        .finish()
}

/// `shm-demo ls`: every entry of /dev/shm, and the memfd servers named.
pub fn ls(sockets: &[PathBuf], json: bool) -> Result<()> {
    let mut all = shm_posix::list("/")?;
    all.extend(sockets.iter().map(|p| listing_of_socket(p)));
    if json {
        for l in &all {
            println!("{}", listing_json(l));
        }
        return Ok(());
    }
    println!(
        "{:<32} {:<9} {:>10} {:<10} {:<16} {:<7} peers / reason",
        "name", "kind", "size", "record", "creator", "state"
    );
    for l in &all {
        let i = l.inspection.as_ref();
        let creator = match i.map(|i| i.creator_pid) {
            Some(0) | None => "-".to_owned(),
            Some(p) => format!("{p} ({})", if alive(p) { "alive" } else { "dead" }),
        };
        let tail = match (l.state, i) {
            (SegmentState::Live, Some(i)) => peers_text(i),
            _ => l.reason.clone().unwrap_or_default(),
        };
        println!(
            "{:<32} {:<9} {:>10} {:<10} {:<16} {:<7} {}",
            l.name,
            kind_name(i),
            fmt_bytes(l.size),
            i.and_then(|i| i.record_name()).unwrap_or("-"),
            creator,
            l.state.name(),
            tail
        );
    }
    Ok(())
}

fn look_at(name: Option<&str>, socket: Option<&Path>) -> Result<Listing> {
    match (name, socket) {
        (Some(n), None) => shm_posix::inspect(n).map_err(errors::posix),
        (None, Some(p)) => Ok(listing_of_socket(p)),
        _ => Err(Failure::new(
            "name a segment (NAME) or a memfd server (--socket PATH)",
        )),
    }
}

/// `shm-demo inspect NAME`: the header field by field and the kind's shared state.
pub fn inspect(name: Option<&str>, socket: Option<&Path>, json: bool) -> Result<()> {
    let l = look_at(name, socket)?;
    let Some(i) = l.inspection.as_ref() else {
        if json {
            println!("{}", listing_json(&l));
        } else {
            println!(
                "{}: {} ({})",
                l.name,
                l.state.name(),
                l.reason.unwrap_or_default()
            );
        }
        return Ok(());
    };
    let schema = i.schema.map(|s| {
        format!(
            "{} v{} ({} bytes, align {})",
            s.name(),
            s.version(),
            s.size(),
            s.align()
        )
    });
    let mut j = Json::new()
        .str("name", &l.name)
        .str("kind", kind_name(Some(i)))
        .num("size", l.size)
        .str("state", l.state.name())
        .opt_str("reason", l.reason.as_deref())
        .opt_str("schema", schema.as_deref())
        .num("creator_pid", i.creator_pid)
        .bool("creator_alive", alive(i.creator_pid));
    let mut text = vec![
        format!("name        {}", l.name),
        format!("kind        {}", kind_name(Some(i))),
        format!("size        {} ({})", l.size, fmt_bytes(l.size)),
        format!(
            "state       {}{}",
            l.state.name(),
            l.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        format!("schema      {}", schema.as_deref().unwrap_or("-")),
        if i.creator_pid == 0 {
            // A foreign file, or a header not written yet: no creator recorded.
            "creator     unknown (none recorded)".to_owned()
        } else {
            format!(
                "creator     pid {} ({})",
                i.creator_pid,
                if alive(i.creator_pid) {
                    "alive"
                } else {
                    "dead"
                }
            )
        },
    ];
    match &i.detail {
        Detail::None => {}
        Detail::Service(s) => {
            text.push(format!(
                "service     requests up to {}, responses up to {}, {} slots, streams of {}; {} served",
                fmt_bytes(s.request_max.into()),
                fmt_bytes(s.response_max.into()),
                s.slots,
                s.response_depth,
                s.served
            ));
            let who_all = |v: &[u32]| {
                if v.is_empty() {
                    "none".to_owned()
                } else {
                    v.iter().map(|&p| who(p)).collect::<Vec<_>>().join(", ")
                }
            };
            text.push(format!("            clients {}", who_all(&s.client_pids)));
            let servers: Vec<String> = s
                .server_pids
                .iter()
                .map(|&p| format!("{} holding {}", who(p), s.in_flight(p)))
                .collect();
            text.push(format!(
                "            servers {}",
                if servers.is_empty() {
                    "none".to_owned()
                } else {
                    servers.join(", ")
                }
            ));
            text.push(format!(
                "            {} request(s) in slots{}",
                s.requests.len(),
                match s.oldest_queued() {
                    Some(age) =>
                        format!(", the oldest queued for {}", crate::util::fmt_duration(age)),
                    None => String::new(),
                }
            ));
            let list = |v: &mut dyn Iterator<Item = String>| {
                format!("[{}]", v.collect::<Vec<_>>().join(","))
            };
            j = j
                .num("request_max", s.request_max)
                .num("response_max", s.response_max)
                .num("slots", s.slots)
                .num("response_depth", s.response_depth)
                .num("served", s.served)
                .raw(
                    "client_pids",
                    &list(&mut s.client_pids.iter().map(|p| p.to_string())),
                )
                .raw(
                    "servers",
                    &list(&mut s.server_pids.iter().map(|&p| {
                        Json::new()
                            .num("pid", p)
                            .bool("alive", alive(p))
                            .num("in_flight", s.in_flight(p))
                            .finish()
                    })),
                )
                .raw(
                    "requests",
                    &list(&mut s.requests.iter().map(|r| {
                        Json::new()
                            .num("slot", r.slot)
                            .str("phase", r.phase)
                            .num("client_pid", r.client_pid)
                            .num("server_pid", r.server_pid)
                            .num("age_ns", r.age.as_nanos())
                            .finish()
                    })),
                )
                .raw(
                    "oldest_queued_ns",
                    &s.oldest_queued()
                        .map_or("null".to_owned(), |a| a.as_nanos().to_string()),
                );
        }
        Detail::Event(e) => {
            text.push(format!(
                "event       ids below {}, {} notifier lines; listener {}{}{}",
                e.max_ids,
                e.max_notifiers,
                who(e.listener_pid),
                if e.sleepers > 0 { ", sleeping" } else { "" },
                if e.listener_closed { ", closed" } else { "" },
            ));
            text.push(format!(
                "            notifiers {}; pending ids {:?}",
                if e.notifier_pids.is_empty() {
                    "none".to_owned()
                } else {
                    e.notifier_pids
                        .iter()
                        .map(|&p| who(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                e.pending
            ));
            let list = |v: &mut dyn Iterator<Item = String>| {
                format!("[{}]", v.collect::<Vec<_>>().join(","))
            };
            j = j
                .num("max_ids", e.max_ids)
                .num("max_notifiers", e.max_notifiers)
                .num("listener_pid", e.listener_pid)
                .bool("listener_alive", alive(e.listener_pid))
                .bool("listener_closed", e.listener_closed)
                .num("sleepers", e.sleepers)
                .raw(
                    "notifier_pids",
                    &list(&mut e.notifier_pids.iter().map(|p| p.to_string())),
                )
                .raw(
                    "pending",
                    &list(&mut e.pending.iter().map(|p| p.to_string())),
                );
        }
        Detail::SeqLock {
            sequence,
            writer_pid,
        } => {
            j = j.num("sequence", sequence).num("writer_pid", writer_pid);
            text.push(format!(
                "seqlock     sequence {sequence} ({}), writer {}",
                if sequence % 2 == 1 {
                    "a write is in progress"
                } else {
                    "stable"
                },
                if *writer_pid == 0 {
                    "none".to_owned()
                } else {
                    writer_pid.to_string()
                }
            ));
        }
        Detail::Channel(rings) => {
            let mut arr = Vec::new();
            for r in rings {
                text.push(format!(
                    "ring {}      capacity {}, tail {}, head {}, in flight {} bytes, free {} bytes",
                    r.ring,
                    fmt_bytes(r.capacity),
                    r.tail,
                    r.head,
                    r.used,
                    r.capacity.saturating_sub(r.used)
                ));
                text.push(format!(
                    "            sender {}{}{}; receiver {}{}{}",
                    who(r.sender_pid),
                    if r.sender_sleeping { ", sleeping" } else { "" },
                    if r.sender_closed { ", closed" } else { "" },
                    who(r.receiver_pid),
                    if r.receiver_sleeping {
                        ", sleeping"
                    } else {
                        ""
                    },
                    if r.receiver_closed { ", closed" } else { "" },
                ));
                arr.push(
                    Json::new()
                        .num("ring", r.ring)
                        .num("capacity", r.capacity)
                        .num("tail", r.tail)
                        .num("head", r.head)
                        .num("used", r.used)
                        .num("free", r.capacity.saturating_sub(r.used))
                        .num("sender_pid", r.sender_pid)
                        .bool("sender_alive", alive(r.sender_pid))
                        .bool("sender_sleeping", r.sender_sleeping)
                        .num("receiver_pid", r.receiver_pid)
                        .bool("receiver_alive", alive(r.receiver_pid))
                        .bool("receiver_sleeping", r.receiver_sleeping)
                        .finish(),
                );
            }
            j = j.raw("rings", &format!("[{}]", arr.join(",")));
        }
        Detail::Broadcast(b) => {
            text.push(format!(
                "broadcast   {:?}, {} slots of {} bytes (messages up to {}), {} subscriber lines",
                b.mode, b.slots, b.slot_size, b.max_message, b.max_subscribers
            ));
            text.push(format!(
                "            tail {} (messages published), publisher {}{}",
                b.tail,
                if b.publisher_pid == 0 {
                    "none".to_owned()
                } else {
                    format!(
                        "pid {} ({})",
                        b.publisher_pid,
                        if alive(b.publisher_pid) {
                            "alive"
                        } else {
                            "dead"
                        }
                    )
                },
                if b.closed { ", closed" } else { "" }
            ));
            if b.relayed {
                text.push(format!(
                    "            relayed (an import: bridges do not export it), numbering from {}, upstream {}",
                    b.base,
                    if b.upstream_lost { "LOST" } else { "present" }
                ));
            }
            let reliable = b.mode == shm_core::BroadcastMode::Reliable;
            let mut arr = Vec::new();
            for l in &b.lines {
                let lag = reliable.then(|| b.tail.saturating_sub(l.position));
                // A lossy subscriber keeps its position to itself (the line's word stays
                // as it joined): shown as such, not as a position 0 beside a tail of
                // thousands.
                let position = reliable.then_some(l.position);
                text.push(format!(
                    "line {:<6} pid {} ({}), {}, position {}, lag {}",
                    l.line,
                    l.pid,
                    if alive(l.pid) { "alive" } else { "dead" },
                    l.state,
                    position.map_or("n/a (lossy: the subscriber's own)".to_owned(), |p| p
                        .to_string()),
                    lag.map_or("n/a (lossy)".to_owned(), |x| x.to_string())
                ));
                arr.push(
                    Json::new()
                        .num("line", l.line)
                        .num("pid", l.pid)
                        .bool("alive", alive(l.pid))
                        .str("state", l.state)
                        .raw(
                            "position",
                            &position.map_or("null".to_owned(), |p| p.to_string()),
                        )
                        .raw("lag", &lag.map_or("null".to_owned(), |x| x.to_string()))
                        .finish(),
                );
            }
            j = j
                .str("mode", if reliable { "reliable" } else { "lossy" })
                .num("slots", b.slots)
                .num("slot_size", b.slot_size)
                .num("tail", b.tail)
                .num("publisher_pid", b.publisher_pid)
                .bool("publisher_alive", alive(b.publisher_pid))
                .bool("relayed", b.relayed)
                .bool("upstream_lost", b.upstream_lost)
                .num("base", b.base)
                .raw("subscribers", &format!("[{}]", arr.join(",")));
        }
    }
    if json {
        println!("{}", j.finish());
    } else {
        for t in text {
            println!("{t}");
        }
    }
    Ok(())
}

/// One look for `hz`: (messages so far or None, bytes so far, per-line positions).
struct Sample {
    messages: Option<u64>,
    bytes: u64,
    /// For a channel: the length of the next unread message (to estimate messages).
    msg_len: Option<u64>,
    lines: Vec<(u32, u64)>,
    tail: u64,
}

fn sample(l: &Listing) -> Option<Sample> {
    match &l.inspection.as_ref()?.detail {
        Detail::Channel(rings) => Some(Sample {
            messages: None,
            bytes: rings.iter().map(|r| r.tail).sum(),
            msg_len: rings.iter().find_map(|r| r.next_len),
            lines: Vec::new(),
            tail: 0,
        }),
        Detail::Broadcast(b) => Some(Sample {
            messages: Some(b.tail),
            bytes: 0,
            msg_len: None,
            lines: b
                .lines
                .iter()
                .filter(|l| l.state == "active")
                .map(|l| (l.pid, l.position))
                .collect(),
            tail: b.tail,
        }),
        Detail::Service(s) => Some(Sample {
            messages: Some(s.served),
            bytes: 0,
            msg_len: None,
            lines: Vec::new(),
            tail: 0,
        }),
        _ => None,
    }
}

/// `shm-demo hz NAME`: watches a channel or broadcast without joining it and prints its
/// rate each second, for `seconds` (0: until Ctrl-C).
pub fn hz(name: Option<&str>, socket: Option<&Path>, seconds: u64, json: bool) -> Result<()> {
    let first = look_at(name, socket)?;
    let label = first.name.clone();
    let Some(mut last) = sample(&first) else {
        let what = match first.inspection.as_ref().and_then(|i| i.kind) {
            Some(_) => format!(
                "is a {} ({})",
                kind_name(first.inspection.as_ref()),
                first.state.name()
            ),
            None => format!(
                "is not a segment of ours ({}{})",
                first.state.name(),
                first
                    .reason
                    .as_deref()
                    .map_or(String::new(), |r| format!(": {r}"))
            ),
        };
        return Err(Failure::new(format!(
            "{label} {what}: hz watches channels, broadcasts and services"
        )));
    };
    let start = Instant::now();
    let mut t_last = Instant::now();
    let mut n = 0u64;
    while !interrupted() && (seconds == 0 || n < seconds) {
        std::thread::sleep(Duration::from_secs(1));
        n += 1;
        let now = look_at(name, socket)?;
        let Some(s) = sample(&now) else {
            return Err(Failure::new(format!(
                "{label} is gone or changed ({}: {})",
                now.state.name(),
                now.reason.unwrap_or_default()
            )));
        };
        let dt = t_last.elapsed().as_secs_f64();
        t_last = Instant::now();
        let counted = match (s.messages, last.messages) {
            (Some(a), Some(b)) => Some(a.saturating_sub(b)),
            _ => None,
        };
        let (msgs, bytes, estimated) = match (s.messages, last.messages) {
            (Some(a), Some(b)) => {
                let m = a.saturating_sub(b) as f64 / dt;
                (m, f64::NAN, false)
            }
            _ => {
                let moved = s.bytes.saturating_sub(last.bytes);
                let b = moved as f64 / dt;
                // Each message takes an 8-byte header and its payload padded to 8.
                let per = s
                    .msg_len
                    .or(last.msg_len)
                    .map(|len| 8 + len.div_ceil(8) * 8);
                // Nothing moved: a quiet channel is 0 msg/s, not unknown.
                let m = if moved == 0 {
                    0.0
                } else {
                    per.map_or(f64::NAN, |p| b / p as f64)
                };
                (m, b, true)
            }
        };
        let lags: Vec<String> = s
            .lines
            .iter()
            .map(|(pid, pos)| format!("{pid}:{}", s.tail.saturating_sub(*pos)))
            .collect();
        if json {
            let mut j = Json::new()
                .str("name", &label)
                .float("t", start.elapsed().as_secs_f64())
                .float("msgs_per_s", msgs)
                .bool("msgs_estimated", estimated);
            if estimated {
                j = j.float("bytes_per_s", bytes);
            }
            if let Some(c) = counted {
                // The messages published in this interval, counted (not a rate).
                j = j.num("messages", c);
            }
            println!(
                "{}",
                j.raw(
                    "lags",
                    &format!(
                        "[{}]",
                        s.lines
                            .iter()
                            .map(|(pid, pos)| format!(
                                "{{\"pid\":{pid},\"lag\":{}}}",
                                s.tail.saturating_sub(*pos)
                            ))
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                )
                .finish()
            );
        } else {
            println!(
                "{label}: {} msg/s{}{}{}",
                if msgs.is_finite() {
                    format!("{msgs:.0}")
                } else {
                    "?".to_owned()
                },
                if estimated {
                    " (est. from the message size)"
                } else {
                    ""
                },
                if estimated {
                    format!(", {}/s", fmt_bytes(bytes as u64))
                } else {
                    String::new()
                },
                if lags.is_empty() {
                    String::new()
                } else {
                    format!(", lag per subscriber {}", lags.join(" "))
                }
            );
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        last = s;
    }
    Ok(())
}

/// `shm-demo cleanup`: removes (or, `dry_run`, names) the segments of ours that no live
/// process holds, saying why for each.
pub fn cleanup(prefix: &str, dry_run: bool, json: bool) -> Result<()> {
    let done = shm_posix::cleanup(prefix, dry_run)?;
    for r in &done {
        if json {
            println!(
                "{}",
                Json::new()
                    .str("name", &r.name)
                    .str("reason", &r.reason)
                    .bool("removed", r.removed)
                    .bool("dry_run", dry_run)
                    .finish()
            );
        } else if dry_run {
            println!("would remove {}: {}", r.name, r.reason);
        } else if r.removed {
            println!("removed stale segment {}: {}", r.name, r.reason);
        } else {
            println!("kept {}: it was taken or went away meanwhile", r.name);
        }
    }
    if !json {
        let n = done.iter().filter(|r| r.removed).count();
        if dry_run {
            println!("{} segment(s) would be removed", done.len());
        } else {
            println!("{n} stale segment(s) removed");
        }
    }
    Ok(())
}

/// Remove segments of ours in /dev/shm that no live process holds (their processes
/// died without removing them), saying why for each; never one a live process holds.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  shm-demo cleanup --dry-run\n  shm-demo cleanup --prefix /shm-demo"
)]
pub struct CleanupArgs {
    /// Only names starting with this.
    #[arg(long, default_value = "/")]
    prefix: String,
    /// Name what would be removed, and why, without removing anything.
    #[arg(long)]
    dry_run: bool,
}

impl CleanupArgs {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        cleanup(&self.prefix, self.dry_run, ctx.json)
    }
}

/// List every segment in /dev/shm (and the memfd servers named with --socket): kind,
/// size, record, creator, state (live, stale, foreign, corrupt) and peers. Reads
/// only; never waits.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  shm-demo ls\n  shm-demo ls --json --socket /tmp/shm.sock")]
pub struct LsArgs {
    /// A memfd server's socket to look at too (repeatable).
    #[arg(long)]
    socket: Vec<PathBuf>,
}

impl LsArgs {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        ls(&self.socket, ctx.json)
    }
}

/// Show one segment's header field by field and its kind's shared state: a channel's
/// positions and ends, a broadcast's tail and subscriber lines, a seqlock's writer.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  shm-demo inspect /shm-demo-1234-0\n  shm-demo inspect --socket /tmp/shm.sock --json"
)]
pub struct InspectArgs {
    /// The POSIX segment's name.
    name: Option<String>,
    /// Or a memfd server's socket.
    #[arg(long, conflicts_with = "name")]
    socket: Option<PathBuf>,
}

impl InspectArgs {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        inspect(self.name.as_deref(), self.socket.as_deref(), ctx.json)
    }
}

/// Watch a channel or broadcast without joining it (read-only) and print its rate
/// each second (and each subscriber's lag). Ctrl-C ends it.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  shm-demo hz /cam --seconds 10")]
pub struct HzArgs {
    /// The POSIX segment's name.
    name: Option<String>,
    /// Or a memfd server's socket.
    #[arg(long, conflicts_with = "name")]
    socket: Option<PathBuf>,
    /// Stop after this many seconds (0: until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
}

impl HzArgs {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        hz(
            self.name.as_deref(),
            self.socket.as_deref(),
            self.seconds,
            ctx.json,
        )
    }
}
