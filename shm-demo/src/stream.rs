//! Throughput: a producer streams checksummed, numbered messages to a consumer process.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use shm_core::{Channel, ChannelOptions};

use crate::host::{self, Mem};
use crate::util::{Failure, Json, Result};
use crate::BackendArg;

/// Bytes of the per-message header: sequence number, checksum. Messages of 8 to 15 bytes
/// carry the sequence number only.
const HEADER: usize = 16;
/// The smallest message: a sequence number.
const MIN_SIZE: u64 = 8;

/// A checksum the compiler vectorises: a wrapping sum of the 8-byte words, mixed with the
/// length. It catches torn, stale, shifted and corrupted payloads, which is its job here.
fn checksum(bytes: &[u8]) -> u64 {
    let mut sums = [0u64; 4];
    let mut chunks = bytes.chunks_exact(32);
    for c in &mut chunks {
        for (i, s) in sums.iter_mut().enumerate() {
            *s = s.wrapping_add(u64::from_ne_bytes(
                c[i * 8..i * 8 + 8].try_into().expect("8 bytes"),
            ));
        }
    }
    let mut h = sums.iter().fold(bytes.len() as u64, |h, s| {
        h.rotate_left(17) ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    });
    for &b in chunks.remainder() {
        h = h.rotate_left(5) ^ u64::from(b);
    }
    h
}

/// The producer's message buffer: header + payload; the first payload word varies with
/// the sequence number so no two messages are alike.
struct Maker {
    buf: Vec<u8>,
}

impl Maker {
    fn new(size: usize) -> Self {
        let buf = (0..size)
            .map(|i| (i as u8).wrapping_mul(151).wrapping_add(7))
            .collect();
        Maker { buf }
    }
    fn make(&mut self, seq: u64) -> &[u8] {
        let n = self.buf.len();
        if n < HEADER {
            self.buf[..8].copy_from_slice(&seq.to_ne_bytes());
            return &self.buf;
        }
        if n >= HEADER + 8 {
            self.buf[HEADER..HEADER + 8]
                .copy_from_slice(&seq.wrapping_mul(0x2545_F491_4F6C_DD1D).to_ne_bytes());
        }
        let sum = checksum(&self.buf[HEADER..]) ^ seq;
        self.buf[..8].copy_from_slice(&seq.to_ne_bytes());
        self.buf[8..16].copy_from_slice(&sum.to_ne_bytes());
        &self.buf
    }
}

/// Checks one received message; `Err` says what is wrong.
fn verify(msg: &[u8], expected_seq: u64, size: usize) -> std::result::Result<(), String> {
    if msg.len() != size {
        return Err(format!(
            "message {expected_seq} is {} bytes, expected {size}",
            msg.len()
        ));
    }
    let seq = u64::from_ne_bytes(msg[..8].try_into().expect("8 bytes"));
    if seq != expected_seq {
        return Err(format!(
            "message {seq} arrived where {expected_seq} was expected"
        ));
    }
    if size < HEADER {
        return Ok(());
    }
    let sum = u64::from_ne_bytes(msg[8..16].try_into().expect("8 bytes"));
    if checksum(&msg[HEADER..]) ^ seq != sum {
        return Err(format!("message {seq} failed its checksum"));
    }
    Ok(())
}

fn report(received: u64, verified: bool, seconds: f64, error: Option<String>) -> String {
    let mut j = Json::new()
        .num("pid", std::process::id())
        .num("received", received)
        .bool("verified", verified)
        .float("seconds", seconds);
    if let Some(e) = error {
        j = j.str("problem", &e);
    }
    j.finish()
}

/// The consuming side over the channel: receive, copy out, verify.
pub fn consume_role(mem: Mem, messages: u64, size: u64) -> String {
    host::pin_to_cpu(1);
    let chan = match Channel::attach(mem) {
        Ok(c) => c,
        Err(e) => return Json::new().str("error", &e.to_string()).finish(),
    };
    let mut rx = match chan.receiver(0) {
        Ok(r) => r,
        Err(e) => return Json::new().str("error", &e.to_string()).finish(),
    };
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

fn channel_stream(backend: host::Backend, messages: u64, size: u64) -> Result<String> {
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
    ];
    let peer = host::start_peer(backend, chan.raw().memory(), &args, move |m| {
        consume_role(m, messages, size)
    })?;
    host::pin_to_cpu(0);
    let mut tx = chan.sender(0).map_err(crate::errors::core)?;
    let mut maker = Maker::new(size as usize);
    for seq in 0..messages {
        let msg = maker.make(seq);
        // Zero-copy: reserve in the ring, write in place, commit.
        let slot = tx.reserve(msg.len()).map_err(crate::errors::core)?;
        slot.write(0, msg).map_err(crate::errors::core)?;
        slot.commit();
    }
    drop(tx);
    peer.finish()
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

pub fn run(backend: BackendArg, messages: u64, size: u64, json: bool) -> Result<()> {
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
        Some(b) => channel_stream(b, messages, size)?,
        None if backend == BackendArg::Floor => floor_stream(messages, size)?,
        None => unix_stream(messages, size)?,
    };
    crate::exchange::parse_peer_line(&line)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_catches_changes() {
        let mut m = Maker::new(4096);
        let msg = m.make(7).to_vec();
        assert_eq!(verify(&msg, 7, 4096), Ok(()));
        assert!(verify(&msg, 8, 4096).is_err());
        for i in [16, 100, 4095] {
            let mut bad = msg.clone();
            bad[i] ^= 1;
            assert!(verify(&bad, 7, 4096).is_err(), "flip at {i}");
        }
        let a = m.make(1).to_vec();
        let b = m.make(2).to_vec();
        assert_ne!(a[16..], b[16..]);
    }
}
