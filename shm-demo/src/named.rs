//! A named broadcast (and a named channel) a person can watch by hand, in two terminals:
//! `publish --name /cam` creates it and publishes stamped, checksummed messages (the
//! format of `msg.rs`: the message number in the first 8 bytes, then a checksum);
//! `subscribe --name /cam` attaches, verifies and reports. Any program that speaks the
//! broadcast (the Python package, another Rust program) can take either side.

use crate::cli::Ctx;
use crate::host::Backend;
use std::time::{Duration, Instant};

use shm_core::{
    Broadcast, BroadcastMode, BroadcastOptions, Channel, ChannelOptions, RecvTimeoutError,
};
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
    let len = opts.segment_len()?;
    crate::util::remember_segment(name);
    let shm = ShmOptions::new(name).size(len).create()?;
    let b = Broadcast::create(shm, &opts)?;
    let mut p = b.publisher()?;
    if !json {
        println!(
            "publishing {messages} messages of {size} B on {name} ({}); subscribe with: shm-demo --backend posix subscribe --name {name}",
            if lossy { "lossy" } else { "reliable" }
        );
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    if wait_subscribers > 0 {
        p.wait_for_subscribers(wait_subscribers, Duration::from_secs(60))?;
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
        p.publish(maker.make(seq))?;
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
    let shm = ShmOptions::new(name).open()?;
    let b = Broadcast::attach(shm)?;
    let mut s = b.subscriber()?;
    if !json {
        println!("subscribed to {name} at message {}", s.next_message());
    }
    let joined = s.next_message();
    let (mut got, mut missed, mut upstream_lost) = (0u64, 0u64, 0u64);
    let mut follow = crate::msg::Follow::default();
    let mut buf = Vec::new();
    let mut start = None;
    let mut end = "closed";
    while count.is_none_or(|c| got < c) && !interrupted() {
        match s.recv_into_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(_) => {
                let n = s.last_number().unwrap_or_default();
                start.get_or_insert_with(Instant::now);
                follow.numbered(&buf, n, buf.len()).map_err(Failure::new)?;
                got += 1;
            }
            Err(RecvTimeoutError::Lagged { missed: m }) => {
                missed += m;
                follow.missed(m);
            }
            Err(RecvTimeoutError::UpstreamLost) => {
                upstream_lost += 1;
                if !json {
                    println!("the upstream exporter is gone; waiting for it to come back");
                }
            }
            Err(RecvTimeoutError::Timeout { .. }) => {}
            Err(RecvTimeoutError::Closed) => break,
            Err(RecvTimeoutError::PeerDied { .. }) => {
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
                .num("first", follow.first.unwrap_or(0))
                .num("got", got)
                .num("missed", missed)
                .num("upstream_lost", upstream_lost)
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

/// `shm-demo --backend posix send --name NAME`: creates a channel, waits (at most 60 s)
/// for a receiver to take its other end, sends `messages` stamped, checksummed messages
/// of `size` bytes, closes and removes it. Ctrl-C ends it (and removes it).
pub fn send(name: &str, messages: u64, size: u64, json: bool) -> Result<()> {
    if size < MIN_SIZE {
        return Err(Failure::new(format!("--size {size} is too small"))
            .hint("at least 8 bytes: the message number"));
    }
    let opts = ChannelOptions::for_messages(size);
    let len = opts.segment_len()?;
    crate::util::remember_segment(name);
    let shm = ShmOptions::new(name).size(len).create()?;
    let chan = Channel::create(shm, &opts)?;
    let mut tx = chan.sender(0)?;
    if !json {
        println!("sending {messages} messages of {size} B on {name}; receive with: shm-demo --backend posix receive --name {name}");
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    // The ring holds what it holds; a message that must wait waits for the receiver,
    // bounded: a receiver that never comes ends the run.
    let mut maker = Maker::new(size as usize);
    let start = Instant::now();
    for seq in 0..messages {
        tx.send_timeout(maker.make(seq), Duration::from_secs(60))?;
    }
    // Closing waits for nothing: the receiver reads what is left, then sees Closed.
    let secs = start.elapsed().as_secs_f64();
    drop(tx);
    // Keep the segment until the receiver is done with it (its end goes away).
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until && !interrupted() {
        match chan.ring_state(0) {
            Ok(r) if r.receiver_pid != 0 && r.head < r.tail => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => break,
        }
    }
    if json {
        println!(
            "{}",
            Json::new()
                .str("name", name)
                .num("sent", messages)
                .num("size", size)
                .float("seconds", secs)
                .finish()
        );
    } else {
        println!("sent {messages} messages in {secs:.3} s; removing {name}");
    }
    drop(chan);
    crate::util::forget_segment(name);
    Ok(())
}

/// `shm-demo --backend posix receive --name NAME`: takes the receiving end of a named
/// channel and verifies every message's number and checksum until the sender closes
/// (or `count` messages, or Ctrl-C).
pub fn receive(name: &str, count: Option<u64>, json: bool) -> Result<()> {
    let shm = ShmOptions::new(name).open()?;
    let chan = Channel::attach(shm)?;
    let mut rx = chan.receiver(0)?;
    let mut buf = Vec::new();
    let mut got = 0u64;
    let mut end = "closed";
    let start = Instant::now();
    while count.is_none_or(|c| got < c) && !interrupted() {
        match rx.recv_into_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(_) => {
                verify(&buf, got, buf.len()).map_err(Failure::new)?;
                got += 1;
            }
            Err(RecvTimeoutError::Timeout { .. }) => {}
            Err(RecvTimeoutError::Closed) => break,
            Err(RecvTimeoutError::PeerDied { .. }) => {
                end = "sender died";
                break;
            }
            Err(e) => return Err(errors::core(e)),
        }
    }
    if count.is_some_and(|c| got >= c) {
        end = "count reached";
    }
    let secs = start.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            Json::new()
                .str("name", name)
                .num("got", got)
                .bool("verified", true)
                .str("end", end)
                .float("seconds", secs)
                .finish()
        );
    } else {
        println!("received {got} messages, every one in order and checksummed; {end}");
    }
    Ok(())
}

const PUBSUB_POSIX: &str = "publish and subscribe name a POSIX segment: use --backend posix";
const SENDRECV_POSIX: &str = "send and receive name a POSIX segment: use --backend posix";

/// Create a named broadcast and publish stamped, checksummed messages to it (for a
/// subscriber in another terminal or another language); removed at the end or on
/// Ctrl-C.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  shm-demo --backend posix publish --name /cam --messages 1000 --size 64 --rate 100"
)]
pub struct PublishArgs {
    /// The broadcast's name.
    #[arg(long)]
    name: String,
    /// Messages to publish.
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Bytes per message (at least 8).
    #[arg(long, default_value = "64", value_parser = crate::util::parse_size)]
    size: u64,
    /// Messages per second (default: as fast as the subscribers allow).
    #[arg(long)]
    rate: Option<f64>,
    /// Lossy: never wait for subscribers.
    #[arg(long)]
    lossy: bool,
    /// Wait (at most 60 s) for this many subscribers before publishing.
    #[arg(long, default_value_t = 0)]
    wait_subscribers: u32,
}

impl PublishArgs {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        ctx.require(Backend::Posix, PUBSUB_POSIX, false)?;
        publish(
            &self.name,
            self.messages,
            self.size,
            self.rate,
            self.lossy,
            self.wait_subscribers,
            ctx.json,
        )
    }
}

/// Subscribe to a named broadcast, verify every message's number and checksum, and
/// report what arrived and what was missed.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  shm-demo --backend posix subscribe --name /cam --count 1000")]
pub struct SubscribeArgs {
    /// The broadcast's name.
    #[arg(long)]
    name: String,
    /// Stop after this many messages (default: until the publisher closes).
    #[arg(long)]
    count: Option<u64>,
}

impl SubscribeArgs {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        ctx.require(Backend::Posix, PUBSUB_POSIX, false)?;
        subscribe(&self.name, self.count, ctx.json)
    }
}

/// Create a named channel and send stamped, checksummed messages on it (to a
/// receiver in another terminal or another language); removed at the end or on
/// Ctrl-C.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  shm-demo --backend posix send --name /q --messages 1000 --size 64"
)]
pub struct SendArgs {
    /// The channel's name.
    #[arg(long)]
    name: String,
    /// Messages to send.
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Bytes per message (at least 8).
    #[arg(long, default_value = "64", value_parser = crate::util::parse_size)]
    size: u64,
}

impl SendArgs {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        ctx.require(Backend::Posix, SENDRECV_POSIX, false)?;
        send(&self.name, self.messages, self.size, ctx.json)
    }
}

/// Take the receiving end of a named channel and verify every message's number and
/// checksum until the sender closes.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  shm-demo --backend posix receive --name /q")]
pub struct ReceiveArgs {
    /// The channel's name.
    #[arg(long)]
    name: String,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
}

impl ReceiveArgs {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        ctx.require(Backend::Posix, SENDRECV_POSIX, false)?;
        receive(&self.name, self.count, ctx.json)
    }
}
