//! Throughput: a producer streams checksummed, numbered messages to a consumer process.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use shm_core::{Channel, ChannelOptions};

use crate::host::{self, Mem};
use crate::measure::{report, Wait};
use crate::msg::{verify, Maker, MIN_SIZE};
use crate::util::{Failure, Json, Result};
use crate::BackendArg;

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
    let mut buf = Vec::with_capacity(size as usize);
    let mut start = None;
    for seq in 0..messages {
        if let Err(e) = rx.recv_into(&mut buf) {
            return report(seq, false, 0.0, Some(e.to_string()));
        }
        let t0 = *start.get_or_insert_with(Instant::now);
        if let Err(problem) = verify(&buf, seq, size as usize) {
            return report(seq, false, t0.elapsed().as_secs_f64(), Some(problem));
        }
    }
    let seconds = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    report(messages, true, seconds, None)
}

/// Ring bytes for `size`-byte messages: room for at least 8 in flight, 1 MiB to 256 MiB.
/// The channel and the floor get the same.
fn ring_bytes(size: u64) -> u64 {
    (((size + 8) * 8).next_power_of_two()).clamp(1 << 20, 1 << 28)
}

fn channel_stream(backend: host::Backend, messages: u64, size: u64, wait: Wait) -> Result<String> {
    let cap = ring_bytes(size);
    let opts = ChannelOptions::new().capacity(cap);
    let len = opts.segment_len_for(cap).map_err(crate::errors::core)?;
    let mem = host::create(backend, len)?;
    let chan = Channel::create(mem, &opts).map_err(crate::errors::core)?;
    let args = [
        "--role".to_owned(),
        "consume".to_owned(),
        "--count".to_owned(),
        messages.to_string(),
        "--size".to_owned(),
        size.to_string(),
        "--wait".to_owned(),
        format!("{wait:?}").to_lowercase(),
    ];
    let peer = host::start_peer(backend, chan.raw().memory(), &args, move |m| {
        consume_role(m, messages, size, wait)
    })?;
    host::pin_to_cpu(0);
    let mut tx = chan.sender(0).map_err(crate::errors::core)?;
    tx.set_wait(wait.mode());
    let produced = if wait == Wait::Async {
        crate::asyncio::produce_blocking_on(tx, messages, size).map_err(crate::errors::core)
    } else {
        produce(tx, messages, size)
    };
    match produced {
        Ok(()) => peer.finish(),
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
        let slot = tx.reserve(msg.len()).map_err(crate::errors::core)?;
        slot.write(0, msg).map_err(crate::errors::core)?;
        slot.commit();
    }
    Ok(())
}

fn unix_stream(messages: u64, size: u64) -> Result<String> {
    let (mut ours, theirs) =
        UnixStream::pair().map_err(|e| Failure::new(format!("socketpair: {e}")))?;
    let (mut report_rx, report_tx) =
        std::io::pipe().map_err(|e| Failure::new(format!("pipe: {e}")))?;
    #[allow(unsafe_code)]
    // SAFETY: the demo has one thread when it forks.
    let mut child = unsafe {
        shm_anon::fork(|| {
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
            let mut w = &report_tx;
            i32::from(w.write_all(line.as_bytes()).is_err())
        })
    }
    .map_err(|e| Failure::new(format!("fork: {e}")))?;
    drop(theirs);
    drop(report_tx);
    host::pin_to_cpu(0);
    let mut maker = Maker::new(size as usize);
    for seq in 0..messages {
        ours.write_all(maker.make(seq))
            .map_err(|e| Failure::new(format!("write: {e}")))?;
    }
    drop(ours);
    let mut line = String::new();
    report_rx
        .read_to_string(&mut line)
        .map_err(|e| Failure::new(format!("read: {e}")))?;
    let status = child
        .wait()
        .map_err(|e| Failure::new(format!("wait: {e}")))?;
    if !status.success() {
        return Err(Failure::new(format!("the consumer failed: {status}")));
    }
    Ok(line)
}

/// The floor: what moving the bytes costs with nothing else. A ring of fixed-size slots
/// in `MAP_SHARED | MAP_ANONYMOUS` memory shared with a forked consumer; the producer
/// stamps and checksums each message exactly as the channel run does, copies it into a
/// slot with a plain `copy_nonoverlapping` (`memcpy`) and publishes a counter; the consumer
/// copies it out the same way, frees the slot and verifies it. No validation, no framing,
/// no wake-ups: both sides spin.
///
/// A plain `memcpy` out of memory that the other process may be writing is exactly what
/// the library refuses to do (see `shm_core`'s copy module); here the counters keep the
/// two sides off each other's slots, and the number is a reference, not an API.
#[allow(unsafe_code)]
fn floor_stream(messages: u64, size: u64) -> Result<String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    const SLOTS_AT: usize = 256;
    let slots = (ring_bytes(size) / size).max(8) as usize;
    let len = SLOTS_AT + slots * size as usize;
    let mem = shm_anon::AnonShm::create(len).map_err(|e| Failure::new(format!("mmap: {e}")))?;
    let base = shm_core::SharedMemory::as_ptr(&mem) as usize;
    let size_us = size as usize;
    // The mapping is `len` bytes, page aligned, alive until both processes are done (the
    // child has its own copy of the mapping); the words at 0 and 128 are only accessed
    // atomically.
    let head = move || {
        // SAFETY: see above; offset 0 is 8-aligned and inside the mapping.
        unsafe { AtomicU64::from_ptr(base as *mut u64) }
    };
    let tail = move || {
        // SAFETY: see above; offset 128 is 8-aligned and inside the mapping.
        unsafe { AtomicU64::from_ptr((base + 128) as *mut u64) }
    };
    let slot = move |seq: u64| (base + SLOTS_AT + (seq as usize % slots) * size_us) as *mut u8;
    let patience = std::time::Duration::from_secs(10);
    let (mut report_rx, report_tx) =
        std::io::pipe().map_err(|e| Failure::new(format!("pipe: {e}")))?;
    let report_w = &report_tx;
    // SAFETY: the demo has one thread when it forks; the child uses only the mapping, its
    // own heap and the pipe it inherited.
    let mut child = unsafe {
        shm_anon::fork(move || {
            host::pin_to_cpu(1);
            let mut buf = vec![0u8; size_us];
            let mut start = None;
            let mut line = String::new();
            for seq in 0..messages {
                let t = Instant::now();
                // Acquire: pairs with the producer's Release store of `tail`.
                while tail().load(Ordering::Acquire) <= seq {
                    std::hint::spin_loop();
                    if t.elapsed() > patience {
                        line = report(seq, false, 0.0, Some("the producer stopped".into()));
                        break;
                    }
                }
                if !line.is_empty() {
                    break;
                }
                let t0 = *start.get_or_insert_with(Instant::now);
                // SAFETY: the slot is inside the mapping and published (tail > seq); the
                // producer does not touch it until we move `head` past it.
                std::ptr::copy_nonoverlapping(slot(seq), buf.as_mut_ptr(), size_us);
                // Release: pairs with the producer's Acquire load of `head`.
                head().store(seq + 1, Ordering::Release);
                if let Err(problem) = verify(&buf, seq, size_us) {
                    line = report(seq, false, t0.elapsed().as_secs_f64(), Some(problem));
                    break;
                }
            }
            if line.is_empty() {
                let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
                line = report(messages, true, secs, None);
            }
            let mut w = report_w;
            i32::from(w.write_all(line.as_bytes()).is_err())
        })
    }
    .map_err(|e| Failure::new(format!("fork: {e}")))?;
    drop(report_tx);
    host::pin_to_cpu(0);
    let mut maker = Maker::new(size_us);
    for seq in 0..messages {
        let msg = maker.make(seq);
        let t = Instant::now();
        // Acquire: pairs with the consumer's Release store of `head`.
        while seq - head().load(Ordering::Acquire) >= slots as u64 {
            std::hint::spin_loop();
            if t.elapsed() > patience {
                return Err(Failure::new("the floor's consumer stopped"));
            }
        }
        // SAFETY: the slot is inside the mapping and free (head passed it).
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), slot(seq), size_us) };
        // Release: pairs with the consumer's Acquire load of `tail`.
        tail().store(seq + 1, Ordering::Release);
    }
    let mut line = String::new();
    report_rx
        .read_to_string(&mut line)
        .map_err(|e| Failure::new(format!("read: {e}")))?;
    let status = child
        .wait()
        .map_err(|e| Failure::new(format!("wait: {e}")))?;
    drop(mem);
    if !status.success() {
        return Err(Failure::new(format!("the consumer failed: {status}")));
    }
    Ok(line)
}

pub fn run(backend: BackendArg, messages: u64, size: u64, wait: Wait, json: bool) -> Result<()> {
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
        Some(b) => channel_stream(b, messages, size, wait)?,
        None if backend == BackendArg::Floor => floor_stream(messages, size)?,
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
