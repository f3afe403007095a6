//! `shm-demo`: the tutorial's writer/reader exchange on every backend, and the latency and
//! throughput tools. Run `shm-demo --help`.
#![deny(unsafe_code)]

mod asyncio;
mod bridge;
mod broadcast;
mod errors;
mod exchange;
mod host;
mod idle;
mod look;
mod measure;
mod msg;
mod named;
mod peer;
mod pingpong;
mod record;
mod stream;
mod util;
mod zbench;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::host::Backend;
use crate::util::{parse_size, Failure};

const EXAMPLES: &str = "\
Examples:
  shm-demo                                   # the exchange on posix, anon and memfd, then a table
  shm-demo --backend posix --size 64MiB      # one backend, a smaller segment
  shm-demo --backend posix write --name /my_shm --hold    # terminal 1
  shm-demo --backend posix read --name /my_shm            # terminal 2
  shm-demo --backend posix read --name my_shm --raw       # a segment made the tutorial's way
  shm-demo --backend posix write --name my_shm --raw      # one the tutorial's reader reads
  shm-demo --backend memfd serve --socket /tmp/shm.sock   # terminal 1
  shm-demo --backend memfd connect --socket /tmp/shm.sock # terminal 2
  shm-demo --backend unix pingpong --round-trips 100000 --json
  shm-demo --backend posix pingpong --wait block
  shm-demo --backend anon stream --messages 10000 --size 1MiB
  shm-demo --backend memfd broadcast --subscribers 4 --messages 100000 --size 64 --json
  shm-demo --backend posix broadcast --via zenoh --subscribers 2 --messages 100000 --json
  shm-demo --backend posix bridge export --name /cam --key shm/cam --listen tcp/127.0.0.1:7447
  shm-demo --backend posix bridge import --key shm/cam --name /cam_remote --connect tcp/127.0.0.1:7447
  shm-demo bridge list --connect tcp/127.0.0.1:7447
  shm-demo ls                                # every segment: kind, state, peers
  shm-demo inspect /shm-demo-1234-0          # one segment, field by field
  shm-demo hz /shm-demo-1234-0 --seconds 5   # its rate, without joining it
  shm-demo cleanup --dry-run                 # what a crash left behind, and why";

/// Shared memory between processes, the tutorial's way: a writer puts
/// MyData { col1: 100, col2: 876, col3: 8021 } into a 4 GiB segment, a separate reader
/// process attaches and prints it. With no subcommand, runs that exchange end to end.
#[derive(Parser, Debug)]
#[command(name = "shm-demo", version, after_help = EXAMPLES)]
struct Cli {
    /// Backend: posix, anon or memfd (unix and pipe are baselines for pingpong and stream).
    /// Without it, the exchange runs on all three shared-memory backends.
    #[arg(long, global = true, value_enum)]
    backend: Option<BackendArg>,
    /// Segment size for the exchange: 4GiB, 64MiB, 4096, ...
    #[arg(long, default_value = "4GiB", value_parser = parse_size)]
    size: u64,
    /// Print one JSON object per result instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

/// How a broadcast reaches its subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Via {
    /// Straight from the shared segment.
    Local,
    /// Through an exporter, Zenoh on loopback and an importer.
    Zenoh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Posix,
    Anon,
    Memfd,
    Unix,
    Pipe,
    /// The hardware floor for pingpong: two bare words on two cache lines.
    Floor,
}

impl BackendArg {
    fn shm(self) -> Option<Backend> {
        match self {
            BackendArg::Posix => Some(Backend::Posix),
            BackendArg::Anon => Some(Backend::Anon),
            BackendArg::Memfd => Some(Backend::Memfd),
            BackendArg::Unix | BackendArg::Pipe | BackendArg::Floor => None,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The tutorial's writer: create a named segment and write MyData into it.
    #[command(
        after_help = "Example:\n  shm-demo --backend posix write --name /my_shm --size 4GiB --hold"
    )]
    Write {
        /// Segment name, like /my_shm (my_shm means the same, as in glibc's shm_open).
        #[arg(long)]
        name: String,
        /// Segment size: 4GiB, 64MiB, 4096, ...
        #[arg(long, default_value = "4GiB", value_parser = parse_size)]
        size: u64,
        /// Keep the segment until Ctrl-C or SIGTERM, then remove it. Without --hold the
        /// segment is left for a reader, who removes it with `read --unlink`.
        #[arg(long)]
        hold: bool,
        /// Write the record the tutorial's way: at offset 0, no header, for programs that
        /// do not speak our layout (the tutorial's Go or C reader, Python's
        /// multiprocessing.shared_memory).
        #[arg(long)]
        raw: bool,
    },
    /// The tutorial's reader: attach to a named segment and print MyData.
    #[command(after_help = "Example:\n  shm-demo --backend posix read --name /my_shm --unlink")]
    Read {
        /// Segment name, like /my_shm (my_shm means the same, as in glibc's shm_open).
        #[arg(long)]
        name: String,
        /// Remove the segment after reading it (as the tutorial's reader does).
        #[arg(long)]
        unlink: bool,
        /// The record version to expect: v1 (what `write` writes) or v2 (shows a schema
        /// mismatch).
        #[arg(long, default_value = "v1")]
        schema: exchange::SchemaArg,
        /// Read a segment with no header (made the tutorial's way, or by Python or C):
        /// MyData at offset 0. Only the size can be checked; the type is taken on trust.
        #[arg(long, conflicts_with = "schema")]
        raw: bool,
    },
    /// Create a sealed memfd with MyData and hand it to every client of a Unix socket.
    #[command(after_help = "Example:\n  shm-demo --backend memfd serve --socket /tmp/shm.sock")]
    Serve {
        /// Socket path.
        #[arg(long)]
        socket: PathBuf,
        /// Segment size.
        #[arg(long, default_value = "4GiB", value_parser = parse_size)]
        size: u64,
        /// Serve one client, then exit (default: until Ctrl-C or SIGTERM).
        #[arg(long)]
        once: bool,
    },
    /// Receive the memfd from a server, verify it, attach and print MyData.
    #[command(after_help = "Example:\n  shm-demo --backend memfd connect --socket /tmp/shm.sock")]
    Connect {
        /// Socket path.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Round-trip latency between two processes, pinned to different CPUs: p50, p99,
    /// p99.9 and max, from an HdrHistogram of every round trip. posix, anon and memfd send
    /// 8-byte messages through the channel; unix and pipe through the kernel; floor
    /// bounces two bare words between two cache lines (the hardware floor).
    #[command(
        after_help = "Example:\n  shm-demo --backend posix pingpong --round-trips 100000 --json"
    )]
    Pingpong {
        /// Round trips to measure (after a warm-up of a tenth as many, at least 1000).
        #[arg(long, default_value_t = 100_000)]
        round_trips: u64,
        /// How a side waits for the other: spin (busy-poll), block (spin 50 µs, then sleep
        /// on a futex) or async (both sides tokio tasks awaiting the futures; tokio's
        /// UnixStream for --backend unix). pipe and floor ignore it.
        #[arg(long, value_enum, default_value = "spin")]
        wait: measure::Wait,
        /// Payload bytes per message, 8 to 16MiB; each side copies it in and out.
        #[arg(long, default_value = "8", value_parser = parse_size)]
        size: u64,
        /// Measure the floor (one bouncing cache line) and the channel in the same pair of
        /// processes, alternating blocks of 10,000 round trips, and report both p50s and
        /// their ratio (`--backend anon`, 8 bytes, spin): on a host whose CPU placement
        /// changes between runs, the only ratio that means anything.
        #[arg(long)]
        paired: bool,
    },
    /// Throughput: a producer process sends N messages of a given size, each with a
    /// sequence number and a checksum, through the channel (or a Unix socket); a consumer
    /// process verifies order and content and reports messages/s and GiB/s.
    #[command(
        after_help = "Example:\n  shm-demo --backend memfd stream --messages 100000 --size 4096 --json"
    )]
    Stream {
        /// Messages to send.
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        /// Bytes per message (at least 8: a sequence number; from 16 also a checksum).
        #[arg(long, default_value = "4096", value_parser = parse_size)]
        size: u64,
        /// How the sides wait: spin, block (spin 50 µs, then futex) or async (tokio tasks
        /// awaiting the futures; tokio's UnixStream for --backend unix).
        #[arg(long, value_enum, default_value = "block")]
        wait: measure::Wait,
        /// Ring bytes (rounded up to a power of two). Default: what the library
        /// recommends for the message size on this machine (ChannelOptions::for_messages:
        /// about twice the L2 cache, at least two messages). For `--backend floor`: the
        /// floor's ring; default: the fastest of 2 to 256 slots, tried in turn.
        #[arg(long, value_parser = parse_size)]
        ring: Option<u64>,
    },
    /// One publisher to N subscriber processes: each subscriber verifies order and
    /// checksums and reports its rate (reliable: no gap; --lossy: counts what it missed);
    /// --backend unix writes every message to N Unix sockets instead.
    #[command(
        after_help = "Example:\n  shm-demo --backend posix broadcast --subscribers 4 --messages 100000 --size 64 --json"
    )]
    Broadcast {
        /// Subscriber processes (1 to 64).
        #[arg(long, default_value_t = 2)]
        subscribers: u32,
        /// Messages to publish.
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        /// Bytes per message (at least 8).
        #[arg(long, default_value = "64", value_parser = parse_size)]
        size: u64,
        /// The publisher never waits; slow subscribers are told what they missed.
        #[arg(long)]
        lossy: bool,
        /// `zenoh`: publisher -> exporter process -> Zenoh (127.0.0.1) -> importer
        /// process -> subscriber processes (posix or memfd).
        #[arg(long, value_enum, default_value = "local")]
        via: Via,
    },
    /// Carry a broadcast to another host over Zenoh: `export` a local broadcast on a
    /// key, `import` a key into a local broadcast, `list` what the network exports.
    #[command(subcommand)]
    Bridge(bridge::BridgeCmd),
    /// CPU used by a receiver blocked on an empty channel (spins 50 µs, then sleeps on a
    /// futex, waking every 20 ms to check its peer).
    #[command(after_help = "Example:\n  shm-demo --backend posix idle --seconds 5")]
    Idle {
        /// How long the receiver waits.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Measure a broadcast subscriber instead of a channel receiver.
        #[arg(long)]
        broadcast: bool,
        /// Measure N receivers parked as tokio tasks awaiting `recv_async` in one
        /// runtime (this process; anon channels): CPU, and memory per parked receiver.
        #[arg(long, value_name = "N")]
        async_receivers: Option<usize>,
    },
    /// Create a named broadcast and publish stamped, checksummed messages to it (for a
    /// subscriber in another terminal or another language); removed at the end or on
    /// Ctrl-C.
    #[command(
        after_help = "Example:\n  shm-demo --backend posix publish --name /cam --messages 1000 --size 64 --rate 100"
    )]
    Publish {
        /// The broadcast's name.
        #[arg(long)]
        name: String,
        /// Messages to publish.
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// Bytes per message (at least 8).
        #[arg(long, default_value = "64", value_parser = parse_size)]
        size: u64,
        /// Messages per second (default: as fast as the subscribers allow).
        #[arg(long)]
        rate: Option<f64>,
        /// Lossy: never wait for subscribers.
        #[arg(long)]
        lossy: bool,
        /// Wait (at most 60 s) for this many subscribers before publishing.
        #[arg(long, default_value_t = 0)]
        wait_subscribers: u32,
    },
    /// Subscribe to a named broadcast, verify every message's number and checksum, and
    /// report what arrived and what was missed.
    #[command(
        after_help = "Example:\n  shm-demo --backend posix subscribe --name /cam --count 1000"
    )]
    Subscribe {
        /// The broadcast's name.
        #[arg(long)]
        name: String,
        /// Stop after this many messages (default: until the publisher closes).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Create a named channel and send stamped, checksummed messages on it (to a
    /// receiver in another terminal or another language); removed at the end or on
    /// Ctrl-C.
    #[command(
        after_help = "Example:\n  shm-demo --backend posix send --name /q --messages 1000 --size 64"
    )]
    Send {
        /// The channel's name.
        #[arg(long)]
        name: String,
        /// Messages to send.
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// Bytes per message (at least 8).
        #[arg(long, default_value = "64", value_parser = parse_size)]
        size: u64,
    },
    /// Take the receiving end of a named channel and verify every message's number and
    /// checksum until the sender closes.
    #[command(after_help = "Example:\n  shm-demo --backend posix receive --name /q")]
    Receive {
        /// The channel's name.
        #[arg(long)]
        name: String,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Remove segments of ours in /dev/shm that no live process holds (their processes
    /// died without removing them), saying why for each; never one a live process holds.
    #[command(
        after_help = "Example:\n  shm-demo cleanup --dry-run\n  shm-demo cleanup --prefix /shm-demo"
    )]
    Cleanup {
        /// Only names starting with this.
        #[arg(long, default_value = "/")]
        prefix: String,
        /// Name what would be removed, and why, without removing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// List every segment in /dev/shm (and the memfd servers named with --socket): kind,
    /// size, record, creator, state (live, stale, foreign, corrupt) and peers. Reads
    /// only; never waits.
    #[command(after_help = "Example:\n  shm-demo ls\n  shm-demo ls --json --socket /tmp/shm.sock")]
    Ls {
        /// A memfd server's socket to look at too (repeatable).
        #[arg(long)]
        socket: Vec<PathBuf>,
    },
    /// Show one segment's header field by field and its kind's shared state: a channel's
    /// positions and ends, a broadcast's tail and subscriber lines, a seqlock's writer.
    #[command(
        after_help = "Example:\n  shm-demo inspect /shm-demo-1234-0\n  shm-demo inspect --socket /tmp/shm.sock --json"
    )]
    Inspect {
        /// The POSIX segment's name.
        name: Option<String>,
        /// Or a memfd server's socket.
        #[arg(long, conflicts_with = "name")]
        socket: Option<PathBuf>,
    },
    /// Watch a channel or broadcast without joining it (read-only) and print its rate
    /// each second (and each subscriber's lag). Ctrl-C ends it.
    #[command(after_help = "Example:\n  shm-demo hz /cam --seconds 10")]
    Hz {
        /// The POSIX segment's name.
        name: Option<String>,
        /// Or a memfd server's socket.
        #[arg(long, conflicts_with = "name")]
        socket: Option<PathBuf>,
        /// Stop after this many seconds (0: until Ctrl-C).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
    },
    /// Internal: the second process of an exchange.
    #[command(hide = true)]
    Peer(peer::PeerArgs),
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    eprintln!("Run `shm-demo --help` for usage.");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    util::catch_signals();
    let shm_backend = cli.backend.map(BackendArg::shm);
    let result = match cli.command {
        None => match shm_backend {
            Some(None) => {
                return usage("the exchange needs a shared-memory backend: posix, anon or memfd")
            }
            Some(Some(b)) => exchange::run(&[b], cli.size, cli.json),
            None => exchange::run(&Backend::ALL, cli.size, cli.json),
        },
        Some(Cmd::Write {
            name,
            size,
            hold,
            raw,
        }) => match shm_backend {
            Some(Some(Backend::Posix)) => exchange::write(&name, size, hold, raw, cli.json),
            Some(Some(Backend::Anon)) => return usage(ANON_TWO_TERMINALS),
            _ => return usage("write and read name a POSIX segment: use --backend posix"),
        },
        Some(Cmd::Read {
            name,
            unlink,
            schema,
            raw,
        }) => match shm_backend {
            Some(Some(Backend::Posix)) => exchange::read(&name, unlink, schema, raw, cli.json),
            Some(Some(Backend::Anon)) => return usage(ANON_TWO_TERMINALS),
            _ => return usage("write and read name a POSIX segment: use --backend posix"),
        },
        Some(Cmd::Serve { socket, size, once }) => match shm_backend {
            Some(Some(Backend::Memfd)) => exchange::serve(&socket, size, once, cli.json),
            Some(Some(Backend::Anon)) => return usage(ANON_TWO_TERMINALS),
            _ => return usage("serve and connect pass a memfd: use --backend memfd"),
        },
        Some(Cmd::Connect { socket }) => match shm_backend {
            Some(Some(Backend::Memfd)) => exchange::connect(&socket, cli.json),
            Some(Some(Backend::Anon)) => return usage(ANON_TWO_TERMINALS),
            _ => return usage("serve and connect pass a memfd: use --backend memfd"),
        },
        Some(Cmd::Pingpong {
            round_trips,
            wait,
            size,
            paired,
        }) => match cli.backend {
            None => {
                return usage("pingpong needs --backend: posix, anon, memfd, unix, pipe or floor")
            }
            Some(b) => pingpong::run(b, round_trips, size, wait, paired, cli.json),
        },
        Some(Cmd::Stream {
            messages,
            size,
            wait,
            ring,
        }) => match cli.backend {
            None | Some(BackendArg::Pipe) => {
                return usage("stream needs --backend: posix, anon, memfd, unix or floor")
            }
            Some(b) => stream::run(b, messages, size, wait, ring, cli.json),
        },
        Some(Cmd::Broadcast {
            subscribers,
            messages,
            size,
            lossy,
            via,
        }) => match cli.backend {
            Some(
                b @ (BackendArg::Posix | BackendArg::Anon | BackendArg::Memfd | BackendArg::Unix),
            ) => broadcast::run(
                b,
                subscribers,
                messages,
                size,
                lossy,
                via == Via::Zenoh,
                cli.json,
            ),
            _ => return usage("broadcast needs --backend: posix, anon, memfd or unix"),
        },
        Some(Cmd::Idle {
            seconds,
            async_receivers: Some(n),
            ..
        }) => idle::idle_run(n, seconds, cli.json),
        Some(Cmd::Idle {
            seconds, broadcast, ..
        }) => match shm_backend {
            Some(Some(b)) => idle::idle(b, seconds, broadcast, cli.json),
            _ => return usage("idle needs a shared-memory backend: posix, anon or memfd"),
        },
        Some(Cmd::Bridge(cmd)) => bridge::run(shm_backend.flatten(), &cmd, cli.json),
        Some(Cmd::Cleanup { prefix, dry_run }) => look::cleanup(&prefix, dry_run, cli.json),
        Some(Cmd::Ls { socket }) => look::ls(&socket, cli.json),
        Some(Cmd::Publish {
            name,
            messages,
            size,
            rate,
            lossy,
            wait_subscribers,
        }) => match shm_backend {
            Some(Some(Backend::Posix)) => named::publish(
                &name,
                messages,
                size,
                rate,
                lossy,
                wait_subscribers,
                cli.json,
            ),
            _ => return usage("publish and subscribe name a POSIX segment: use --backend posix"),
        },
        Some(Cmd::Send {
            name,
            messages,
            size,
        }) => match shm_backend {
            Some(Some(Backend::Posix)) => named::send(&name, messages, size, cli.json),
            _ => return usage("send and receive name a POSIX segment: use --backend posix"),
        },
        Some(Cmd::Receive { name, count }) => match shm_backend {
            Some(Some(Backend::Posix)) => named::receive(&name, count, cli.json),
            _ => return usage("send and receive name a POSIX segment: use --backend posix"),
        },
        Some(Cmd::Subscribe { name, count }) => match shm_backend {
            Some(Some(Backend::Posix)) => named::subscribe(&name, count, cli.json),
            _ => return usage("publish and subscribe name a POSIX segment: use --backend posix"),
        },
        Some(Cmd::Inspect { name, socket }) => {
            look::inspect(name.as_deref(), socket.as_deref(), cli.json)
        }
        Some(Cmd::Hz {
            name,
            socket,
            seconds,
        }) => look::hz(name.as_deref(), socket.as_deref(), seconds, cli.json),
        Some(Cmd::Peer(args)) => match shm_backend {
            Some(Some(b)) => peer::peer(b, &args),
            _ => return usage("peer needs a shared-memory backend"),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { what, hint }) => {
            eprintln!("error: {what}");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(1)
        }
    }
}

const ANON_TWO_TERMINALS: &str =
    "the anon backend has no name and no fd to pass: only a forked child can see it, \
so it has no two-terminal mode. Run `shm-demo --backend anon` for the one-command exchange";
