//! `shm-demo`: the tutorial's writer/reader exchange on every backend, and the latency and
//! throughput tools. Run `shm-demo --help`.
#![deny(unsafe_code)]

mod asyncio;
mod bridge;
mod broadcast;
mod cli;
mod errors;
mod event;
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
mod role;
mod service;
mod stream;
mod util;
mod waitset;
mod zbench;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cli::{BackendArg, Ctx};

/// The most ends a wait set holds.
const MAX_SET_ENDS: u32 = shm_core::waitset::MAX_ENDS as u32;
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
  shm-demo --backend posix event --notifiers 2 --events 10000 --json
  shm-demo --backend memfd waitset --subscribers 4 --messages 10000
  shm-demo --backend posix service run --clients 4 --servers 2 --calls 10000 --size 64 --json
  shm-demo --backend posix service serve --name /calc               # terminal 1 (and 2, ...)
  shm-demo --backend posix service call --name /calc --calls 1000   # terminal 3
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

#[derive(Subcommand, Debug)]
enum Cmd {
    Write(exchange::WriteArgs),
    Read(exchange::ReadArgs),
    Serve(exchange::ServeArgs),
    Connect(exchange::ConnectArgs),
    Pingpong(pingpong::Args),
    Stream(stream::Args),
    Broadcast(broadcast::Args),
    /// Events: notifier processes and a sleeping listener, every notify accounted for.
    Event(event::Args),
    /// One thread, one wait set over N subscribers and an event.
    Waitset(waitset::Args),
    /// Request/response: `run` server and client processes (every response checked),
    /// or `serve` / `call` a named service from two terminals.
    #[command(subcommand)]
    Service(service::ServiceCmd),
    /// Carry a broadcast to another host over Zenoh: `export` a local broadcast on a
    /// key, `import` a key into a local broadcast, `list` what the network exports.
    #[command(subcommand)]
    Bridge(bridge::BridgeCmd),
    Idle(idle::Args),
    Publish(named::PublishArgs),
    Subscribe(named::SubscribeArgs),
    Send(named::SendArgs),
    Receive(named::ReceiveArgs),
    Cleanup(look::CleanupArgs),
    Ls(look::LsArgs),
    Inspect(look::InspectArgs),
    Hz(look::HzArgs),
    /// Internal: the second process of an exchange.
    #[command(hide = true)]
    Peer(peer::PeerArgs),
}

impl Cmd {
    fn run(self, ctx: Ctx) -> util::Result<()> {
        match self {
            Cmd::Write(a) => a.run(ctx),
            Cmd::Read(a) => a.run(ctx),
            Cmd::Serve(a) => a.run(ctx),
            Cmd::Connect(a) => a.run(ctx),
            Cmd::Pingpong(a) => a.run(ctx),
            Cmd::Stream(a) => a.run(ctx),
            Cmd::Broadcast(a) => a.run(ctx),
            Cmd::Event(a) => a.run(ctx),
            Cmd::Waitset(a) => a.run(ctx),
            Cmd::Service(cmd) => cmd.run(ctx),
            Cmd::Bridge(cmd) => bridge::run(ctx.shm(), &cmd, ctx.json),
            Cmd::Idle(a) => a.run(ctx),
            Cmd::Publish(a) => a.run(ctx),
            Cmd::Subscribe(a) => a.run(ctx),
            Cmd::Send(a) => a.run(ctx),
            Cmd::Receive(a) => a.run(ctx),
            Cmd::Cleanup(a) => a.run(ctx),
            Cmd::Ls(a) => a.run(ctx),
            Cmd::Inspect(a) => a.run(ctx),
            Cmd::Hz(a) => a.run(ctx),
            Cmd::Peer(a) => peer::peer(ctx.require_shm("peer needs a shared-memory backend")?, &a),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    util::catch_signals();
    let ctx = Ctx {
        backend: cli.backend,
        json: cli.json,
    };
    let result = match cli.command {
        None => exchange::run_default(ctx, cli.size),
        Some(cmd) => cmd.run(ctx),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if ctx.json && !f.reported {
                // A script reading one JSON object per line gets the failure as one too
                // (the text still goes to stderr, and the exit status says it failed).
                println!("{}", util::error_line(&f));
            }
            let Failure {
                what, hint, usage, ..
            } = f;
            eprintln!("error: {what}");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
            if usage {
                eprintln!("Run `shm-demo --help` for usage.");
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
