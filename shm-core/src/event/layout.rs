//! The event's layout: offsets, sizes, and the table of the words a peer writes.

use crate::format::words::{Region, Word};

/// The config words: `max_ids` (4), `max_notifiers` (4), the seal (8).
pub(super) const CONFIG: usize = 16;
/// The listener's line.
pub(super) const LISTENER: usize = 64;
pub(super) const LISTENER_HOLDER: usize = LISTENER;
pub(super) const SLEEPERS: usize = LISTENER + 4;
pub(super) const SEQ: usize = LISTENER + 8;
pub(super) const CLOSED: usize = LISTENER + 12;
/// The bitmap of notified ids, one bit an id, in 8-byte words.
pub(super) const BITMAP: usize = 128;
/// Bit 1 of `closed`: the listener closed its end.
pub(super) const LISTENER_CLOSED: u32 = 1;
/// The most ids an event carries (64 bitmap words).
pub const MAX_IDS: u32 = 4096;
/// The most notifier processes an event has lines for.
pub const MAX_NOTIFIERS: u32 = 1024;
/// How many times a claim retries a compare-and-swap that lost to a concurrent change.
pub(super) const CLAIM_TRIES: u32 = 64;

/// 8-byte bitmap words for `max_ids` ids.
pub(super) fn bitmap_words(max_ids: u32) -> usize {
    (max_ids as usize).div_ceil(64)
}

/// Where the notifier lines start: after the bitmap, on a 64-byte boundary.
pub(super) fn lines_at(max_ids: u32) -> usize {
    (BITMAP + 8 * bitmap_words(max_ids)).next_multiple_of(64)
}

/// Payload bytes: the lines are 4 bytes each (a pid).
pub(super) fn payload_len(max_ids: u32, max_notifiers: u32) -> usize {
    lines_at(max_ids) + 4 * max_notifiers as usize
}

const EVENT_CONFIG: &str = "attach refuses the segment (`CorruptHeader`; a valid value that is not the creator's fails the config seal); ends already attached keep what they read at attach";

/// Every word of an event's payload that another process can write: who writes it, the
/// honest values, and what a reader does with anything else (see
/// [`crate::format::words`]). The layout docs print it.
pub const WORDS: &[Word] = &[
    Word { name: "max_ids", region: Region::Payload, offset: 0, width: 4, writer: "the creator, once, before `ready`", honest: "1 to 4096", otherwise: EVENT_CONFIG },
    Word { name: "max_notifiers", region: Region::Payload, offset: 4, width: 4, writer: "the creator, once, before `ready`", honest: "1 to 1024", otherwise: EVENT_CONFIG },
    Word { name: "config seal", region: Region::Payload, offset: 8, width: 8, writer: "the creator, once, before `ready`", honest: "FNV-1a of the bytes 0 to 8", otherwise: EVENT_CONFIG },
    Word { name: "listener holder", region: Region::Payload, offset: 64, width: 4, writer: "the listener (claim, drop)", honest: "a live pid, or 0", otherwise: "a dead or impossible pid: a new listener may claim the end; a notifier gets `PeerDied` (checked at most every 1 ms; the id stays set); `inspect` says `Corrupt` above the largest pid" },
    Word { name: "sleepers", region: Region::Payload, offset: 68, width: 4, writer: "the listener's waits (+1 before a sleep, -1 after: its own wait and each wait set watching it)", honest: "a small count", otherwise: "0 while one sleeps: the notifier skips the wake and the sleeper wakes at its slice (20 ms); non-zero: a wake call per notify (cost only); `inspect` says `Corrupt` above 1024" },
    Word { name: "seq", region: Region::Payload, offset: 72, width: 4, writer: "notifiers (+1 per wake), the listener at claim", honest: "any (wraps)", otherwise: "a futex word, only compared for change: a change wakes the listener early, which looks and sleeps again" },
    Word { name: "closed", region: Region::Payload, offset: 76, width: 4, writer: "the listener at drop (bit 1), and at claim (clears it)", honest: "0 or 1", otherwise: "bit 1 counts as a close only with the listener holder cleared (an honest drop clears it after the bit): then a notify is `Closed`; other bits are ignored, and `inspect` says `Corrupt`" },
    Word { name: "bitmap", region: Region::Bitmap, offset: 0, width: 8, writer: "notifiers (`fetch_or` of an id's bit), the listener (takes the words with a swap to 0)", honest: "bits below `max_ids`", otherwise: "any set bit below `max_ids` is delivered as a notified id (a peer that can write the word can notify); bits at or above it are dropped; never used to address memory" },
    Word { name: "notifier line", region: Region::Line, offset: 0, width: 4, writer: "a notifier (claim, drop); the listener clears a dead one", honest: "a live pid, or 0", otherwise: "a dead or impossible pid: the listener reports `PeerDied` once (after delivering every id already set) and clears the line; a new notifier may claim it; `inspect` says `Corrupt` above the largest pid" },
];
