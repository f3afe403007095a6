//! Turning futex words in shared memory into [`Waker`]s, for the `async` API.
//!
//! A future that must wait does what a blocking call does before it sleeps: it sets the
//! endpoint's sleeping flag, issues the fence and looks once more (so the other side,
//! which makes the wake-up call only when that flag is set, cannot miss it). Then,
//! instead of `futex_wait` on its own thread, it **registers** its
//! [`Park`](crate::os::park::Park) here and returns `Pending`: the futex word and the value
//! it expects, the words whose change must end the wait (the peer's holder word, the
//! close word, the word its condition reads), and the peer's pid.
//!
//! The reactor is a small pool of threads in this process, created on demand. Each waits
//! with one `futex_waitv` (Linux 5.16) on up to 127 registered futex words plus a private
//! control word that a new registration bumps, and wakes the future whose word changed.
//!
//! A parked future must notice everything a blocking wait round notices, and a blocking
//! round runs its checks at least every [`SLICE`](crate::os::park::SLICE). So a reactor
//! thread with registrations also wakes every `SLICE` (a **tick**) and, after every
//! return from its wait, looks at every entry: a futex word or a watched word that moved
//! (a peer that claimed the other end after we parked, a close, a message that arrived
//! while a hostile peer silenced the wake-up), a peer that died, a fault caught in any
//! guarded mapping (a truncation: the entries' own loads provoke it), or a periodic
//! entry's tick: each wakes its future, which polls and runs the endpoint's full checks.
//!
//! A peer's death makes no futex call, so one more thread watches the registered peers:
//! a `pidfd` (Linux 5.3) per distinct peer process in an `epoll` set. When a peer exits,
//! its pidfd becomes readable at once (also while it is an unreaped zombie); the watcher
//! marks the pid dead and wakes the reactor threads. A peer whose pidfd cannot be opened
//! is checked with [`liveness`](crate::os::proc::liveness) at every tick instead.
//!
//! A waker that panics is contained: the panic is caught, and the reactor thread goes on
//! serving its other entries.
//!
//! Cost: an entry is about 100 bytes; a thread serves 127 entries and keeps a small stack
//! (64 KiB). A tick reads a few words per entry. Threads are kept for reuse.
#![allow(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::Duration;

use crate::os::proc::{self, Liveness};

/// Futex words one thread waits on, besides its control word (`futex_waitv` takes 128).
pub const PER_THREAD: usize = 127;

use crate::os::futex::{self, FutexWaitv};

struct Entry {
    id: u64,
    /// The futex word's address and expected value; the word stays mapped while the
    /// entry exists (see `Registration`). `None` for a polling wait.
    futex: Option<(usize, u32)>,
    /// Words whose change wakes the future: (address, value, 8 bytes wide).
    watch: [Option<(usize, u64, bool)>; crate::os::park::WATCH_MAX],
    waker: Waker,
    peer: u32,
    periodic: bool,
    /// The peer could not be watched through a pidfd: check it on the timer.
    poll_peer: bool,
}

impl Entry {
    /// Whether the future must be woken: a word moved, or its peer is known dead.
    fn moved(&self, known_dead: &HashSet<u32>) -> bool {
        if self.peer != 0 && known_dead.contains(&self.peer) {
            return true;
        }
        if let Some((word, expected)) = self.futex {
            // SAFETY: the entry exists, so its registration has not been dropped and the
            // word is mapped (the registration's contract); an atomic load.
            if unsafe { AtomicU32::from_ptr(word as *mut u32) }.load(Ordering::Relaxed) != expected
            {
                return true;
            }
        }
        self.watch.iter().flatten().any(|&(addr, value, wide)| {
            // SAFETY: as above: a watched word lives in the same mapping as long as the
            // entry exists; 8-byte words are 8-aligned, 4-byte words 4-aligned.
            let now = unsafe {
                if wide {
                    AtomicU64::from_ptr(addr as *mut u64).load(Ordering::Relaxed)
                } else {
                    u64::from(AtomicU32::from_ptr(addr as *mut u32).load(Ordering::Relaxed))
                }
            };
            now != value
        })
    }
}

struct Worker {
    ctl: AtomicU32,
    entries: Mutex<Vec<Entry>>,
}

static WORKERS: OnceLock<Mutex<Vec<Arc<Worker>>>> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A registered waker; removed from the reactor when dropped.
///
/// The word it names must stay mapped until the registration is dropped: the futures
/// hold it next to the borrow of the endpoint that keeps the mapping alive.
pub(crate) struct Registration {
    worker: Arc<Worker>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut entries = self
            .worker
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.id != self.id);
    }
}

/// Wakes `waker` once the park's futex word or a watched word no longer holds its
/// value, once its peer is found dead, once a fault is caught in any guarded mapping, or
/// (periodic parks) at the next tick in any case. The words must stay mapped until the
/// returned registration is dropped.
pub(crate) fn register(park: &crate::os::park::Park<'_>, waker: &Waker) -> Registration {
    use crate::os::park::Watched;
    let peer = park.peer;
    let poll_peer = peer != 0 && !watch_peer(peer);
    let mut watch = [None; crate::os::park::WATCH_MAX];
    for (slot, w) in watch.iter_mut().zip(park.watch.iter()) {
        *slot = w.map(|w| match w {
            Watched::U32(word, v) => (word.as_ptr() as usize, u64::from(v), false),
            Watched::U64(word, v) => (word.as_ptr() as usize, v, true),
        });
    }
    ticker();
    let workers = WORKERS.get_or_init(|| Mutex::new(Vec::new()));
    let mut all = workers.lock().unwrap_or_else(|e| e.into_inner());
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let entry = Entry {
        id,
        futex: park
            .futex
            .map(|(word, expected)| (word.as_ptr() as usize, expected)),
        watch,
        waker: waker.clone(),
        peer,
        periodic: park.periodic,
        poll_peer,
    };
    let worker = loop {
        if let Some(w) = all.iter().find(|w| {
            w.entries
                .lock()
                .map(|e| e.len() < PER_THREAD)
                .unwrap_or(false)
        }) {
            break Arc::clone(w);
        }
        let w = Arc::new(Worker {
            ctl: AtomicU32::new(0),
            entries: Mutex::new(Vec::with_capacity(PER_THREAD)),
        });
        let run = Arc::clone(&w);
        if std::thread::Builder::new()
            .name("shm-reactor".into())
            .stack_size(64 * 1024)
            .spawn(move || run.run())
            .is_err()
        {
            // No thread: the waker is woken at once, and the future polls again (it
            // spins instead of parking, but never hangs).
            waker.wake_by_ref();
        }
        all.push(Arc::clone(&w));
    };
    worker
        .entries
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(entry);
    // Release: pairs with the worker's Acquire load when it rebuilds its set.
    worker.ctl.fetch_add(1, Ordering::Release);
    futex::wake_private(&worker.ctl);
    Registration { worker, id }
}

impl Worker {
    fn run(&self) {
        let mut waitv: Vec<FutexWaitv> = Vec::with_capacity(PER_THREAD + 1);
        loop {
            // Acquire: pairs with the Release bump in `register`; read before the set is
            // built, so a registration after this makes the wait return at once.
            let ctl = self.ctl.load(Ordering::Acquire);
            waitv.clear();
            waitv.push(FutexWaitv::private(&self.ctl, ctl));
            {
                let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
                for e in entries.iter() {
                    if let Some((word, expected)) = e.futex {
                        waitv.push(FutexWaitv::shared(word, expected));
                    }
                }
            }
            // No timeout: the futex words, the control word (bumped by a registration,
            // the peer watcher and the ticker) wake this thread. The periodic looks are
            // the ticker's (one thread for all workers), so an idle future costs no
            // wake-up of this thread.
            // SAFETY: the control word is ours, and every registered word stays mapped
            // while its entry exists (the registration's contract); a word on a truncated
            // page makes the call fail with EFAULT, and the scan below then touches it and
            // trips the guard, which the ticker sees.
            unsafe { futex::wait_any(&waitv) };
            self.scan(false);
        }
    }

    /// Looks at every entry: wakes those whose words moved or whose peer is known dead;
    /// with `tick`, also the periodic ones and those whose peer a pidfd cannot watch and
    /// is found dead. Returns how many it woke.
    fn scan(&self, tick: bool) -> usize {
        let known_dead = dead_peers();
        let mut dead: Vec<u32> = Vec::new();
        let mut alive: Vec<u32> = Vec::new();
        let mut fired: Vec<Waker> = Vec::new();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| {
            let mut fire = e.moved(&known_dead) || (tick && e.periodic);
            if !fire && tick && e.poll_peer {
                fire = if dead.contains(&e.peer) {
                    true
                } else if alive.contains(&e.peer) {
                    false
                } else if proc::liveness(e.peer) == Liveness::Dead {
                    dead.push(e.peer);
                    true
                } else {
                    alive.push(e.peer);
                    false
                };
            }
            if fire {
                fired.push(e.waker.clone());
            }
            !fire
        });
        drop(entries);
        let n = fired.len();
        wake_all(fired);
        n
    }

    /// Wakes every entry (a fault was caught somewhere: each future asks its own memory).
    fn fire_all(&self) -> usize {
        let fired: Vec<Waker> = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .map(|e| e.waker)
            .collect();
        let n = fired.len();
        wake_all(fired);
        n
    }

    /// Makes the thread rebuild its wait set (its entries changed).
    fn kick(&self) {
        // Release: pairs with the worker's Acquire load of its control word.
        self.ctl.fetch_add(1, Ordering::Release);
        futex::wake_private(&self.ctl);
    }
}

/// Wakes `fired`, outside any lock (a waker may poll its future at once, and the drop
/// of its registration takes the lock). A waker that panics must not take the calling
/// thread (and every future parked on it) down with it.
fn wake_all(fired: Vec<Waker>) {
    for w in fired {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
    }
}

/// The ticker: one thread that, every [`SLICE`](crate::os::park::SLICE) while any future is
/// parked, looks at every entry of every reactor thread (its words, its peer, the
/// periodic ones) and at the fault counter: the look a blocking wait takes at the end of
/// each sleep slice. Its loads of the watched words are also what trips the guard of a
/// mapping truncated under a parked future.
fn ticker() {
    static STARTED: OnceLock<bool> = OnceLock::new();
    STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("shm-reactor-tick".into())
            .stack_size(64 * 1024)
            .spawn(tick_loop)
            .is_ok()
    });
}

fn tick_loop() {
    let mut faults_seen = crate::os::sigbus::faults();
    loop {
        std::thread::sleep(crate::os::park::SLICE);
        let Some(workers) = WORKERS.get() else {
            continue;
        };
        let all: Vec<Arc<Worker>> = workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(Arc::clone)
            .collect();
        for w in &all {
            if w.scan(true) > 0 {
                w.kick();
            }
        }
        // Any fault caught since the last tick (by anyone: a worker's wait, the scan
        // above, a blocking caller): wake every parked future.
        let faults = crate::os::sigbus::faults();
        if faults != faults_seen {
            faults_seen = faults;
            for w in &all {
                if w.fire_all() > 0 {
                    w.kick();
                }
            }
        }
    }
}

/// Threads the reactor runs now (for leak checks and the docs' figures).
pub fn threads() -> usize {
    WORKERS
        .get()
        .map_or(0, |w| w.lock().unwrap_or_else(|e| e.into_inner()).len())
}

/// The peer watcher: a pidfd per distinct peer process in an epoll set, and the pids
/// seen to exit.
struct PeerWatch {
    epoll: OwnedFd,
    pidfds: Mutex<HashMap<u32, OwnedFd>>,
    dead: Mutex<HashSet<u32>>,
}

static WATCH: OnceLock<Option<PeerWatch>> = OnceLock::new();

fn peer_watch() -> Option<&'static PeerWatch> {
    WATCH
        .get_or_init(|| {
            // SAFETY: epoll_create1 returns -1 or a new fd nobody else owns.
            let epoll =
                unsafe { crate::os::sys::ret_owned_fd(libc::epoll_create1(libc::EPOLL_CLOEXEC)) }
                    .ok()?;
            let started = std::thread::Builder::new()
                .name("shm-peer-watch".into())
                .stack_size(64 * 1024)
                .spawn(watch_loop)
                .is_ok();
            started.then_some(PeerWatch {
                epoll,
                pidfds: Mutex::new(HashMap::new()),
                dead: Mutex::new(HashSet::new()),
            })
        })
        .as_ref()
}

/// The pids the watcher saw exit.
fn dead_peers() -> HashSet<u32> {
    peer_watch().map_or_else(HashSet::new, |w| {
        w.dead.lock().unwrap_or_else(|e| e.into_inner()).clone()
    })
}

/// Watches `pid` through a pidfd; `false` if it cannot (then the timer checks it).
fn watch_peer(pid: u32) -> bool {
    let Some(w) = peer_watch() else { return false };
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    let mut pidfds = w.pidfds.lock().unwrap_or_else(|e| e.into_inner());
    if pidfds.contains_key(&pid) {
        return true;
    }
    {
        // A pid seen dead before that is alive again was reused: watch the new process.
        let mut dead = w.dead.lock().unwrap_or_else(|e| e.into_inner());
        if dead.contains(&pid) {
            if proc::liveness(pid) == Liveness::Dead {
                return true;
            }
            dead.remove(&pid);
        }
    }
    // SAFETY: pidfd_open returns -1 or a new fd nobody else owns (close-on-exec).
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    let Ok(fd) = i32::try_from(fd) else {
        return false;
    };
    if fd < 0 {
        return false;
    }
    // SAFETY: as above.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: u64::from(pid),
    };
    // SAFETY: both fds are live; `ev` is a valid event for the call.
    let rc = unsafe {
        libc::epoll_ctl(
            w.epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            pidfd.as_raw_fd(),
            &mut ev,
        )
    };
    if rc != 0 {
        return false;
    }
    pidfds.insert(pid, pidfd);
    true
}

fn watch_loop() {
    // The watcher is published by `peer_watch` right after this thread starts.
    let w = loop {
        if let Some(Some(w)) = WATCH.get() {
            break w;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
    loop {
        // SAFETY: `events` has room for 16 events; no timeout: a pidfd becomes readable
        // when its process exits.
        let n = unsafe { libc::epoll_wait(w.epoll.as_raw_fd(), events.as_mut_ptr(), 16, -1) };
        let Ok(n) = usize::try_from(n) else { continue };
        if n == 0 {
            continue;
        }
        for ev in &events[..n] {
            let pid = ev.u64 as u32;
            let fd = w
                .pidfds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&pid);
            if let Some(fd) = fd {
                // SAFETY: removing a live fd we own from our epoll set.
                unsafe {
                    libc::epoll_ctl(
                        w.epoll.as_raw_fd(),
                        libc::EPOLL_CTL_DEL,
                        fd.as_raw_fd(),
                        std::ptr::null_mut(),
                    )
                };
            }
            w.dead.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
        }
        // Every reactor thread rescans its entries.
        if let Some(workers) = WORKERS.get() {
            for worker in workers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                // Release: pairs with the worker's Acquire load of its control word.
                worker.ctl.fetch_add(1, Ordering::Release);
                futex::wake_private(&worker.ctl);
            }
        }
    }
}
