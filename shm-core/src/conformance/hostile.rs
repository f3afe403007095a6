//! The hostile-word test, driven by the word tables ([`crate::format::words`]): for every
//! row of a layout's table, by itself, a peer writes adversarial values into that word in
//! a burst, then stops, while honest ends run. It checks that every call stays bounded
//! (a watchdog far above any honest time, failing as "hung"), that nothing torn or out of
//! order is delivered, that nothing panics, and that the honest ends recover once the
//! peer stops.
//!
//! The peer is a forked process on every real backend (the child inherits the
//! `MAP_SHARED` mapping and writes through it, as a scribbling process would); on
//! process-private memory it is a thread.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Backend;
use crate::broadcast::{self, Broadcast, BroadcastMode, BroadcastOptions};
use crate::channel::{self, Channel, ChannelOptions};
use crate::event::{self, Event, EventOptions};
use crate::format::error::Error;
use crate::format::layout::HEADER_WORDS;
use crate::format::memory::SharedMemory;
use crate::format::words::{Region, Word};
use crate::seqlock::{self, SeqLock};

/// A single call that takes longer than this is a hang, whatever the machine.
const HUNG: Duration = Duration::from_secs(20);
/// How long the honest ends get to recover once the peer stopped.
const RECOVER: Duration = Duration::from_secs(20);
/// How long the peer holds each adversarial value.
const HOLD: Duration = Duration::from_micros(400);
/// How long the honest ends run before the peer starts.
const WARM: Duration = Duration::from_millis(5);

const P: u64 = crate::format::layout::HEADER_SIZE as u64;

/// Where the attacked word lies, resolved afresh at every write (a slot or a message
/// header moves with the stream).
#[derive(Debug, Clone, Copy)]
enum Place {
    /// A fixed offset from the segment's start.
    Fixed(u64),
    /// Word `word` of the slot the broadcast's tail names (the next message).
    Slot {
        tail: u64,
        slots_at: u64,
        slot_size: u64,
        slots: u64,
        word: u64,
    },
    /// The message header at the receiver's position of a ring.
    RingHead { ring: u64, cap: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Target {
    base: usize,
    len: u64,
    place: Place,
    /// 4 or 8 (longer words are attacked in their first 8 bytes).
    width: u64,
}

impl Target {
    fn load_u64(&self, off: u64) -> u64 {
        // SAFETY: every offset passed is a word of the segment, 8-aligned, inside `len`
        // (checked by `offset`); an atomic may alias memory other processes write.
        unsafe { AtomicU64::from_ptr((self.base + off as usize) as *mut u64) }
            .load(Ordering::Relaxed)
    }

    /// The attacked word's offset now, if it lies inside the segment.
    fn offset(&self) -> Option<u64> {
        let off = match self.place {
            Place::Fixed(o) => o,
            Place::Slot {
                tail,
                slots_at,
                slot_size,
                slots,
                word,
            } => {
                let t = self.load_u64(tail);
                slots_at + (t & (slots - 1)) * slot_size + word
            }
            Place::RingHead { ring, cap } => {
                let head = self.load_u64(ring + 128);
                ring + 384 + (head & (cap - 1) & !7)
            }
        };
        (off.checked_add(self.width)? <= self.len).then_some(off)
    }

    fn load(&self) -> u64 {
        let Some(off) = self.offset() else { return 0 };
        if self.width == 4 {
            // SAFETY: as in `load_u64`, 4-aligned.
            u64::from(
                unsafe { AtomicU32::from_ptr((self.base + off as usize) as *mut u32) }
                    .load(Ordering::Relaxed),
            )
        } else {
            self.load_u64(off)
        }
    }

    fn store(&self, v: u64) {
        let Some(off) = self.offset() else { return };
        // SAFETY: as in `load_u64`; a hostile store, Relaxed on purpose.
        unsafe {
            if self.width == 4 {
                AtomicU32::from_ptr((self.base + off as usize) as *mut u32)
                    .store(v as u32, Ordering::Relaxed);
            } else {
                AtomicU64::from_ptr((self.base + off as usize) as *mut u64)
                    .store(v, Ordering::Relaxed);
            }
        }
    }

    /// The burst: each value held for [`HOLD`] (rewritten all along), then the word's
    /// value from just before it written back ("a value, then its restore").
    /// Async-signal-safe: atomics and the clock only (it runs in a forked child).
    fn burst(&self, values: &[u64]) {
        for &v in values {
            let before = self.load();
            let t = Instant::now();
            while t.elapsed() < HOLD {
                self.store(v);
                std::hint::spin_loop();
            }
            self.store(before);
        }
    }
}

/// The adversarial values for a word now holding `cur`: the edges, 2^62 and around it,
/// odd/even flips, values just past honest bounds, forged notices and pids.
fn values(cur: u64, width: u64, slots: u64, dead: u32) -> Vec<u64> {
    let mut v = vec![
        0,
        1,
        u64::MAX,
        u64::MAX - 1,
        1 << 62,
        (1 << 62) + 1,
        (1 << 62) - 3,
        cur ^ 1,
        cur.wrapping_add(1),
        cur.wrapping_add(2),
        cur.wrapping_sub(1),
        cur.wrapping_add(slots),
        cur.wrapping_add(slots + 1),
        cur.wrapping_add(1_000_000),
        // A gap notice of the largest size and a small one.
        (1 << 63) | (1 << 56) | ((1 << 56) - 1),
        (1 << 63) | (1 << 56) | 1000,
        u64::from(u32::MAX),
        1 << 23,
        u64::from(dead),
        u64::from(crate::os::proc::current_pid()),
    ];
    if width == 4 {
        for x in &mut v {
            *x &= u64::from(u32::MAX);
        }
    }
    v
}

/// The hostile peer: a forked child on shared memory, a thread otherwise.
enum Peer {
    Process(libc::pid_t),
    Thread(std::thread::JoinHandle<()>),
}

impl Peer {
    fn start(forked: bool, target: Target, values: Vec<u64>) -> Peer {
        if !forked {
            return Peer::Thread(std::thread::spawn(move || target.burst(&values)));
        }
        // SAFETY: the child only runs `burst` (atomics on the inherited shared mapping and
        // the monotonic clock: async-signal-safe, no allocation, no lock) and `_exit`s.
        #[allow(unsafe_code)]
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
            if pid == 0 {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                target.burst(&values);
                libc::_exit(0);
            }
            Peer::Process(pid)
        }
    }

    /// Waits for the peer to finish its burst (bounded: a peer that does not is killed
    /// and the test fails as hung).
    fn finish(self, row: &str) {
        match self {
            Peer::Thread(t) => t.join().expect("the hostile thread panicked"),
            Peer::Process(pid) => {
                let start = Instant::now();
                loop {
                    let mut status = 0;
                    // SAFETY: our own child; WNOHANG never blocks.
                    #[allow(unsafe_code)]
                    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                    if r == pid {
                        assert!(
                            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                            "{row}: the hostile process ended with status {status}"
                        );
                        return;
                    }
                    if start.elapsed() > HUNG {
                        // SAFETY: our own child.
                        #[allow(unsafe_code)]
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                            libc::waitpid(pid, &mut status, 0);
                        }
                        panic!("{row}: the hostile process hung");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

/// Runs `round` again and again while the peer does its burst, until it is done.
fn during(peer: Peer, name: &str, mut round: impl FnMut()) {
    let finished = Arc::new(AtomicBool::new(false));
    let waiter = {
        let finished = Arc::clone(&finished);
        let name = name.to_owned();
        std::thread::spawn(move || {
            peer.finish(&name);
            finished.store(true, Ordering::Release);
        })
    };
    while !finished.load(Ordering::Acquire) {
        round();
    }
    waiter.join().expect("the peer's waiter panicked");
}

fn target_of<M: SharedMemory>(mem: &M, place: Place, width: u64) -> Target {
    Target {
        base: mem.as_ptr() as usize,
        len: mem.len() as u64,
        place,
        width: width.min(8),
    }
}

/// The words whose forgery amounts to writing the data itself: the integrity words of a
/// slot, a record or a frame. A peer with write access can write any data, so for these
/// rows the test asks for bounded calls, typed errors and recovery, not for the bytes.
const DATA_GUARDS: &[&str] = &[
    "slot stamp",
    "slot len",
    "sequence",
    "message header",
    "tail",
    "head",
];

/// One message's bytes, from its number: what a subscriber must find under that number.
fn msg(n: u64) -> Vec<u8> {
    let mut v = n.to_le_bytes().repeat(4);
    v.extend_from_slice(&(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
    v
}

/// Runs `f`, failing as "hung" if one call lasts longer than [`HUNG`].
fn bounded<T>(row: &str, what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    assert!(t.elapsed() < HUNG, "{row}: {what} hung ({:?})", t.elapsed());
    out
}

/// Every row of the broadcast's table (and the header's), attacked by itself, in both
/// modes, while a publisher thread publishes and two subscribers (one joined before the
/// burst, one joining during it) receive. Each delivered message is checked against its
/// number, numbers only grow, and after the peer stops each subscriber receives a
/// message published after the burst (reliable: or is `Evicted`, with a reason).
pub fn hostile_broadcast_words<B: Backend>(b: &mut B)
where
    B::Mem: Sync,
{
    let rows: Vec<Word> = HEADER_WORDS
        .iter()
        .chain(broadcast::WORDS)
        .copied()
        .collect();
    let dead = super::dead_pid();
    for mode in [BroadcastMode::Lossy, BroadcastMode::Reliable] {
        for row in &rows {
            let name = format!("broadcast {mode:?} `{}`", row.name);
            hostile_broadcast_row(b, mode, row, dead, &name);
        }
    }
}

fn hostile_broadcast_row<B: Backend>(
    b: &mut B,
    mode: BroadcastMode,
    row: &Word,
    dead: u32,
    name: &str,
) where
    B::Mem: Sync,
{
    let slots = 8u64;
    let max_subscribers = 4u32;
    let opts = BroadcastOptions::new()
        .mode(mode)
        .slots(slots)
        .max_message(64)
        .max_subscribers(max_subscribers)
        .evict_timeout(Duration::from_millis(100));
    let mem = b.create(opts.segment_len().expect("segment_len") as usize);
    let view = b.reopen(&mem);
    let bc = Broadcast::create(mem, &opts).expect("create");
    let slots_at = P + 640 + 128 * u64::from(max_subscribers);
    let slot_size = 128;
    let place = match row.region {
        Region::Header => Place::Fixed(row.offset),
        Region::Payload => Place::Fixed(P + row.offset),
        // Line 0: the first subscriber's own line.
        Region::Line => Place::Fixed(P + 640 + row.offset),
        Region::Slot => Place::Slot {
            tail: P + 128,
            slots_at,
            slot_size,
            slots,
            word: row.offset,
        },
        Region::Ring | Region::RingData | Region::Bitmap | Region::Entry => {
            unreachable!("not a broadcast region")
        }
    };
    let target = target_of(&view, place, row.width);
    let first = Broadcast::attach(b.reopen(&view))
        .expect("attach")
        .subscriber()
        .expect("subscribe");
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let bc = bc.clone();
        let stop = Arc::clone(&stop);
        let published = Arc::clone(&published);
        let name = name.to_owned();
        // Taken here, before the peer starts: a forged holder word may refuse a join.
        let mut p = bc.publisher().expect("publisher");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = p.next_message();
                let r = bounded(&name, "publish", || p.publish_timeout(&msg(n), HUNG));
                assert_eq!(r, Ok(()), "{name}: publish {n}");
                published.store(p.next_message(), Ordering::Release);
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    std::thread::sleep(WARM);
    let vals = values(target.load(), target.width, slots, dead);
    let peer = Peer::start(b.shared_across_fork(), target, vals);
    // A subscriber that joins during the burst (its join may be refused while a word is
    // forged: then it tries again until one is taken).
    let joined = {
        let t = Instant::now();
        loop {
            match Broadcast::attach(b.reopen(&view)).and_then(|x| x.subscriber()) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(
                        t.elapsed() < RECOVER,
                        "{name}: no join after the burst: {e}"
                    );
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    };
    let mut subs = [(first, None::<u64>, false), (joined, None, false)];
    let guards = DATA_GUARDS.contains(&row.name);
    // Receive during the burst, until the peer is done.
    let mut buf = Vec::new();
    during(peer, name, || {
        for (s, last, _) in &mut subs {
            receive_one(name, guards, mode, s, &mut buf, last);
        }
    });
    // Recovery: each subscriber receives a message published after the peer stopped.
    let after = published.load(Ordering::Acquire);
    let t = Instant::now();
    while subs.iter().any(|(_, _, done)| !done) {
        assert!(
            t.elapsed() < RECOVER,
            "{name}: a subscriber did not recover after the burst (last numbers {:?})",
            subs.iter().map(|s| s.1).collect::<Vec<_>>()
        );
        for (s, last, done) in &mut subs {
            if *done {
                continue;
            }
            match receive_one(name, guards, mode, s, &mut buf, last) {
                Some(Ok(n)) if n >= after => *done = true,
                Some(Err(Error::Evicted { .. })) => *done = true,
                _ => {}
            }
        }
    }
    // Reported, not asserted (no test asserts a speed): how long recovery took.
    println!("{name}: recovered {:?} after the peer stopped", t.elapsed());
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("the publisher thread panicked");
}

/// One bounded receive: checks a delivered message against its number and the order;
/// returns what it got (`None` for a quiet timeout).
fn receive_one<M: SharedMemory>(
    name: &str,
    guards_data: bool,
    mode: BroadcastMode,
    s: &mut crate::broadcast::Subscriber<M>,
    buf: &mut Vec<u8>,
    last: &mut Option<u64>,
) -> Option<Result<u64, Error>> {
    let r = bounded(name, "recv", || {
        crate::testing::numbered(s, |s| s.recv_into_timeout(buf, Duration::from_millis(2)))
    });
    match r {
        Ok(n) => {
            if !guards_data {
                assert_eq!(
                    *buf,
                    msg(n),
                    "{name}: message {n} is not what was published"
                );
            }
            assert!(
                last.is_none_or(|l| n > l),
                "{name}: message {n} after {last:?}: delivered twice or out of order"
            );
            *last = Some(n);
            Some(Ok(n))
        }
        Err(Error::Timeout { .. }) => None,
        Err(
            e @ (Error::Lagged { .. }
            | Error::Corrupt { .. }
            | Error::UpstreamLost
            | Error::PeerDied { .. }
            | Error::Closed),
        ) => Some(Err(e)),
        Err(e @ Error::Evicted { .. }) if mode == BroadcastMode::Reliable => Some(Err(e)),
        Err(e) => panic!("{name}: unexpected {e:?}"),
    }
}

/// Every row of the channel's table (and the header's), attacked by itself, while a
/// sender thread sends and the receiver receives. A channel's positions and framing are
/// shared by its two ends, so a forged one can break the ring: what must hold is that
/// every call is bounded and typed, nothing panics, and once the peer stopped the honest
/// ends recover: the stream goes on, or it reported `Corrupt` and ends taken anew carry a
/// message end to end.
pub fn hostile_channel_words<B: Backend>(b: &mut B)
where
    B::Mem: Sync,
{
    let dead = super::dead_pid();
    let rows: Vec<Word> = HEADER_WORDS.iter().chain(channel::WORDS).copied().collect();
    for row in &rows {
        let name = format!("channel `{}`", row.name);
        hostile_channel_row(b, row, dead, &name);
    }
}

fn hostile_channel_row<B: Backend>(b: &mut B, row: &Word, dead: u32, name: &str)
where
    B::Mem: Sync,
{
    let cap = 1024u64;
    let opts = ChannelOptions::new().capacity(cap);
    let mem = b.create(opts.segment_len().expect("segment_len") as usize);
    let view = b.reopen(&mem);
    let chan = Channel::create(mem, &opts).expect("create");
    let ring = P + 128;
    let place = match row.region {
        Region::Header => Place::Fixed(row.offset),
        Region::Payload => Place::Fixed(P + row.offset),
        Region::Ring => Place::Fixed(ring + row.offset),
        Region::RingData => Place::RingHead { ring, cap },
        Region::Line | Region::Slot | Region::Bitmap | Region::Entry => {
            unreachable!("not a channel region")
        }
    };
    let target = target_of(&view, place, row.width);
    let stop = Arc::new(AtomicBool::new(false));
    let sender_broken = Arc::new(AtomicBool::new(false));
    let sender = {
        let chan = chan.clone();
        let stop = Arc::clone(&stop);
        let name = name.to_owned();
        let broken = Arc::clone(&sender_broken);
        // Taken here, before the peer starts: a forged word may refuse a join.
        let mut tx = chan.sender(0).expect("sender");
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match bounded(&name, "send", || {
                    tx.send_timeout(&msg(i), Duration::from_millis(2))
                        .map_err(Error::from)
                }) {
                    Ok(()) => i += 1,
                    Err(Error::Timeout { .. } | Error::Closed | Error::PeerDied { .. }) => {}
                    Err(Error::Corrupt { .. }) => {
                        broken.store(true, Ordering::Release);
                        return;
                    }
                    Err(e) => panic!("{name}: send: unexpected {e:?}"),
                }
            }
        })
    };
    let mut rx = chan.receiver(0).expect("receiver");
    std::thread::sleep(WARM);
    let peer = Peer::start(
        b.shared_across_fork(),
        target,
        values(target.load(), target.width, cap, dead),
    );
    let mut corrupt = false;
    during(peer, name, || {
        if !corrupt {
            corrupt = channel_receive(name, &mut rx).is_err();
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    // Recovery: a message that carries `msg(n)` for some n arrives, or the ring was
    // reported corrupt and both ends taken anew carry one.
    let t = Instant::now();
    let mut recovered = false;
    while !corrupt && !recovered && !sender_broken.load(Ordering::Acquire) {
        assert!(
            t.elapsed() < RECOVER,
            "{name}: the receiver did not recover after the burst"
        );
        match channel_receive(name, &mut rx) {
            Ok(Some(_)) => recovered = true,
            Ok(None) => {}
            Err(()) => corrupt = true,
        }
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().expect("the sender thread panicked");
    if recovered {
        println!("{name}: recovered {:?} after the peer stopped", t.elapsed());
        return;
    }
    println!("{name}: an end said Corrupt; taking the ends anew");
    // An end reported `Corrupt` (final for that end): both ends are taken anew (each
    // drop stores its own position back) and carry a message end to end, after whatever
    // was still queued.
    drop(rx);
    let mut rx = match chan.receiver(0) {
        Ok(rx) => rx,
        // Forged frames the old receiver read (a well-formed length that is not the
        // sender's) moved its position off the sender's framing, and its drop stored
        // that position: the ring's positions no longer pair, and a receiver taken on it
        // says so at once (the table's row: a scribbled frame breaks the ring for every
        // end). Any other row must leave ends that can be taken anew.
        Err(Error::Corrupt { .. }) if row.name == "message header" => return,
        Err(e) => panic!("{name}: a new receiver: {e:?}"),
    };
    let mut tx = chan.sender(0).expect("a new sender");
    // The new receiver drains what was queued while the new sender sends one more.
    let drain = {
        let name = name.to_owned();
        std::thread::spawn(move || {
            let t = Instant::now();
            loop {
                if t.elapsed() > RECOVER {
                    return Err("the message sent after taking the ends anew never came".to_owned());
                }
                match bounded(&name, "recv", || {
                    rx.recv_timeout(Duration::from_millis(10))
                        .map(|m| m.to_vec())
                        .map_err(Error::from)
                }) {
                    Ok(v) if v == b"again" => return Ok(()),
                    Ok(_) | Err(Error::Timeout { .. }) => {}
                    Err(e) => return Err(format!("{e:?}")),
                }
            }
        })
    };
    let r = bounded(name, "send", || tx.send_timeout(b"again", RECOVER / 2));
    let got = drain.join().expect("the drain thread panicked");
    if row.name == "message header" && matches!(&got, Err(e) if e.starts_with("Corrupt")) {
        // A frame scribbled away breaks the ring for every end (the table says so): the
        // new receiver reports it instead of waiting for ever.
        return;
    }
    assert_eq!(r, Ok(()), "{name}: send after taking the ends anew");
    assert_eq!(got, Ok(()), "{name}: after taking the ends anew");
}

/// One bounded receive: `Ok(Some(n))` for a message carrying `msg(n)`, `Ok(None)` for a
/// quiet or typed passing error, `Err(())` once the receiver reported `Corrupt` (final).
fn channel_receive<M: SharedMemory>(
    name: &str,
    rx: &mut crate::channel::Receiver<M>,
) -> Result<Option<u64>, ()> {
    let r = bounded(name, "recv", || {
        rx.recv_timeout(Duration::from_millis(2))
            .map(|m| m.to_vec())
            .map_err(Error::from)
    });
    match r {
        Ok(v) => {
            // A forged frame may deliver bytes the sender never framed (a peer with write
            // access writes data too); a message that decodes as one of ours is checked.
            let n = v
                .get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            Ok(n.filter(|&n| v == msg(n)))
        }
        Err(Error::Timeout { .. } | Error::Closed | Error::PeerDied { .. }) => Ok(None),
        Err(Error::Corrupt { .. }) => Err(()),
        Err(e) => panic!("{name}: recv: unexpected {e:?}"),
    }
}

/// Every row of the seqlock's table (and the header's), attacked by itself, while a
/// writer thread stores and a reader loads: no load returns a torn record, every call is
/// bounded, and after the peer stops a store goes through and is read back.
pub fn hostile_seqlock_words<B: Backend>(b: &mut B) {
    type Rec = [u64; 8];
    let dead = super::dead_pid();
    let rows: Vec<Word> = HEADER_WORDS.iter().chain(seqlock::WORDS).copied().collect();
    for row in &rows {
        let name = format!("seqlock `{}`", row.name);
        let mem = b.create(4096);
        let view = b.reopen(&mem);
        let writer = SeqLock::create(mem, &[0u64; 8]).expect("create");
        let reader =
            SeqLock::<Rec, _>::attach_with(b.reopen(&view), &super::quick()).expect("attach");
        let place = match row.region {
            Region::Header => Place::Fixed(row.offset),
            _ => Place::Fixed(P + row.offset),
        };
        let target = target_of(&view, place, row.width);
        let stop = Arc::new(AtomicBool::new(false));
        let w = {
            let stop = Arc::clone(&stop);
            let name = name.clone();
            std::thread::spawn(move || {
                let mut i = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    match bounded(&name, "store", || writer.store(&[i; 8])) {
                        Ok(()) => i += 1,
                        Err(Error::WriterStuck { .. }) => {}
                        Err(e) => panic!("{name}: store: unexpected {e:?}"),
                    }
                    std::thread::sleep(Duration::from_micros(20));
                }
                writer
            })
        };
        std::thread::sleep(WARM);
        let peer = Peer::start(
            b.shared_across_fork(),
            target,
            values(target.load(), target.width, 8, dead),
        );
        during(peer, &name, || {
            match bounded(&name, "load", || reader.load()) {
                Ok(v) => assert!(
                    DATA_GUARDS.contains(&row.name) || v.iter().all(|&x| x == v[0]),
                    "{name}: torn record {v:?}"
                ),
                Err(Error::WriterDied { .. } | Error::WriterStuck { .. }) => {}
                Err(e) => panic!("{name}: load: unexpected {e:?}"),
            }
        });
        stop.store(true, Ordering::Relaxed);
        let writer = w.join().expect("the writer thread panicked");
        let t = Instant::now();
        loop {
            assert!(
                t.elapsed() < RECOVER,
                "{name}: no store went through after the burst"
            );
            if bounded(&name, "store", || writer.store(&[u64::MAX - 1; 8])).is_ok() {
                println!("{name}: recovered {:?} after the peer stopped", t.elapsed());
                break;
            }
        }
        assert_eq!(reader.load(), Ok([u64::MAX - 1; 8]), "{name}: read back");
    }
}

/// Every row of the event's table (and the header's), attacked by itself, while a
/// notifier thread notifies ids in turn and the listener waits. Every call is bounded and
/// typed, nothing panics, no id at or above `max_ids` is delivered, and once the peer
/// stopped an id notified after the burst reaches the listener.
pub fn hostile_event_words<B: Backend>(b: &mut B)
where
    B::Mem: Sync,
{
    let dead = super::dead_pid();
    let rows: Vec<Word> = HEADER_WORDS.iter().chain(event::WORDS).copied().collect();
    // 100 ids: two bitmap words, the lines at 192 (128 + 16 rounded up to 64).
    let opts = EventOptions::new().max_ids(100).max_notifiers(4);
    for row in &rows {
        let name = format!("event `{}`", row.name);
        let mem = b.create(opts.segment_len().expect("segment_len") as usize);
        let view = b.reopen(&mem);
        let ev = Event::create(mem, &opts).expect("create");
        let mut listener = ev.listener().expect("listener");
        let place = match row.region {
            Region::Header => Place::Fixed(row.offset),
            Region::Payload => Place::Fixed(P + row.offset),
            // The second bitmap word (ids 64 to 99; bits above are not ids).
            Region::Bitmap => Place::Fixed(P + 136 + row.offset),
            // Line 0: the notifier thread's own line.
            Region::Line => Place::Fixed(P + 192 + row.offset),
            _ => unreachable!("not an event region"),
        };
        let target = target_of(&view, place, row.width);
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let notifier = {
            let ev = Event::attach(b.reopen(&view)).expect("attach");
            let (stop, sent, name) = (Arc::clone(&stop), Arc::clone(&sent), name.clone());
            // Taken here, before the peer starts: a forged word may refuse a join.
            let mut n = ev.notifier().expect("notifier");
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match bounded(&name, "notify", || n.notify(i % 100)) {
                        Ok(()) => {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(crate::NotifyError::Closed | crate::NotifyError::PeerDied { .. }) => {}
                        Err(e) => panic!("{name}: notify: unexpected {e:?}"),
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_micros(50));
                }
            })
        };
        std::thread::sleep(WARM);
        let peer = Peer::start(
            b.shared_across_fork(),
            target,
            values(target.load(), target.width, 100, dead),
        );
        let mut listen = |name: &str| -> Option<crate::EventIds> {
            match bounded(name, "wait", || {
                listener.wait_timeout(Duration::from_millis(2))
            }) {
                Ok(ids) => {
                    assert!(
                        ids.iter().all(|id| id < 100),
                        "{name}: an id past max_ids: {ids:?}"
                    );
                    Some(ids)
                }
                Err(
                    crate::WaitTimeoutError::Timeout { .. }
                    | crate::WaitTimeoutError::PeerDied { .. },
                ) => None,
                Err(e) => panic!("{name}: wait: unexpected {e:?}"),
            }
        };
        during(peer, &name, || {
            listen(&name);
        });
        stop.store(true, Ordering::Relaxed);
        notifier.join().expect("the notifier thread panicked");
        assert!(
            sent.load(Ordering::Relaxed) > 0,
            "{name}: no notify went through"
        );
        // Recovery: a fresh notifier's id reaches the listener.
        let mut n = Event::attach(b.reopen(&view))
            .and_then(|e| e.notifier())
            .expect("a notifier after the burst");
        let t = Instant::now();
        loop {
            assert!(
                t.elapsed() < RECOVER,
                "{name}: the listener did not recover"
            );
            assert_eq!(n.notify(42), Ok(()), "{name}: notify after the burst");
            if listen(&name).is_some_and(|ids| ids.contains(42)) {
                break;
            }
        }
        println!("{name}: recovered {:?} after the peer stopped", t.elapsed());
    }
}

/// The rows of the service's table whose forgery amounts to writing the data itself (a
/// request's or a response's length, the count that vouches for an entry): for these the
/// test asks for bounded calls, typed errors and recovery, not for the bytes.
const SERVICE_DATA_GUARDS: &[&str] = &["request length", "entry length", "written"];

/// Every row of the service's table (and the header's), attacked by itself, while a
/// server thread answers and this thread calls (one slot, so every call uses the
/// attacked words). Every call is bounded and typed, nothing panics, a response is the
/// answer to its own request (but for the data rows), and once the peer stopped a call
/// is answered again.
pub fn hostile_service_words<B: Backend>(b: &mut B)
where
    B::Mem: Sync,
{
    use crate::format::error::{CallTimeoutError, RecvTimeoutError};
    use crate::service::{self, Service, ServiceOptions};
    let dead = super::dead_pid();
    let rows: Vec<Word> = HEADER_WORDS.iter().chain(service::WORDS).copied().collect();
    // 2 client and 2 server lines: the client lines at 192, the server lines at 256, the
    // slots at 320 (lines of 4 bytes, each group rounded to 64); a 128-byte head and
    // requests of 32 bytes: entries at 160 in the slot.
    let opts = ServiceOptions::new()
        .slots(1)
        .max_clients(2)
        .max_servers(2)
        .max_request(32)
        .max_response(32)
        .response_depth(2);
    let answer = |req: &[u8]| -> Vec<u8> { req.iter().rev().map(|b| b ^ 0x5a).collect() };
    for row in &rows {
        let name = format!("service `{}`", row.name);
        let guards = SERVICE_DATA_GUARDS.contains(&row.name);
        let mem = b.create(opts.segment_len().expect("segment_len") as usize);
        let view = b.reopen(&mem);
        let svc = Service::create(mem, &opts).expect("create");
        let place = match row.region {
            Region::Header => Place::Fixed(row.offset),
            Region::Payload => Place::Fixed(P + row.offset),
            Region::Line => Place::Fixed(P + 192 + row.offset),
            Region::Slot => Place::Fixed(P + 320 + row.offset),
            Region::Entry => Place::Fixed(P + 320 + 160 + row.offset),
            _ => unreachable!("not a service region"),
        };
        let target = target_of(&view, place, row.width);
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let server = {
            let svc = Service::attach(b.reopen(&view)).expect("attach");
            let (stop, answered, name) = (Arc::clone(&stop), Arc::clone(&answered), name.clone());
            // Taken here, before the peer starts: a forged word may refuse a join.
            let mut server = svc.server().expect("server");
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match bounded(&name, "receive", || {
                        server.receive_timeout(Duration::from_millis(2))
                    }) {
                        Ok(mut req) => {
                            let a = answer(&req.take_data());
                            if bounded(&name, "respond", || req.respond_last(&a)).is_ok() {
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(RecvTimeoutError::Timeout { .. }) => {}
                        Err(e) => panic!("{name}: receive: unexpected {e:?}"),
                    }
                }
            })
        };
        let mut client = svc.client().expect("client");
        let mut n = 0u64;
        let mut call = |name: &str| -> bool {
            n += 1;
            let req = n.to_le_bytes();
            // Every other call leaves its answer in the slot a while before it reads it,
            // so that the peer's writes land between the server's and the client's.
            let slow = n % 2 == 1;
            match bounded(name, "call", || {
                if slow {
                    let mut p = client.send_request_timeout(&req, Duration::from_millis(50))?;
                    std::thread::sleep(Duration::from_micros(200));
                    p.receive_timeout(Duration::from_millis(50))
                } else {
                    client.call_timeout(&req, Duration::from_millis(50))
                }
            }) {
                Ok(r) => {
                    if !guards {
                        assert_eq!(
                            r.data,
                            answer(&req),
                            "{name}: the answer to another request"
                        );
                    }
                    true
                }
                Err(
                    CallTimeoutError::Timeout { .. }
                    | CallTimeoutError::PeerDied { .. }
                    | CallTimeoutError::Closed
                    | CallTimeoutError::ServerError { .. }
                    | CallTimeoutError::Failed(Error::Corrupt { .. }),
                ) => false,
                Err(e) => panic!("{name}: call: unexpected {e:?}"),
            }
        };
        std::thread::sleep(WARM);
        let peer = Peer::start(
            b.shared_across_fork(),
            target,
            values(target.load(), target.width, 1, dead),
        );
        during(peer, &name, || {
            call(&name);
        });
        // Recovery: a call is answered again.
        let t = Instant::now();
        while !call(&name) {
            assert!(t.elapsed() < RECOVER, "{name}: the service did not recover");
        }
        println!("{name}: recovered {:?} after the peer stopped", t.elapsed());
        stop.store(true, Ordering::Relaxed);
        server.join().expect("the server thread panicked");
        assert!(
            answered.load(Ordering::Relaxed) > 0,
            "{name}: no request was answered"
        );
    }
}
