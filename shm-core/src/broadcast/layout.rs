//! The broadcast's layout: offsets, line states, the wake helpers, and the table of the
//! words a peer writes.

use crate::format::words::{Region, Word};
use crate::protocol::broadcast::{self as protocol, Control};
use crate::protocol::sync::{AtomicU32, AtomicU64};

pub(super) const LINE: u64 = 128;
/// The upstream word in the config line: odd while a relayed stream's source is gone.
pub(super) const UPSTREAM: u64 = 44;
/// The base word in the config line: the first message number ever published (a relay
/// starts at its source's numbering).
pub(super) const BASE: u64 = 48;
// Control lines, grouped by who writes them and how often (see the layout table).
/// Written by the publisher on every message; read by subscribers only when they lag.
pub(super) const TAIL: u64 = LINE;
/// Written rarely (claim, close, join); read every round by both sides.
pub(super) const HOLDER: u64 = 2 * LINE;
pub(super) const CLOSED: u64 = 2 * LINE + 4;
pub(super) const MEMBERS: u64 = 2 * LINE + 8;
/// Written by subscribers that go to sleep, and by the publisher when it wakes them.
pub(super) const SLEEPERS: u64 = 3 * LINE;
pub(super) const DATA_SEQ: u64 = 3 * LINE + 4;
/// Written by the reliable publisher when it sleeps, and by subscribers that wake it.
pub(super) const PUB_SLEEPING: u64 = 4 * LINE;
pub(super) const SPACE_SEQ: u64 = 4 * LINE + 4;
pub(super) const MEMBERS_AT: u64 = 5 * LINE;
pub(super) const SLOT_HEADER: u64 = 16;

/// Wakes every sleeping subscriber: bump `data_seq`, then the futex call.
pub(super) fn wake_subscribers(ctl: Control<'_>) {
    protocol::bump_data(ctl);
    crate::os::futex::wake(ctl.data_seq);
}

/// Wakes the sleeping reliable publisher: bump `space_seq`, then the futex call.
pub(super) fn wake_publisher(ctl: Control<'_>) {
    protocol::bump_space(ctl);
    crate::os::futex::wake(ctl.space_seq);
}

pub(super) const CREATOR_WORD: &str = "the creator, once, before `ready`";
pub(super) const CONFIG_OTHERWISE: &str = "attach refuses the segment (`CorruptHeader`; a valid value that is not the creator's fails the config seal); ends already attached keep what they read at attach";

/// Every word of a broadcast's payload that another process can write: who writes it,
/// the honest values, and what a reader does with anything else (see
/// [`crate::format::words`]). The layout docs print it.
pub const WORDS: &[Word] = &[
    Word { name: "mode", region: Region::Payload, offset: 0, width: 4, writer: CREATOR_WORD, honest: "1 reliable, 2 lossy", otherwise: CONFIG_OTHERWISE },
    Word { name: "max_subscribers", region: Region::Payload, offset: 4, width: 4, writer: CREATOR_WORD, honest: "1 to 1024", otherwise: CONFIG_OTHERWISE },
    Word { name: "slots", region: Region::Payload, offset: 8, width: 8, writer: CREATOR_WORD, honest: "a power of two, 2 to 2^24", otherwise: CONFIG_OTHERWISE },
    Word { name: "slot_size", region: Region::Payload, offset: 16, width: 8, writer: CREATOR_WORD, honest: "`16 + max_message` rounded up to 64", otherwise: CONFIG_OTHERWISE },
    Word { name: "max_message", region: Region::Payload, offset: 24, width: 8, writer: CREATOR_WORD, honest: "what the segment's size allows", otherwise: CONFIG_OTHERWISE },
    Word { name: "evict_timeout_ns", region: Region::Payload, offset: 32, width: 8, writer: CREATOR_WORD, honest: "at most one hour", otherwise: CONFIG_OTHERWISE },
    Word { name: "relayed", region: Region::Payload, offset: 40, width: 4, writer: CREATOR_WORD, honest: "0 or 1", otherwise: CONFIG_OTHERWISE },
    Word { name: "upstream", region: Region::Payload, offset: 44, width: 4, writer: "the (relaying) publisher", honest: "any; odd while the source is gone", otherwise: "every value is a state: a subscriber that read everything reports `UpstreamLost` once per change to odd, and goes on receiving" },
    Word { name: "base", region: Region::Payload, offset: 48, width: 8, writer: "the publisher, in `start_at`, before anything is published", honest: "at most `tail`", otherwise: "above the tail read before it: not taken; read by a subscriber only before its first message and by a publisher when it takes the role (clamped to the tail), so a later change is never seen. A forged value at most the tail can move a subscriber that has read nothing yet up to it" },
    Word { name: "config seal", region: Region::Payload, offset: 56, width: 8, writer: CREATOR_WORD, honest: "FNV-1a of the config words at offsets 0 to 44", otherwise: CONFIG_OTHERWISE },
    Word { name: "tail", region: Region::Payload, offset: 128, width: 8, writer: "the publisher, per message", honest: "up to 2^62, growing (by `k` for a gap notice)", otherwise: "above 2^62: `publisher`/`subscribe` refuse with `Corrupt`, a lagging subscriber gets `Corrupt` once (not sticky) and looks again; a subscriber resyncs only to a tail its slots agree with (slot `tail - 1` complete, slot `tail` not), so a forged tail never moves it for good" },
    Word { name: "holder", region: Region::Payload, offset: 256, width: 4, writer: "the publisher (claim, drop)", honest: "a live pid, or 0", otherwise: "a dead or impossible pid: a new publisher may claim the role; subscribers that read everything get `PeerDied`; `inspect` says `Corrupt` above the largest pid" },
    Word { name: "closed", region: Region::Payload, offset: 260, width: 4, writer: "the publisher (1 at drop, 0 at claim)", honest: "0 or 1", otherwise: "counts as a close only with the holder word cleared (an honest drop clears it after the close): with a live holder it is ignored; `inspect` says `Corrupt` for anything but 0 or 1" },
    Word { name: "members", region: Region::Payload, offset: 264, width: 4, writer: "subscribers (+1 per join)", honest: "any (wraps)", otherwise: "a change makes the reliable publisher rescan the lines before its next message: a peer bumping it slows the publisher (one scan per message), never stops it" },
    Word { name: "sleepers", region: Region::Payload, offset: 384, width: 4, writer: "subscribers about to sleep", honest: "at most the subscribers joined", otherwise: "0 while one sleeps: the publisher skips the wake and the sleeper wakes at its slice (20 ms); large: a wake call per message (cost only); `inspect` says `Corrupt` above `max_subscribers`" },
    Word { name: "data_seq", region: Region::Payload, offset: 388, width: 4, writer: "the publisher (+1 per wake)", honest: "any (wraps)", otherwise: "a futex word, only compared for change: a change wakes sleepers early, who look and sleep again" },
    Word { name: "publisher_sleeping", region: Region::Payload, offset: 512, width: 4, writer: "the reliable publisher", honest: "0 or 1", otherwise: "non-zero: subscribers make wake calls (cost only); 0 while it sleeps: it wakes at its slice; `inspect` says `Corrupt` above 1" },
    Word { name: "space_seq", region: Region::Payload, offset: 516, width: 4, writer: "subscribers (+1 per wake)", honest: "any (wraps)", otherwise: "a futex word, only compared for change" },
    Word { name: "line pid", region: Region::Line, offset: 0, width: 4, writer: "the subscriber that claims the line (0 when it leaves)", honest: "a live pid, or 0", otherwise: "a dead or impossible pid is a free line and is not counted (`subscriber_count`); a reliable subscriber that finds another pid on its line is `Evicted`, a lossy one goes on receiving" },
    Word { name: "line state", region: Region::Line, offset: 4, width: 4, writer: "the subscriber (active, left), the reliable publisher (evicted)", honest: "0 to 4", otherwise: "not counted; a reliable subscriber reads anything but active as `Evicted`, a lossy one ignores it; `inspect` says `Corrupt`" },
    Word { name: "line position", region: Region::Line, offset: 8, width: 8, writer: "the reliable subscriber", honest: "at most `tail`", otherwise: "above the publisher's next message: evicted as corrupt; below: holds the publisher back until the eviction timeout, then evicted as behind" },
    Word { name: "slot stamp", region: Region::Slot, offset: 0, width: 8, writer: "the publisher", honest: "`2n + 1` while message `n` is written, `2n + 2` once complete", otherwise: "message `p` is taken only when both stamp loads are `2p + 2`; a larger stamp is a lag (resync from a verified tail), a smaller one an empty slot (wait)" },
    Word { name: "slot len", region: Region::Slot, offset: 8, width: 8, writer: "the publisher", honest: "at most `max_message`, or a gap notice (bit 63, kind 1, `k` from 1 to 2^56 - 1)", otherwise: "`Corrupt` for that message, which is passed over (not sticky); a notice is taken only once the tail covers it (`p + k <= tail`), so a forged one is waited out like an empty slot" },
];

pub(super) const ACTIVE: u32 = 0;
pub(super) const LEFT: u32 = 1;
pub(super) const EVICTED_BEHIND: u32 = 2;
pub(super) const EVICTED_DEAD: u32 = 3;
pub(super) const EVICTED_CORRUPT: u32 = 4;

pub(super) fn eviction_reason(state: u32) -> &'static str {
    match state {
        EVICTED_BEHIND => "it stayed behind longer than the eviction timeout",
        EVICTED_DEAD => "its process died",
        EVICTED_CORRUPT => "it wrote a position no honest subscriber writes",
        _ => "its line was taken over or scribbled on",
    }
}

/// One subscriber line.
#[derive(Clone, Copy)]
pub(super) struct Member<'a> {
    pub(super) pid: &'a AtomicU32,
    pub(super) state: &'a AtomicU32,
    pub(super) position: &'a AtomicU64,
}
