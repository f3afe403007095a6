//! `--wait async`: both sides of `pingpong` and `stream` as tokio tasks on
//! current-thread runtimes, awaiting the channel's futures; and, for `--backend unix`,
//! tokio's `UnixStream`, which is what an async user would otherwise write.

use std::time::Instant;

use hdrhistogram::Histogram;
use shm_core::{Receiver, Sender};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::host::{self, Mem};
use crate::measure::{histogram, payload, report, warmup};
use crate::msg::{verify, Maker};
use crate::util::{Failure, Result};

/// A current-thread runtime for one side.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The pinging side over the channel: `total` round trips of `size` bytes, the last
/// `round_trips` recorded.
pub async fn ping(
    mut tx: Sender<Mem>,
    mut rx: Receiver<Mem>,
    total: u64,
    round_trips: u64,
    size: u64,
) -> std::result::Result<Histogram<u64>, shm_core::Error> {
    let mut hist = histogram();
    let mut ping = vec![7u8; size as usize];
    let mut pong = vec![0u8; size as usize];
    for i in 1..=total {
        let t = Instant::now();
        payload(&mut ping, i);
        let slot = tx.reserve_async(ping.len()).await?;
        slot.write(0, &ping)?;
        slot.commit();
        let msg = rx.recv_async().await?;
        msg.read(0, &mut pong)?;
        drop(msg);
        if pong[..8] != ping[..8] {
            return Err(shm_core::Error::Corrupt {
                what: "an echo",
                found: i,
            });
        }
        if i > total - round_trips {
            let _ = hist.record(t.elapsed().as_nanos() as u64);
        }
    }
    Ok(hist)
}

/// The echoing side over the channel.
pub async fn echo(
    mut rx: Receiver<Mem>,
    mut tx: Sender<Mem>,
    total: u64,
    size: u64,
) -> std::result::Result<(), shm_core::Error> {
    let mut buf = vec![0u8; size as usize];
    for _ in 0..total {
        {
            let msg = rx.recv_async().await?;
            msg.read(0, &mut buf)?;
        }
        let slot = tx.reserve_async(buf.len()).await?;
        slot.write(0, &buf)?;
        slot.commit();
    }
    Ok(())
}

/// Round trips over a Unix socket pair, both sides on tokio (`UnixStream`).
pub fn unix_pingpong(round_trips: u64, size: u64) -> Result<Histogram<u64>> {
    let total = warmup(round_trips) + round_trips;
    let (a, b) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| Failure::new(format!("socketpair: {e}")))?;
    #[allow(unsafe_code)]
    // SAFETY: the demo has one thread when it forks (no runtime exists yet); the child
    // builds its own runtime and only uses its socket.
    let peer = unsafe {
        host::fork_peer(move || {
            host::pin_to_cpu(1);
            let r: std::io::Result<()> = runtime().block_on(async move {
                b.set_nonblocking(true)?;
                let mut s = tokio::net::UnixStream::from_std(b)?;
                let mut buf = vec![0u8; size as usize];
                for _ in 0..total {
                    s.read_exact(&mut buf).await?;
                    s.write_all(&buf).await?;
                }
                Ok(())
            });
            crate::util::outcome_line(r)
        })
    }?;
    host::pin_to_cpu(0);
    let hist = runtime()
        .block_on(async move {
            a.set_nonblocking(true)?;
            let mut s = tokio::net::UnixStream::from_std(a)?;
            let mut hist = histogram();
            let mut ping = vec![7u8; size as usize];
            let mut pong = vec![0u8; size as usize];
            for i in 1..=total {
                let t = Instant::now();
                payload(&mut ping, i);
                s.write_all(&ping).await?;
                s.read_exact(&mut pong).await?;
                if i > total - round_trips {
                    let _ = hist.record(t.elapsed().as_nanos() as u64);
                }
            }
            Ok::<_, std::io::Error>(hist)
        })
        .map_err(|e| Failure::new(format!("tokio unix socket: {e}")))?;
    crate::util::parse_peer_line(&peer.finish()?)?;
    Ok(hist)
}

/// [`produce`] on a runtime of its own. Out of line, so that the blocking loops beside
/// its caller keep their code (the runtime's instantiation changed their inlining and
/// halved a blocking 64-byte stream).
#[inline(never)]
pub fn produce_blocking_on(
    tx: Sender<Mem>,
    messages: u64,
    size: u64,
) -> std::result::Result<(), shm_core::Error> {
    runtime().block_on(produce(tx, messages, size))
}

/// [`consume`] on a runtime of its own, reported as the blocking consumer reports.
#[inline(never)]
pub fn consume_blocking_on(rx: Receiver<Mem>, messages: u64, size: u64) -> String {
    let (received, seconds, problem) = runtime().block_on(consume(rx, messages, size));
    report(received, problem.is_none(), seconds, problem)
}

/// The producing side of `stream` over the channel.
pub async fn produce(
    mut tx: Sender<Mem>,
    messages: u64,
    size: u64,
) -> std::result::Result<(), shm_core::Error> {
    let mut maker = Maker::new(size as usize);
    for seq in 0..messages {
        let msg = maker.make(seq);
        let slot = tx.reserve_async(msg.len()).await?;
        slot.write(0, msg)?;
        slot.commit();
    }
    Ok(())
}

/// The consuming side of `stream` over the channel: (received, seconds, problem).
pub async fn consume(
    mut rx: Receiver<Mem>,
    messages: u64,
    size: u64,
) -> (u64, f64, Option<String>) {
    let mut buf = Vec::with_capacity(size as usize);
    let mut start = None;
    for seq in 0..messages {
        if let Err(e) = rx.recv_into_async(&mut buf).await {
            return (seq, 0.0, Some(e.to_string()));
        }
        let t0 = *start.get_or_insert_with(Instant::now);
        if let Err(p) = verify(&buf, seq, size as usize) {
            return (seq, t0.elapsed().as_secs_f64(), Some(p));
        }
    }
    (
        messages,
        start.map_or(0.0, |s| s.elapsed().as_secs_f64()),
        None,
    )
}

/// `stream` over a Unix socket pair, both sides on tokio: the consumer's report line.
pub fn unix_stream(messages: u64, size: u64) -> Result<String> {
    let (a, b) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| Failure::new(format!("socketpair: {e}")))?;
    #[allow(unsafe_code)]
    // SAFETY: the demo has one thread when it forks; the child builds its own runtime and
    // uses its socket and its pipe.
    let peer = unsafe {
        host::fork_peer(move || {
            host::pin_to_cpu(1);
            let (received, seconds, problem) = runtime().block_on(async move {
                if b.set_nonblocking(true).is_err() {
                    return (0, 0.0, Some("set_nonblocking".to_owned()));
                }
                let Ok(mut s) = tokio::net::UnixStream::from_std(b) else {
                    return (0, 0.0, Some("tokio UnixStream".to_owned()));
                };
                let mut buf = vec![0u8; size as usize];
                let mut start = None;
                for seq in 0..messages {
                    if let Err(e) = s.read_exact(&mut buf).await {
                        return (seq, 0.0, Some(e.to_string()));
                    }
                    let t0 = *start.get_or_insert_with(Instant::now);
                    if let Err(p) = verify(&buf, seq, size as usize) {
                        return (seq, t0.elapsed().as_secs_f64(), Some(p));
                    }
                }
                (
                    messages,
                    start.map_or(0.0, |s: Instant| s.elapsed().as_secs_f64()),
                    None,
                )
            });
            report(received, problem.is_none(), seconds, problem)
        })
    }?;
    host::pin_to_cpu(0);
    runtime()
        .block_on(async move {
            a.set_nonblocking(true)?;
            let mut s = tokio::net::UnixStream::from_std(a)?;
            let mut maker = Maker::new(size as usize);
            for seq in 0..messages {
                s.write_all(maker.make(seq)).await?;
            }
            s.shutdown().await
        })
        .map_err(|e| Failure::new(format!("tokio unix socket: {e}")))?;
    let line = peer.finish()?;
    Ok(line)
}
