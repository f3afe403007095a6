//! The thread behind [`WaitSet::as_fd`](super::WaitSet::as_fd): it runs the set's wait and
//! makes an eventfd readable while something is ready.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::state::{sleep, Shared};
use crate::format::error::Error;
use crate::os::futex;
use crate::os::park::SLICE;
use crate::os::sys;

pub(super) struct Watcher {
    fd: Arc<OwnedFd>,
    thread: JoinHandle<()>,
}

impl Watcher {
    pub(super) fn start(shared: Arc<Shared>) -> Result<Watcher, Error> {
        let fd = Arc::new(sys::eventfd().map_err(|e| Error::System {
            call: "eventfd",
            errno: e.raw_os_error().unwrap_or(0),
        })?);
        let thread = {
            let fd = Arc::clone(&fd);
            std::thread::Builder::new()
                .name("shm-waitset".into())
                .stack_size(128 * 1024)
                .spawn(move || run(&shared, &fd))
                .map_err(|e| Error::System {
                    call: "spawning the wait set's watcher thread",
                    errno: e.raw_os_error().unwrap_or(0),
                })?
        };
        Ok(Watcher { fd, thread })
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Empties the fd (the owner is about to look).
    pub(super) fn clear(&self) {
        sys::eventfd_clear(self.fd.as_fd());
    }

    /// Waits for the thread to end (the owner set `stop` and poked it first).
    pub(super) fn join(self) {
        let _ = self.thread.join();
    }
}

/// The watcher's loop: look; if something is ready, make the fd readable and wait for the
/// owner's turn (its `try_wait` pokes us) or a slice; else sleep on every end. Each
/// round reads the set's word before it looks, so a poke that comes after the look ends
/// the sleep that follows at once: no wake-up is lost between a look and a sleep.
fn run(shared: &Shared, fd: &OwnedFd) {
    loop {
        // Acquire: pairs with `poke`'s Release bump.
        let ctl = shared.ctl.load(Ordering::Acquire);
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let mut g = shared.lock();
        let peers = g.peers_due();
        if !g.collect(false, peers).is_empty() {
            drop(g);
            sys::eventfd_signal(fd.as_fd());
            futex::wait_private(&shared.ctl, ctl, SLICE);
            continue;
        }
        g = sleep(shared, g, super::state::IDLE, ctl);
        drop(g);
    }
}
