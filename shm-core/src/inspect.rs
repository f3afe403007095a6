//! Seeing inside a segment without joining it: [`inspect`] reads the header and the kind's
//! shared state into a plain [`Inspection`], for tools (`shm-demo ls`, `inspect`, `hz`),
//! the Python package and the bridge.
//!
//! Inspecting never writes (a read-only mapping will do) and never waits: a segment that
//! is still initialising is reported as such, not waited for. Everything read is a
//! snapshot that peers may be changing while it is read; every value is checked before it
//! is used to find another (as an attach checks it), and a value that no honest peer
//! writes makes the verdict [`Verdict::Corrupt`] with the reason.
//!
//! ```
//! use shm_core::inspect::{inspect, Detail, Verdict};
//! use shm_core::{Channel, ChannelOptions, HeapMemory, Kind};
//! # fn main() -> Result<(), shm_core::Error> {
//! let mem = HeapMemory::new(1 << 16);
//! let view = mem.share();
//! let chan = Channel::create(mem, &ChannelOptions::new())?;
//! let _tx = chan.sender(0)?;
//! let seen = inspect(view);
//! assert_eq!(seen.verdict, Verdict::Ours);
//! assert_eq!(seen.kind, Some(Kind::Channel));
//! let Detail::Channel(rings) = &seen.detail else { unreachable!() };
//! assert_eq!(rings[0].sender_pid, std::process::id());
//! # Ok(()) }
//! ```

#![allow(unsafe_code)]

use std::time::Duration;

use crate::broadcast::{Broadcast, BroadcastState};
use crate::channel::{Channel, RingState};
use crate::format::copy;
use crate::format::layout::{self, AttachOptions, Expect, Header, HEADER_SIZE, MAGIC};
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::schema::{Kind, Schema};
use crate::os::proc::{self, Liveness};
use crate::protocol::sync::Ordering;

/// What a look at a segment concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// One of ours, valid as far as the look went.
    Ours,
    /// Ours, still being initialised by its creator.
    Initialising,
    /// Not one of ours (no header, another program's file).
    Foreign,
    /// One of ours whose header or shared state no honest peer writes (or that was cut
    /// short): see [`Inspection::problem`].
    Corrupt,
}

impl Verdict {
    /// `ours`, `initialising`, `foreign`, `corrupt`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ours => "ours",
            Verdict::Initialising => "initialising",
            Verdict::Foreign => "foreign",
            Verdict::Corrupt => "corrupt",
        }
    }
}

/// Per-kind shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// Nothing beyond the header (a record, or a segment not looked into).
    None,
    /// A seqlock record's lock state.
    SeqLock {
        /// The sequence word (odd while a write is in progress).
        sequence: u64,
        /// The pid holding the write lock (0: free).
        writer_pid: u32,
    },
    /// Each ring of a channel.
    Channel(Vec<RingState>),
    /// A broadcast's state.
    Broadcast(BroadcastState),
    /// An event's state.
    Event(crate::event::EventState),
    /// A service's state.
    Service(crate::service::ServiceState),
}

/// What [`inspect`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The mapping's length.
    pub size: u64,
    /// The verdict.
    pub verdict: Verdict,
    /// Why the verdict is `Foreign` or `Corrupt` (or what is pending, `Initialising`).
    pub problem: Option<String>,
    /// The payload kind from the header, when the header could be read.
    pub kind: Option<Kind>,
    /// The record schema from the header (`"channel"` for an untyped channel, `"bytes"` for an
    /// untyped broadcast).
    pub schema: Option<Schema>,
    /// The creator's pid from the header (0 when unknown).
    pub creator_pid: u32,
    /// The kind's shared state.
    pub detail: Detail,
}

impl Inspection {
    fn foreign(size: u64, why: String) -> Self {
        Inspection {
            size,
            verdict: Verdict::Foreign,
            problem: Some(why),
            kind: None,
            schema: None,
            creator_pid: 0,
            detail: Detail::None,
        }
    }

    /// The record's name for people: the schema's name for records, seqlocks and typed
    /// channels and broadcasts; `None` for untyped ones.
    pub fn record_name(&self) -> Option<&str> {
        let s = self.schema.as_ref()?;
        match (self.kind, s.name()) {
            (Some(Kind::Channel), "channel")
            | (Some(Kind::Broadcast), "bytes")
            | (Some(Kind::Event), "event")
            | (Some(Kind::Service), "service") => None,
            (_, name) => Some(name),
        }
    }

    /// Every process the segment names as a current holder: channel ends, the
    /// publisher, subscriber lines, a seqlock writer (not the creator, which may have
    /// left long ago). Sorted, without duplicates.
    pub fn peers(&self) -> Vec<u32> {
        let mut v: Vec<u32> = match &self.detail {
            Detail::None => Vec::new(),
            Detail::SeqLock { writer_pid, .. } => vec![*writer_pid],
            Detail::Channel(rings) => rings
                .iter()
                .flat_map(|r| [r.sender_pid, r.receiver_pid])
                .collect(),
            Detail::Broadcast(b) => std::iter::once(b.publisher_pid)
                .chain(
                    b.lines
                        .iter()
                        .filter(|l| l.state == "active")
                        .map(|l| l.pid),
                )
                .collect(),
            Detail::Event(e) => std::iter::once(e.listener_pid)
                .chain(e.notifier_pids.iter().copied())
                .collect(),
            Detail::Service(s) => s
                .client_pids
                .iter()
                .chain(&s.server_pids)
                .copied()
                .collect(),
        };
        v.retain(|&p| p != 0);
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether any process the segment names (its creator or a holder) is alive.
    pub fn anyone_alive(&self) -> bool {
        std::iter::once(self.creator_pid)
            .chain(self.peers())
            .any(proc::is_live)
    }
}

/// Looks at `mem` (a read-only mapping will do) without writing or waiting.
pub fn inspect<M: SharedMemory>(mem: M) -> Inspection {
    let size = mem.len() as u64;
    if size < 8 {
        return Inspection::foreign(size, format!("{size} bytes: too small for a header"));
    }
    let mut magic = [0u8; 8];
    // SAFETY: the mapping holds at least 8 bytes (checked above).
    unsafe { copy::load_bytes(mem.as_ptr(), &mut magic) };
    if magic != MAGIC {
        return Inspection::foreign(
            size,
            format!(
                "no shm header (the first bytes are \"{}\")",
                magic.escape_ascii()
            ),
        );
    }
    let mut seen = Inspection {
        size,
        verdict: Verdict::Corrupt,
        problem: None,
        kind: None,
        schema: None,
        creator_pid: 0,
        detail: Detail::None,
    };
    if size < HEADER_SIZE as u64 {
        seen.problem = Some(format!(
            "truncated: {size} bytes, less than the 128-byte header"
        ));
        return seen;
    }
    // SAFETY: the mapping holds the header (checked above); the copy is private.
    let h: Header = unsafe { copy::load_pod(mem.as_ptr(), Ordering::Relaxed) };
    if let Some(now) = mem.truncated() {
        seen.problem = Some(format!("truncated under us to {now} bytes"));
        return seen;
    }
    seen.creator_pid = h.creator_pid;
    seen.kind = kind_of(h.kind);
    seen.schema = Schema::from_header(&h).ok();
    if h.ready == 0 {
        (seen.verdict, seen.problem) = if proc::liveness(h.creator_pid) == Liveness::Dead {
            let why = format!(
                "never became ready: its creator (pid {}) died",
                h.creator_pid
            );
            (Verdict::Corrupt, Some(why))
        } else {
            (
                Verdict::Initialising,
                Some("still being initialised".to_owned()),
            )
        };
        return seen;
    }
    let (Some(kind), Some(schema)) = (seen.kind, seen.schema) else {
        seen.problem = Some(format!(
            "corrupt header: kind {} with schema {:?}",
            h.kind,
            Schema::from_header(&h).err()
        ));
        return seen;
    };
    let expect = Expect {
        kind,
        schema,
        min_payload: 0,
        any_schema: true,
    };
    if let Err(e) = layout::validate(&h, size, &expect) {
        seen.problem = Some(e.to_string());
        return seen;
    }
    let no_wait = AttachOptions::new()
        .ready_timeout(Duration::ZERO)
        .writer_timeout(Duration::ZERO);
    let detail = match kind {
        Kind::Record => Ok(Detail::None),
        Kind::SeqLock => RawSegment::attach(mem, expect, &no_wait).and_then(|raw| {
            let sequence = raw.load_u64(0, Ordering::Relaxed)?;
            let word = raw.load_u64(8, Ordering::Relaxed)?;
            Ok(Detail::SeqLock {
                sequence,
                // The owner is the u32 at offset 8: the low half in native order.
                writer_pid: u32::from_ne_bytes(
                    word.to_ne_bytes()[..4].try_into().expect("4 bytes"),
                ),
            })
        }),
        Kind::Channel => Channel::attach_with(mem, &no_wait).and_then(|c| {
            (0..c.rings())
                .map(|r| c.ring_state(r))
                .collect::<Result<Vec<_>, _>>()
                .map(Detail::Channel)
        }),
        Kind::Broadcast => Broadcast::attach_with(mem, &no_wait)
            .and_then(|b| b.state())
            .map(Detail::Broadcast),
        Kind::Event => crate::event::Event::attach_with(mem, &no_wait)
            .and_then(|e| e.state())
            .map(Detail::Event),
        Kind::Service => crate::service::Service::attach_with(mem, &no_wait)
            .and_then(|s| s.state())
            .map(Detail::Service),
    };
    match detail {
        Ok(d) => {
            seen.detail = d;
            seen.verdict = Verdict::Ours;
        }
        Err(e) => seen.problem = Some(e.to_string()),
    }
    seen
}

fn kind_of(code: u32) -> Option<Kind> {
    [
        Kind::Record,
        Kind::SeqLock,
        Kind::Channel,
        Kind::Broadcast,
        Kind::Event,
        Kind::Service,
    ]
    .into_iter()
    .find(|k| *k as u32 == code)
}
