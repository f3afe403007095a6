//! Throughput: a producer streams checksummed, numbered messages to a consumer process.

use crate::cli::Ctx;
use crate::role::{Role, RoleArgs};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use shm_core::{Channel, ChannelOptions};

use crate::cli::BackendArg;
use crate::host::{self, Mem};
use crate::measure::{report, Wait};
use crate::msg::{verify, verify_in_place, Maker, HEADER, MIN_SIZE, PIECE};
use crate::util::{Failure, Json, Result};

/// The consuming side over the channel: receive, copy out, verify.
pub fn consume_role(mem: Mem, messages: u64, size: u64, wait: Wait) -> String {
    host::pin_to_cpu(1);
    let chan = match Channel::attach(mem) {
        Ok(c) => c,
        Err(e) => return Json::new().str("error", &e.to_string()).finish(),
    };
    let mut rx = match chan.receiver(0) {
        Ok(r) => r,
        Err(e) => return Json::new().str("error", &e.to_string()).finish(),
    };
    rx.set_wait(wait.mode());
    if wait == Wait::Async {
        return crate::asyncio::consume_blocking_on(rx, messages, size);
    }
    // Each message is verified where it lies, a piece at a time (`verify_in_place`): one
    // pass over it, as the floor's copy out makes one.
    let mut piece = Box::new([0u8; HEADER + PIECE]);
    let mut start = None;
    for seq in 0..messages {
        let slot = match rx.recv() {
            Ok(s) => s,
            Err(e) => return report(seq, false, 0.0, Some(e.to_string())),
        };
        let t0 = *start.get_or_insert_with(Instant::now);
        let checked = verify_in_place(
            slot.len(),
            &mut piece,
            |off, b| slot.read(off, b),
            seq,
            size as usize,
        );
        drop(slot);
        if let Err(problem) = checked {
            return report(seq, false, t0.elapsed().as_secs_f64(), Some(problem));
        }
    }
    let seconds = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    report(messages, true, seconds, None)
}

fn channel_stream(
    backend: host::Backend,
    messages: u64,
    size: u64,
    wait: Wait,
    ring: Option<u64>,
) -> Result<String> {
    // The ring the library recommends for this message size on this machine (sized to
    // its caches), or the one asked for.
    let cap = match ring {
        Some(r) => r.max(64).next_power_of_two(),
        None => shm_core::os::cpu::stream_ring_bytes(size),
    };
    let opts = ChannelOptions::new().capacity(cap);
    let len = opts.segment_len()?;
    let mem = host::create(backend, len)?;
    let chan = Channel::create(mem, &opts)?;
    let role = RoleArgs::new(Role::Consume)
        .count(messages)
        .size(size)
        .wait(wait);
    let peer = host::start_peer(backend, chan.raw().memory(), role, |r, m| {
        consume_role(m, r.count, r.size, r.wait)
    })?;
    host::pin_to_cpu(0);
    let mut tx = chan.sender(0)?;
    tx.set_wait(wait.mode());
    let produced = if wait == Wait::Async {
        crate::asyncio::produce_blocking_on(tx, messages, size).map_err(crate::errors::core)
    } else {
        produce(tx, messages, size)
    };
    match produced {
        Ok(()) => peer.finish().map(|line| {
            format!(
                "{},\"ring_bytes\":{cap}}}",
                line.trim_end().trim_end_matches('}')
            )
        }),
        Err(ours) => Err(peer.fail(ours, std::time::Duration::from_secs(2))),
    }
}

/// The blocking producer: `messages` numbered, checksummed messages, written in place.
/// A function of its own: beside the async branch its loop compiled to half the speed.
#[inline(never)]
fn produce(mut tx: shm_core::Sender<Mem>, messages: u64, size: u64) -> Result<()> {
    let mut maker = Maker::new(size as usize);
    for seq in 0..messages {
        let msg = maker.make(seq);
        // Zero-copy: reserve in the ring, write in place, commit.
        let slot = tx.reserve(msg.len())?;
        slot.write(0, msg)?;
        slot.commit();
    }
    Ok(())
}

#[allow(unsafe_code)]
/// One run of the floor: a plain two-process copy ring of `depth` slots, each slot a
/// stamp word and the payload on their own cache lines, so that each side touches only
/// the slot it works on (as the channel's message headers do). The producer copies a
/// message in and stamps it; the consumer waits for the stamp, copies the message out
/// and clears the stamp. No checksums, no validation: the least a stream can do.
/// Returns the consumer's report line.
fn floor_once(messages: u64, size: u64, depth: usize) -> Result<String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let size_us = size as usize;
    let slot_bytes = (8 + size_us).div_ceil(64) * 64;
    let len = depth * slot_bytes;
    let mem = shm_anon::AnonShm::create(len).map_err(|e| Failure::new(format!("mmap: {e}")))?;
    let base = shm_core::SharedMemory::as_ptr(&mem) as usize;
    // The mapping is `len` bytes, page aligned, alive until both processes are done (the
    // child has its own copy of the mapping); each slot's first word is only accessed
    // atomically, and its payload only by the side the stamp gives it to.
    let slot = move |seq: u64| base + (seq as usize % depth) * slot_bytes;
    let stamp = move |seq: u64| {
        // SAFETY: see above; a slot's start is 64-aligned and inside the mapping.
        unsafe { AtomicU64::from_ptr(slot(seq) as *mut u64) }
    };
    let patience = std::time::Duration::from_secs(10);
    // SAFETY: the demo has one thread when it forks; the child uses only the mapping, its
    // own heap and the pipe it inherited.
    let peer = unsafe {
        host::fork_peer(move || {
            host::pin_to_cpu(1);
            let mut buf = vec![0u8; size_us];
            let mut start = None;
            let mut line = String::new();
            for seq in 0..messages {
                let t = Instant::now();
                // Acquire: pairs with the producer's Release store of the stamp.
                while stamp(seq).load(Ordering::Acquire) != seq + 1 {
                    std::hint::spin_loop();
                    if t.elapsed() > patience {
                        line = report(seq, false, 0.0, Some("the producer stopped".into()));
                        break;
                    }
                }
                if !line.is_empty() {
                    break;
                }
                start.get_or_insert_with(Instant::now);
                // SAFETY: the slot is inside the mapping and stamped ours; the producer
                // does not touch it until we clear the stamp.
                std::ptr::copy_nonoverlapping(
                    (slot(seq) + 8) as *const u8,
                    buf.as_mut_ptr(),
                    size_us,
                );
                // Release: pairs with the producer's Acquire load of the stamp.
                stamp(seq).store(0, Ordering::Release);
            }
            if line.is_empty() {
                std::hint::black_box(&buf);
                let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
                line = report(messages, true, secs, None);
            }
            line
        })
    }?;
    host::pin_to_cpu(0);
    let mut maker = Maker::new(size_us);
    for seq in 0..messages {
        let msg = maker.make(seq);
        let t = Instant::now();
        // Acquire: pairs with the consumer's Release store of 0.
        while stamp(seq).load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
            if t.elapsed() > patience {
                return Err(Failure::new("the floor's consumer stopped"));
            }
        }
        // SAFETY: the slot is inside the mapping and free (its stamp is 0).
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), (slot(seq) + 8) as *mut u8, size_us) };
        // Release: pairs with the consumer's Acquire load of the stamp.
        stamp(seq).store(seq + 1, Ordering::Release);
    }
    let line = peer.finish()?;
    drop(mem);
    Ok(line)
}

/// The floor for a stream: the best plain copy ring this machine allows. With `ring`
/// given, one run at that many bytes of slots; otherwise a short trial at every depth
/// from 2 to 256 slots (while the ring stays under 1 GiB), then the run at the fastest,
/// reporting whichever of that run and that trial was faster.
/// The report line gains `depth` (slots) and `ring_bytes`.
fn floor_stream(messages: u64, size: u64, ring: Option<u64>) -> Result<String> {
    let slot_bytes = (8 + size).div_ceil(64) * 64;
    let depths: Vec<usize> = match ring {
        Some(r) => vec![(r / slot_bytes).max(2) as usize],
        None => (1..=8)
            .map(|k| 1usize << k)
            .filter(|&d| d as u64 * slot_bytes <= 1 << 30)
            .collect(),
    };
    let rate = |line: &str, n: u64| {
        let secs = crate::util::json_num(line, "seconds").unwrap_or(0.0);
        if secs > 0.0 {
            n as f64 / secs
        } else {
            0.0
        }
    };
    // The fastest trial: (rate, depth, its report line).
    let mut best: Option<(f64, usize, String)> = None;
    if depths.len() > 1 {
        // About 256 MiB per trial (at least 20,000 messages): long enough to settle.
        let trial = ((256u64 << 20) / size).max(20_000).min(messages);
        for &d in &depths {
            let line = floor_once(trial, size, d)?;
            let r = rate(&line, trial);
            if best.as_ref().is_none_or(|b| r > b.0) {
                best = Some((r, d, line));
            }
        }
    }
    let depth = best.as_ref().map_or(depths[0], |b| b.1);
    let line = floor_once(messages, size, depth)?;
    // The floor is the best this machine showed: the full run at the fastest depth, or
    // that depth's trial if it ran faster (a trial is a whole run of its own, of at least
    // 20,000 messages or 256 MiB). On a noisy host a single run can land in a slow
    // moment; a floor that the thing measured beats is no floor.
    let line = match best {
        Some((r, _, trial_line)) if r > rate(&line, messages) => trial_line,
        _ => line,
    };
    Ok(format!(
        "{},\"depth\":{depth},\"ring_bytes\":{}}}",
        line.trim_end().trim_end_matches('}'),
        depth as u64 * slot_bytes
    ))
}

fn unix_stream(messages: u64, size: u64) -> Result<String> {
    let (mut ours, theirs) =
        UnixStream::pair().map_err(|e| Failure::new(format!("socketpair: {e}")))?;
    #[allow(unsafe_code)]
    // SAFETY: the demo has one thread when it forks.
    let peer = unsafe {
        host::fork_peer(|| {
            host::pin_to_cpu(1);
            let mut theirs = &theirs;
            let mut buf = vec![0u8; size as usize];
            let mut start = None;
            let mut line = String::new();
            for seq in 0..messages {
                if let Err(e) = theirs.read_exact(&mut buf) {
                    line = report(seq, false, 0.0, Some(e.to_string()));
                    break;
                }
                let t0 = *start.get_or_insert_with(Instant::now);
                if let Err(problem) = verify(&buf, seq, size as usize) {
                    line = report(seq, false, t0.elapsed().as_secs_f64(), Some(problem));
                    break;
                }
            }
            if line.is_empty() {
                line = report(
                    messages,
                    true,
                    start.map_or(0.0, |s| s.elapsed().as_secs_f64()),
                    None,
                );
            }
            line
        })
    }?;
    drop(theirs);
    host::pin_to_cpu(0);
    let mut maker = Maker::new(size as usize);
    for seq in 0..messages {
        ours.write_all(maker.make(seq))
            .map_err(|e| Failure::new(format!("write: {e}")))?;
    }
    drop(ours);
    let line = peer.finish()?;
    Ok(line)
}

pub fn run(
    backend: BackendArg,
    messages: u64,
    size: u64,
    wait: Wait,
    ring: Option<u64>,
    json: bool,
) -> Result<()> {
    if size < MIN_SIZE {
        return Err(Failure::new(format!("--size {size} is too small")).hint(
            "messages carry an 8-byte sequence number (and from 16 bytes a checksum): use --size 8 or more",
        ));
    }
    if size > 64 << 20 {
        return Err(
            Failure::new(format!("--size {size} is too large")).hint("at most 64MiB per message")
        );
    }
    if messages == 0 {
        return Err(Failure::new("--messages must be at least 1"));
    }
    let name = format!("{backend:?}").to_lowercase();
    let line = match backend.shm() {
        Some(b) => channel_stream(b, messages, size, wait, ring)?,
        None if backend == BackendArg::Floor => floor_stream(messages, size, ring)?,
        None if wait == Wait::Async => crate::asyncio::unix_stream(messages, size)?,
        None => unix_stream(messages, size)?,
    };
    crate::util::parse_peer_line(&line)?;
    let num = |k| crate::util::json_num(&line, k).unwrap_or(0.0);
    let verified = line.contains("\"verified\":true");
    let received = num("received") as u64;
    let seconds = num("seconds");
    let msgs_per_s = if seconds > 0.0 {
        received as f64 / seconds
    } else {
        0.0
    };
    let gib_per_s = msgs_per_s * size as f64 / (1u64 << 30) as f64;
    if json {
        println!(
            "{}",
            Json::new()
                .str("backend", &name)
                .str("wait", &format!("{wait:?}").to_lowercase())
                .num("messages", messages)
                .num("size", size)
                .float("seconds", seconds)
                .float("msgs_per_s", msgs_per_s)
                .float("gib_per_s", gib_per_s)
                .bool("verified", verified)
                .num(
                    "ring_bytes",
                    crate::util::json_num(&line, "ring_bytes").unwrap_or(0.0) as u64
                )
                .raw(
                    "depth",
                    &crate::util::json_num(&line, "depth")
                        .map_or("null".to_owned(), |d| d.to_string()),
                )
                .str("copy", shm_core::format::copy::method())
                .machine()
                .finish()
        );
    } else {
        println!(
            "stream {name}: {received} of {messages} messages of {size} B in {seconds:.3} s: {msgs_per_s:.0} msgs/s, {gib_per_s:.2} GiB/s, {}",
            if verified { "all verified in order" } else { "NOT verified" }
        );
    }
    if !verified {
        let problem = line
            .split("\"problem\":\"")
            .nth(1)
            .unwrap_or("unknown")
            .trim_end_matches("\"}");
        return Err(Failure::new(format!("stream {name}: {problem}")));
    }
    Ok(())
}

/// Throughput: a producer process sends N messages of a given size, each with a
/// sequence number and a checksum, through the channel (or a Unix socket); a consumer
/// process verifies order and content and reports messages/s and GiB/s.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  shm-demo --backend memfd stream --messages 100000 --size 4096 --json"
)]
pub struct Args {
    /// Messages to send.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Bytes per message (at least 8: a sequence number; from 16 also a checksum).
    #[arg(long, default_value = "4096", value_parser = crate::util::parse_size)]
    size: u64,
    /// How the sides wait: spin, block (spin 50 µs, then futex) or async (tokio tasks
    /// awaiting the futures; tokio's UnixStream for --backend unix).
    #[arg(long, value_enum, default_value = "block")]
    wait: Wait,
    /// Ring bytes (rounded up to a power of two). Default: what the library
    /// recommends for the message size on this machine (ChannelOptions::for_messages:
    /// about twice the L2 cache, at least two messages). For `--backend floor`: the
    /// floor's ring; default: the fastest of 2 to 256 slots, tried in turn.
    #[arg(long, value_parser = crate::util::parse_size)]
    ring: Option<u64>,
}

impl Args {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        use BackendArg::*;
        let b = ctx.require_one_of(
            &[Posix, Anon, Memfd, Unix, Floor],
            "stream needs --backend: posix, anon, memfd, unix or floor",
        )?;
        run(b, self.messages, self.size, self.wait, self.ring, ctx.json)
    }
}
