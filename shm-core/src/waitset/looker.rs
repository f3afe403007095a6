//! The looker: the thread that runs a sleeping set's checks.
//!
//! A set sleeps in one `futex_waitv` over every end's word; setting that up costs the
//! kernel a page lookup per word (measured: about 2.6 µs a word on a 2-vCPU AMD EPYC,
//! so a set of 100 ends that woke every 20 ms to run its checks used 1.3% of a core
//! doing nothing), and every wake-up of a sleeping thread costs a context switch (tens of
//! µs of CPU in a virtual machine). So while any thread sleeps on the set, the looker
//! runs the checks in its place and wakes the sleepers, through the set's own word, only
//! for what it finds; their own sleep is bounded by [`IDLE`](super::state::IDLE).
//!
//! It sleeps in one `poll` over a pidfd per peer process (and its own eventfd, for the
//! drop), so a peer's death, which makes no futex call, wakes it at once; and at least
//! every [`LOOK`] it looks at every end (a few loads each), which catches a truncation,
//! a hostile peer's silenced wake-up and a peer that took an end since (whose pidfd it
//! opens then). With nobody asleep on the set it sleeps on the sleepers count. It ends
//! with the set.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::state::Shared;
use crate::format::error::Error;
use crate::os::{futex, sys};

/// How often the looker looks at every end while the set sleeps: the bound on how long
/// a truncation or a silenced wake-up goes unseen (a death is seen at once).
pub(super) const LOOK: Duration = Duration::from_millis(200);

pub(super) struct Looker {
    thread: JoinHandle<()>,
    stop: Arc<OwnedFd>,
}

impl Looker {
    pub(super) fn start(shared: Arc<Shared>) -> Result<Looker, Error> {
        let sys_err = |call, e: std::io::Error| Error::System {
            call,
            errno: e.raw_os_error().unwrap_or(0),
        };
        let stop = Arc::new(sys::eventfd().map_err(|e| sys_err("eventfd", e))?);
        let fd = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("shm-waitset-look".into())
            .stack_size(64 * 1024)
            .spawn(move || run(&shared, &fd))
            .map_err(|e| sys_err("spawning the wait set's looker thread", e))?;
        Ok(Looker { thread, stop })
    }

    /// Ends the thread (the owner set `stop` first) and waits for it.
    pub(super) fn join(self, shared: &Shared) {
        sys::eventfd_signal(self.stop.as_fd());
        futex::wake_private(&shared.sleepers);
        let _ = self.thread.join();
    }
}

fn run(shared: &Shared, stop: &OwnedFd) {
    // The pidfds of the peers, and the pids already seen dead (not polled again until
    // no end names them).
    let mut fds: HashMap<u32, OwnedFd> = HashMap::new();
    let mut dead: HashSet<u32> = HashSet::new();
    loop {
        // Acquire: pairs with the Release store of `stop` in the set's drop.
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        // Relaxed: see `sleep`; a sleeper that comes wakes this word.
        if shared.sleepers.load(Ordering::Relaxed) == 0 {
            futex::wait_private(&shared.sleepers, 0, Duration::from_secs(1));
            continue;
        }
        let pids: Vec<u32> = fds.keys().copied().collect();
        let mut polled: Vec<BorrowedFd<'_>> = vec![stop.as_fd()];
        polled.extend(pids.iter().map(|p| fds[p].as_fd()));
        let readable = sys::readable_within(&polled, LOOK);
        let mut died = false;
        for (pid, r) in pids.iter().zip(&readable[1..]) {
            if *r {
                died |= dead.insert(*pid);
            }
        }
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let mut g = shared.lock();
        if shared.sleepers.load(Ordering::Relaxed) != 0 {
            // The set's own liveness check (its pidfds, one more poll) only when ours saw
            // a death: it is what reports it.
            if !g.collect(false, died).is_empty() {
                g.stats.late += 1;
                shared.poke();
            }
        }
        let now: HashSet<u32> = g.peer_pids().into_iter().collect();
        drop(g);
        dead.retain(|p| now.contains(p));
        fds.retain(|p, _| now.contains(p) && !dead.contains(p));
        for p in now {
            if !dead.contains(&p) && !fds.contains_key(&p) {
                match sys::pidfd_open(p) {
                    Ok(fd) => {
                        fds.insert(p, fd);
                    }
                    // No such process: dead (the next look reports it).
                    Err(_) => {
                        dead.insert(p);
                    }
                }
            }
        }
    }
}
