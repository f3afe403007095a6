//! The hidden `peer` subcommand: the second process of every two-process command,
//! spawned (posix, memfd) by the first. It opens the memory it is pointed at and plays
//! one role, each defined beside the command it serves, then prints one JSON line.

use std::path::PathBuf;

use crate::host::{self, Backend, Endpoint, Mem};
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
    Floor,
}

/// What the second process does: its role and the role's numbers. The first process
/// builds one, and it travels as the `peer` subcommand's arguments (spawned peers) or
/// stays a value (forked ones): [`to_args`](Self::to_args) and the parser are the two
/// ends of one format, and [`play`](Self::play) the one dispatch.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct RoleArgs {
    #[arg(long, value_enum)]
    role: Role,
    #[arg(long, default_value_t = 0)]
    count: u64,
    #[arg(long, default_value_t = 0)]
    size: u64,
    #[arg(long, value_enum, default_value = "spin")]
    wait: Wait,
}

impl RoleArgs {
    pub fn new(role: Role) -> Self {
        RoleArgs {
            role,
            count: 0,
            size: 0,
            wait: Wait::Spin,
        }
    }
    pub fn count(mut self, count: u64) -> Self {
        self.count = count;
        self
    }
    pub fn size(mut self, size: u64) -> Self {
        self.size = size;
        self
    }
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// The `peer` subcommand's arguments that parse back into `self`.
    pub fn to_args(self) -> Vec<String> {
        fn name(v: impl clap::ValueEnum) -> String {
            v.to_possible_value()
                .expect("no skipped variants")
                .get_name()
                .to_owned()
        }
        vec![
            "--role".to_owned(),
            name(self.role),
            "--count".to_owned(),
            self.count.to_string(),
            "--size".to_owned(),
            self.size.to_string(),
            "--wait".to_owned(),
            name(self.wait),
        ]
    }

    /// Plays the role on `mem`: the one JSON line the first process reads.
    pub fn play(self, mem: Mem) -> String {
        let (n, size, wait) = (self.count, self.size, self.wait);
        match self.role {
            Role::Read => crate::exchange::read_role(mem),
            Role::Echo => crate::pingpong::echo_role(mem, n, size.max(8), wait),
            Role::Consume => crate::stream::consume_role(mem, n, size, wait),
            Role::Idle => crate::idle::idle_role(mem, n),
            Role::Subscribe => crate::broadcast::subscribe_role(mem, n, size),
            Role::IdleSubscriber => crate::idle::idle_subscriber_role(mem, n),
            Role::Floor => crate::pingpong::floor_pong(mem, n, size),
        }
    }
}

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
    println!("{}", args.role.play(mem));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, ValueEnum};

    /// What the first process renders is what the peer parses: every role, every wait.
    #[test]
    fn role_args_parse_back_into_themselves() {
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            r: RoleArgs,
        }
        for role in Role::value_variants() {
            for wait in Wait::value_variants() {
                let r = RoleArgs::new(*role).count(7).size(4096).wait(*wait);
                let argv = std::iter::once("peer".to_owned()).chain(r.to_args());
                let back = P::try_parse_from(argv).expect("parses").r;
                assert_eq!(format!("{back:?}"), format!("{r:?}"));
            }
        }
    }
}
