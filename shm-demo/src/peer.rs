//! The hidden `peer` subcommand: the second process of every two-process command,
//! spawned (posix, memfd) by the first. It opens the memory it is pointed at and plays
//! one role, each defined beside the command it serves, then prints one JSON line.

use std::path::PathBuf;

use crate::host::{self, Backend, Endpoint};
use crate::measure::Wait;
use crate::util::{Failure, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Read,
    Echo,
    Consume,
    Idle,
    IdleSubscriber,
    Subscribe,
}

/// Arguments of the hidden `peer` subcommand.
#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    socket: Option<PathBuf>,
    #[arg(long, value_enum)]
    role: Role,
    #[arg(long, default_value_t = 0)]
    count: u64,
    #[arg(long, default_value_t = 0)]
    size: u64,
    #[arg(long, value_enum, default_value = "spin")]
    wait: Wait,
}

/// Runs in the peer process: opens what it was pointed at and plays its role, printing
/// one JSON line.
pub fn peer(backend: Backend, args: &PeerArgs) -> Result<()> {
    let endpoint = match (backend, &args.name, &args.socket) {
        (Backend::Posix, Some(name), _) => Endpoint::Name(name.clone()),
        (Backend::Memfd, _, Some(socket)) => Endpoint::Socket(socket.clone()),
        _ => {
            return Err(Failure::new(
                "peer: posix needs --name, memfd needs --socket",
            ))
        }
    };
    let mem = host::open(&endpoint)?;
    let line = match args.role {
        Role::Read => crate::exchange::read_role(mem),
        Role::Echo => crate::pingpong::echo_role(mem, args.count, args.size.max(8), args.wait),
        Role::Consume => crate::stream::consume_role(mem, args.count, args.size, args.wait),
        Role::Idle => crate::idle::idle_role(mem, args.count),
        Role::Subscribe => crate::broadcast::subscribe_role(mem, args.count, args.size),
        Role::IdleSubscriber => crate::idle::idle_subscriber_role(mem, args.count),
    };
    println!("{line}");
    Ok(())
}
