//! The second process's role: what it does and with which numbers, as a value the first
//! process builds and as the `peer` subcommand's arguments it becomes.

use crate::measure::Wait;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Read,
    Echo,
    Consume,
    Idle,
    IdleSubscriber,
    Subscribe,
    Floor,
    Notify,
    Publish,
    Serve,
    Call,
}

/// What the second process does: its role and the role's numbers. The first process
/// builds one, and it travels as the `peer` subcommand's arguments (spawned peers) or
/// stays a value (forked ones): [`to_args`](Self::to_args) and the parser are the two
/// ends of one format. What each role does is its command's own function, which the
/// command hands to `host::start_peer` for a forked peer and `peer::play` names for a
/// spawned one.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct RoleArgs {
    #[arg(long, value_enum)]
    pub role: Role,
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    #[arg(long, default_value_t = 0)]
    pub size: u64,
    #[arg(long, value_enum, default_value = "spin")]
    pub wait: Wait,
    /// A pause between two steps of the role, in µs (the event notifier's gap).
    #[arg(long, default_value_t = 0)]
    pub gap_us: u64,
}

impl RoleArgs {
    pub fn new(role: Role) -> Self {
        RoleArgs {
            role,
            count: 0,
            size: 0,
            wait: Wait::Spin,
            gap_us: 0,
        }
    }
    pub fn gap_us(mut self, gap_us: u64) -> Self {
        self.gap_us = gap_us;
        self
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
            "--gap-us".to_owned(),
            self.gap_us.to_string(),
        ]
    }
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
                let r = RoleArgs::new(*role)
                    .count(7)
                    .size(4096)
                    .wait(*wait)
                    .gap_us(250);
                let argv = std::iter::once("peer".to_owned()).chain(r.to_args());
                let back = P::try_parse_from(argv).expect("parses").r;
                assert_eq!(format!("{back:?}"), format!("{r:?}"));
            }
        }
    }
}
