//! The channel's layout: offsets, sizes, and the table of the words a peer writes.

pub(super) const CHANNEL_HEADER: u64 = 128;
pub(super) const LINE: u64 = 128;
pub(super) const RING_CONTROL: u64 = 3 * LINE;
pub(super) const MIN_CAPACITY: u64 = 64;

use crate::format::words::{Region, Word};

pub(super) const CHANNEL_CONFIG: &str = "attach refuses the segment (`CorruptHeader`; a valid value that is not the creator's fails the config seal); ends already attached keep what they read at attach";

/// Every word of a channel's payload that another process can write: who writes it, the
/// honest values, and what a reader does with anything else (see
/// [`crate::format::words`]). The layout docs print it.
pub const WORDS: &[Word] = &[
    Word { name: "rings", region: Region::Payload, offset: 0, width: 4, writer: "the creator, once, before `ready`", honest: "1 or 2", otherwise: CHANNEL_CONFIG },
    Word { name: "capacity", region: Region::Payload, offset: 8, width: 8, writer: "the creator, once, before `ready`", honest: "a power of two, at least 64, that fits the segment", otherwise: CHANNEL_CONFIG },
    Word { name: "config seal", region: Region::Payload, offset: 16, width: 8, writer: "the creator, once, before `ready`", honest: "FNV-1a of the bytes 0 to 16", otherwise: CHANNEL_CONFIG },
    Word { name: "tail", region: Region::Ring, offset: 0, width: 8, writer: "the sender, per message", honest: "from `head` to `head + capacity`, growing", otherwise: "read by a receiver only when it takes the end (a pair outside the honest range is `Corrupt`) and while it waits: past its position with no frame there, or behind it by more than the last frame it read, at two checks 1 ms apart, `Corrupt` (final for that end; behind by at most that frame is a sender descheduled between its header store and this one: a delay); the sender writes its own value again at every message and at drop; `inspect` says `Corrupt`" },
    Word { name: "sender holder", region: Region::Ring, offset: 8, width: 4, writer: "the sender (claim, drop)", honest: "a live pid, or 0", otherwise: "a dead or impossible pid: a new sender may claim the end; the receiver gets `PeerDied` once the ring is drained; `inspect` says `Corrupt` above the largest pid" },
    Word { name: "head", region: Region::Ring, offset: 128, width: 8, writer: "the receiver, per message", honest: "at most `tail`, growing", otherwise: "outside the honest range: `Corrupt` for the sender (final for that end); the receiver writes its own value again before it sleeps and at drop; a value inside the range can let the sender overwrite unread bytes (as a peer writing the data could); `inspect` says `Corrupt`" },
    Word { name: "receiver holder", region: Region::Ring, offset: 136, width: 4, writer: "the receiver (claim, drop)", honest: "a live pid, or 0", otherwise: "a dead or impossible pid: a new receiver may claim the end; the sender gets `PeerDied`; `inspect` says `Corrupt` above the largest pid" },
    Word { name: "data_seq", region: Region::Ring, offset: 256, width: 4, writer: "the sender (+1 per wake)", honest: "any (wraps)", otherwise: "a futex word, only compared for change" },
    Word { name: "space_seq", region: Region::Ring, offset: 260, width: 4, writer: "the receiver (+1 per wake)", honest: "any (wraps)", otherwise: "a futex word, only compared for change" },
    Word { name: "receiver sleeping", region: Region::Ring, offset: 264, width: 4, writer: "the receiver", honest: "0 or 1", otherwise: "0 while it sleeps: the wake is skipped and it wakes at its slice (20 ms); non-zero: extra wake calls (cost only); `inspect` says `Corrupt` above 1" },
    Word { name: "sender sleeping", region: Region::Ring, offset: 268, width: 4, writer: "the sender", honest: "0 or 1", otherwise: "as the receiver's flag" },
    Word { name: "closed", region: Region::Ring, offset: 272, width: 4, writer: "each end at drop (its bit), and at claim (clears it)", honest: "bits 1 (sender closed) and 2 (receiver closed)", otherwise: "a bit counts as a close only with that end's holder word cleared (an honest drop clears it after the bit); other bits are ignored by the ends, and `inspect` says `Corrupt`" },
    Word { name: "message header", region: Region::RingData, offset: 0, width: 8, writer: "the sender", honest: "`1 << 63 | len` with the message inside the ring, a PAD (`1 << 63 | 0xFFFF_FFFF`, never at index 0), or 0 after the last message", otherwise: "`Corrupt` (final for that end), also for a frame zeroed where the sender wrote one (seen at two checks while the receiver waits: the ring cannot be read past it, and every receiver taken on it says so); never used to address memory outside the ring. A well-formed forged length delivers bytes the sender did not frame: a peer with write access writes data too" },
];
/// How many times `claim` retries a compare-and-swap that lost to a concurrent change
/// before it gives up with `RoleTaken`.
pub(super) const CLAIM_TRIES: u32 = 64;
