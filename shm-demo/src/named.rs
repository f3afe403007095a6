//! A named broadcast a person can watch by hand, in two terminals:
//! `publish --name /cam` creates it and publishes stamped, checksummed messages (the
//! format of `msg.rs`: the message number in the first 8 bytes, then a checksum);
//! `subscribe --name /cam` attaches, verifies and reports. Any program that speaks the
//! broadcast (the Python package, another Rust program) can take either side.

use std::time::{Duration, Instant};

use shm_core::{Broadcast, BroadcastMode, BroadcastOptions, Error};
use shm_posix::ShmOptions;

use crate::errors;
use crate::msg::{verify, Maker, MIN_SIZE};
use crate::util::{interrupted, Failure, Json, Result};

/// `shm-demo --backend posix publish --name NAME`: creates the broadcast, waits for
/// `wait_subscribers`, publishes `messages` messages of `size` bytes (at `rate` per
/// second, or as fast as the subscribers allow), then removes it. Ctrl-C ends it (and
/// removes it).
#[allow(clippy::too_many_arguments)]
pub fn publish(
    name: &str,
    messages: u64,
    size: u64,
    rate: Option<f64>,
    lossy: bool,
    wait_subscribers: u32,
    json: bool,
) -> Result<()> {
    if size < MIN_SIZE {
        return Err(Failure::new(format!("--size {size} is too small"))
            .hint("at least 8 bytes: the message number"));
    }
    let opts = BroadcastOptions::for_messages(size).mode(if lossy {
        BroadcastMode::Lossy
    } else {
        BroadcastMode::Reliable
    });
    let len = opts.segment_len().map_err(errors::core)?;
    crate::util::remember_segment(name);
    let shm = ShmOptions::new(name)
        .size(len)
        .create()
        .map_err(errors::posix)?;
    let b = Broadcast::create(shm, &opts).map_err(errors::core)?;
    let mut p = b.publisher().map_err(errors::core)?;
    if !json {
        println!(
            "publishing {messages} messages of {size} B on {name} ({}); subscribe with: shm-demo --backend posix subscribe --name {name}",
            if lossy { "lossy" } else { "reliable" }
        );
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    if wait_subscribers > 0 {
        p.wait_for_subscribers(wait_subscribers, Duration::from_secs(60))
            .map_err(errors::core)?;
    }
    let mut maker = Maker::new(size as usize);
    let start = Instant::now();
    for seq in 0..messages {
        if let Some(r) = rate {
            let due = start + Duration::from_secs_f64(seq as f64 / r);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        p.publish(maker.make(seq)).map_err(errors::core)?;
    }
    let secs = start.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            Json::new()
                .str("name", name)
                .num("published", messages)
                .num("size", size)
                .float("seconds", secs)
                .float("msgs_per_s", messages as f64 / secs.max(1e-9))
                .finish()
        );
    } else {
        println!("published {messages} messages in {secs:.3} s; removing {name}");
    }
    drop(p);
    drop(b);
    crate::util::forget_segment(name);
    Ok(())
}

/// `shm-demo --backend posix subscribe --name NAME`: attaches, receives `count` messages
/// (or until the publisher closes or dies, or Ctrl-C), verifying each one's number and
/// checksum; reports what it got and what it missed.
pub fn subscribe(name: &str, count: Option<u64>, json: bool) -> Result<()> {
    let shm = ShmOptions::new(name).open().map_err(errors::posix)?;
    let b = Broadcast::attach(shm).map_err(errors::core)?;
    let mut s = b.subscribe().map_err(errors::core)?;
    if !json {
        println!("subscribed to {name} at message {}", s.next_message());
    }
    let joined = s.next_message();
    let (mut got, mut missed) = (0u64, 0u64);
    let mut buf = Vec::new();
    let mut start = None;
    let mut end = "closed";
    while count.is_none_or(|c| got < c) && !interrupted() {
        match s.recv_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(n) => {
                start.get_or_insert_with(Instant::now);
                verify(&buf, n, buf.len()).map_err(Failure::new)?;
                got += 1;
            }
            Err(Error::Lagged { missed: m }) => missed += m,
            Err(Error::Timeout { .. }) => {}
            Err(Error::Closed) => break,
            Err(Error::PeerDied { .. }) => {
                end = "publisher died";
                break;
            }
            Err(e) => return Err(errors::core(e)),
        }
    }
    if count.is_some_and(|c| got >= c) {
        end = "count reached";
    }
    let secs = start.map_or(0.0, |t| t.elapsed().as_secs_f64());
    if json {
        println!(
            "{}",
            Json::new()
                .str("name", name)
                .num("joined", joined)
                .num("got", got)
                .num("missed", missed)
                .bool("verified", true)
                .str("end", end)
                .float("seconds", secs)
                .finish()
        );
    } else {
        println!(
            "received {got} messages (joined at {joined}, missed {missed}), every one in order and checksummed; {end}"
        );
    }
    Ok(())
}
