//! The hidden `peer` subcommand: the second process of every two-process command,
//! spawned (posix, memfd) by the first. It opens the memory it is pointed at and plays
//! one role, each defined beside the command it serves, then prints one JSON line.

use std::path::PathBuf;

use crate::host::{self, Backend, Endpoint, Mem};
use crate::measure::Wait;
use crate::role::{Role, RoleArgs};
use crate::util::{Failure, Result};

/// Arguments of the hidden `peer` subcommand.
#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    socket: Option<PathBuf>,
    #[command(flatten)]
    role: RoleArgs,
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
    println!("{}", play(args.role, mem));
    Ok(())
}

/// Plays `role` on `mem` in a spawned peer: the one JSON line the first process reads.
/// (A forked peer runs the function its command handed to `host::start_peer`.)
pub fn play(role: RoleArgs, mem: Mem) -> String {
    let (n, size, wait) = (role.count, role.size, role.wait);
    match role.role {
        Role::Read => crate::exchange::read_role(mem),
        Role::Echo => crate::pingpong::echo_role(mem, n, size.max(8), wait),
        Role::Consume => crate::stream::consume_role(mem, n, size, wait),
        Role::Idle => crate::idle::idle_role(mem, n),
        Role::Subscribe => crate::broadcast::subscribe_role(mem, n, size),
        Role::IdleSubscriber => crate::idle::idle_subscriber_role(mem, n),
        Role::Floor => crate::pingpong::floor_pong(mem, n, size),
        Role::Notify => crate::event::notify_role(mem, n, size, role.gap_us),
        Role::Publish => crate::waitset::publish_role(mem, n, size),
        Role::Serve => crate::service::serve_role(mem, role.gap_us, wait == Wait::Spin, size == 1),
        Role::Call => crate::service::call_role(mem, role.gap_us, n, size, wait == Wait::Spin),
    }
}
