//! The service's layout: offsets, sizes, the slot owner word's encoding, and the table of
//! the words a peer writes.

use crate::format::words::{Region, Word};

/// The config words: six sizes (24 bytes), the service's nonce (8 bytes at 24), then the
/// response schema (64 bytes at 32).
pub(super) const CONFIG_WORDS: usize = 96;
/// The seal over the config words, after them.
pub(super) const SEAL: usize = 96;
/// Config words and seal.
pub(super) const CONFIG: usize = 104;
/// Where the nonce lies: a random number the creator chose, which names the service to
/// the process-local registry of the slots each process holds.
pub(super) const NONCE: usize = 24;
/// Where the response schema lies in the config (zero bytes: responses of any bytes).
pub(super) const RESPONSE_SCHEMA: usize = 32;
/// The shared control line: requests answered (servers add 1 each), for `hz`.
pub(super) const SERVED: usize = 128;
pub(super) const REQ_SEQ: usize = 136;
pub(super) const SERVER_SLEEPERS: usize = 140;
/// Where the client lines start (4 bytes a line: the holder's pid).
pub(super) const CLIENT_LINES: usize = 192;

/// Slot head offsets (from the slot's start).
pub(super) const S_OWNER: usize = 0;
pub(super) const S_ID: usize = 8;
pub(super) const S_DEADLINE: usize = 16;
pub(super) const S_LEN: usize = 24;
pub(super) const S_FLAGS: usize = 28;
pub(super) const S_READ: usize = 32;
pub(super) const S_CLIENT_SLEEPS: usize = 36;
pub(super) const S_QUEUED_AT: usize = 40;
/// The one server process a fan-out request is for (0: any server).
pub(super) const S_TARGET: usize = 48;
/// The server's line of the head (the client's words are in the first line, so that a
/// client waiting on `written` does not pull the line the server moves its slot in).
pub(super) const S_WRITTEN: usize = 64;
pub(super) const S_CLIENT_SEQ: usize = 68;
pub(super) const S_SERVER_SLEEPS: usize = 72;
/// The slot head's size (two cache lines); the request bytes follow it.
pub(super) const SLOT_HEAD: usize = 128;
/// A response entry's head: the request id (8), the length (4), the kind (4).
pub(super) const ENTRY_HEAD: usize = 16;

/// `flags` bit 0: the request may be handed to another server if its server dies before
/// answering.
pub(super) const IDEMPOTENT: u32 = 1;

/// Entry kinds.
pub(super) const KIND_DATA: u32 = 0;
pub(super) const KIND_LAST: u32 = 1;
pub(super) const KIND_ERROR: u32 = 2;
/// A relayed death: the server that held the request elsewhere died (a bridge's far
/// server); its pid in the length word.
pub(super) const KIND_PEER_DIED: u32 = 3;

/// The limits every option is checked against.
pub const MAX_MESSAGE: u32 = 64 << 20;
/// The most request slots (requests in flight, queued or taken) a service has.
pub const MAX_SLOTS: u32 = 4096;
/// The most responses a request's ring holds before the server waits for the client.
pub const MAX_RESPONSE_DEPTH: u32 = 256;
/// The most client (or server) processes a service has lines for.
pub const MAX_ENDS: u32 = 1024;
/// The largest payload a service may need (1 TiB): options past it are refused.
pub(super) const MAX_PAYLOAD: u64 = 1 << 40;
/// How many times a claim retries a compare-and-swap that lost to a concurrent change.
pub(super) const CLAIM_TRIES: u32 = 64;

/// The phases of a slot (bits 48 to 55 of its owner word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Nobody holds the slot.
    Free = 0,
    /// A client writes its request.
    Filling = 1,
    /// Written, waiting for a server.
    Queued = 2,
    /// A server holds it and answers.
    Taken = 3,
    /// The server is done; the client reads what is left.
    Done = 4,
    /// The client went away while a server held it; the server frees it.
    Cancelled = 5,
    /// Its deadline passed before a server took it; the client frees it.
    Expired = 6,
}

/// A slot's owner word: phase, client pid, server pid (and whether a server's death
/// already sent it back to the queue once). One compare-and-swap moves a slot between
/// its holders, so no slot is ever held by two ends or by none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Owner {
    pub(super) phase: u8,
    pub(super) client: u32,
    pub(super) server: u32,
    pub(super) retried: bool,
}

const PID_BITS: u32 = 24;
const PID_MASK: u64 = (1 << PID_BITS) - 1;
const RETRIED: u64 = 1 << 56;

impl Owner {
    pub(super) const FREE: u64 = Owner::word(Phase::Free, 0, 0, false);

    pub(super) fn decode(w: u64) -> Owner {
        Owner {
            phase: ((w >> 48) & 0xff) as u8,
            client: ((w >> PID_BITS) & PID_MASK) as u32,
            server: (w & PID_MASK) as u32,
            retried: w & RETRIED != 0,
        }
    }

    pub(super) const fn word(phase: Phase, client: u32, server: u32, retried: bool) -> u64 {
        ((phase as u64) << 48)
            | ((client as u64 & PID_MASK) << PID_BITS)
            | (server as u64 & PID_MASK)
            | if retried { RETRIED } else { 0 }
    }

    pub(super) fn is(&self, phase: Phase) -> bool {
        self.phase == phase as u8
    }

    /// Whether owner word `w` is in `phase`, without decoding the rest (a scan's first
    /// filter: most slots it passes are not queued).
    #[inline(always)]
    pub(super) fn word_is(w: u64, phase: Phase) -> bool {
        (w >> 48) & 0xff == phase as u64
    }

    /// Whether an honest end can have written this word (a known phase, no stray bits).
    pub(super) fn honest(w: u64) -> bool {
        let o = Owner::decode(w);
        w & !(RETRIED | (0xff << 48) | (PID_MASK << PID_BITS) | PID_MASK) == 0
            && o.phase <= Phase::Expired as u8
    }
}

/// Bytes rounded up to 8.
pub(super) fn round8(n: u32) -> u64 {
    u64::from(n).next_multiple_of(8)
}

/// Where the server lines start.
pub(super) fn server_lines(max_clients: u32) -> u64 {
    (CLIENT_LINES as u64 + 4 * u64::from(max_clients)).next_multiple_of(64)
}

/// Where the slots start.
pub(super) fn slots_at(max_clients: u32, max_servers: u32) -> u64 {
    (server_lines(max_clients) + 4 * u64::from(max_servers)).next_multiple_of(64)
}

/// A response entry's stride.
pub(super) fn entry_stride(response_max: u32) -> u64 {
    ENTRY_HEAD as u64 + round8(response_max)
}

/// Where a slot's response entries start (after the head and the request bytes).
pub(super) fn entries_at(request_max: u32) -> u64 {
    SLOT_HEAD as u64 + round8(request_max)
}

/// One slot's stride (a multiple of 64). The options' ranges keep every term far below
/// `u64::MAX` (64 MiB · 256 entries is 2^34).
pub(super) fn slot_stride(request_max: u32, response_max: u32, depth: u32) -> u64 {
    (entries_at(request_max) + u64::from(depth) * entry_stride(response_max)).next_multiple_of(64)
}

const SERVICE_CONFIG: &str = "attach refuses the segment (`CorruptHeader`; a valid value that is not the creator's fails the config seal); ends already attached keep what they read at attach";

const PID_LINE: &str = "a dead or impossible pid: the line is free for a new end (claimed by a compare-and-swap from the dead pid); counts of ends ask `is_live`; `inspect` says `Corrupt` above the largest pid";

/// Every word of a service's payload that another process can write: who writes it, the
/// honest values, and what a reader does with anything else (see
/// [`crate::format::words`]). The layout docs print it.
pub const WORDS: &[Word] = &[
    Word { name: "request_max", region: Region::Payload, offset: 0, width: 4, writer: "the creator, once, before `ready`", honest: "1 to 64 MiB", otherwise: SERVICE_CONFIG },
    Word { name: "response_max", region: Region::Payload, offset: 4, width: 4, writer: "the creator, once, before `ready`", honest: "1 to 64 MiB", otherwise: SERVICE_CONFIG },
    Word { name: "slots", region: Region::Payload, offset: 8, width: 4, writer: "the creator, once, before `ready`", honest: "1 to 4096", otherwise: SERVICE_CONFIG },
    Word { name: "response_depth", region: Region::Payload, offset: 12, width: 4, writer: "the creator, once, before `ready`", honest: "1 to 256", otherwise: SERVICE_CONFIG },
    Word { name: "max_clients", region: Region::Payload, offset: 16, width: 4, writer: "the creator, once, before `ready`", honest: "1 to 1024", otherwise: SERVICE_CONFIG },
    Word { name: "max_servers", region: Region::Payload, offset: 20, width: 4, writer: "the creator, once, before `ready`", honest: "1 to 1024", otherwise: SERVICE_CONFIG },
    Word { name: "nonce", region: Region::Payload, offset: 24, width: 8, writer: "the creator, once, before `ready`", honest: "any", otherwise: SERVICE_CONFIG },
    Word { name: "response schema", region: Region::Payload, offset: 32, width: 64, writer: "the creator, once, before `ready`", honest: "zero, or a record schema (name, version, size, align)", otherwise: SERVICE_CONFIG },
    Word { name: "config seal", region: Region::Payload, offset: 96, width: 8, writer: "the creator, once, before `ready`", honest: "FNV-1a of the bytes 0 to 96", otherwise: SERVICE_CONFIG },
    Word { name: "served", region: Region::Payload, offset: 128, width: 8, writer: "servers (+1 per request finished with a response or unanswered)", honest: "any (wraps)", otherwise: "only shown (`hz`'s rate, `inspect`): a forged value is a jump in the count, nothing else reads it" },
    Word { name: "req_seq", region: Region::Payload, offset: 136, width: 4, writer: "clients (+1 when a server sleeps)", honest: "any (wraps)", otherwise: "a futex word, only compared for change: a change wakes the servers early, which look and sleep again" },
    Word { name: "server_sleepers", region: Region::Payload, offset: 140, width: 4, writer: "servers' waits (+1 before a sleep, -1 after)", honest: "a small count", otherwise: "0 while one sleeps: no wake call, the server wakes at its slice (20 ms); non-zero: a wake call per request (cost only); `inspect` says `Corrupt` above 1024" },
    Word { name: "end line", region: Region::Line, offset: 0, width: 4, writer: "a client or a server (claim, drop): the client lines, then the server lines", honest: "a live pid, or 0", otherwise: PID_LINE },
    Word { name: "owner", region: Region::Slot, offset: 0, width: 8, writer: "the client (claim, queue, free, cancel) and the server (take, done) by compare-and-swap", honest: "phase 0 to 6 in bits 48 to 55, the client's pid in bits 24 to 47, the server's in bits 0 to 23, bit 56 (sent back once)", otherwise: "an end acts only on the exact word it expects (its own pid in its field, the phase it left): any other value means the slot is no longer its request: the client's wait ends with `Corrupt`, the server's respond with `Cancelled`; a slot whose client and server are both dead (or 0, or impossible) is freed by the next sweep; stray bits or an unknown phase count as not ours; `inspect` says `Corrupt`" },
    Word { name: "id", region: Region::Slot, offset: 8, width: 8, writer: "the client, while it fills the slot", honest: "the client's pid in bits 40 to 63, a count of its process's requests below", otherwise: "the client compares it with the id it wrote on every look: a change ends its wait with `Corrupt`, no response is delivered; the server copies it into each response entry; the process-local registry of held slots finds a slot by it" },
    Word { name: "deadline", region: Region::Slot, offset: 16, width: 8, writer: "the client, while it fills the slot", honest: "0 (none) or CLOCK_MONOTONIC nanoseconds", otherwise: "a past deadline: no server takes the request (it is marked expired, the client gets `Timeout`); a far one: the server's `remaining` is long; never waited on past the client's own deadline" },
    Word { name: "request length", region: Region::Slot, offset: 24, width: 4, writer: "the client, while it fills the slot", honest: "0 to request_max", otherwise: "above request_max: the server does not hand the request out; it marks the slot done with an error response (`ServerError` code 0xffff_ffff)" },
    Word { name: "flags", region: Region::Slot, offset: 28, width: 4, writer: "the client, while it fills the slot", honest: "bit 0 (idempotent)", otherwise: "other bits ignored; a forged idempotent bit sends a request back to the queue at most once (the owner word's bit 56 says it was)" },
    Word { name: "read", region: Region::Slot, offset: 32, width: 4, writer: "the client (+1 per response taken)", honest: "written - response_depth to written", otherwise: "outside it: the server's respond ends with `Cancelled` (a client that writes it so is not one it can answer)" },
    Word { name: "client_sleeps", region: Region::Slot, offset: 36, width: 4, writer: "the client's waits (+1 before a sleep, -1 after)", honest: "0 or a small count", otherwise: "0 while it sleeps: the client wakes at its slice (20 ms); non-zero: a wake call per response (cost only)" },
    Word { name: "queued_at", region: Region::Slot, offset: 40, width: 8, writer: "the client, while it fills the slot", honest: "CLOCK_MONOTONIC nanoseconds, in the past", otherwise: "orders the queue (servers take the oldest first: a forged time moves a request ahead or back, a delay only), decides whether a server asks the client's liveness before taking it, and is shown (`inspect`'s oldest request age; a time in the future shows as 0)" },
    Word { name: "target", region: Region::Slot, offset: 48, width: 4, writer: "the client, while it fills the slot", honest: "0 (any server), or the pid of the server a fan-out copy is for", otherwise: "a server takes the request only if it is 0 or its own pid: a forged value hands the request to another server or to none (then the client's wait ends at its deadline, or with PeerDied once that pid is dead); never used to address memory" },
    Word { name: "written", region: Region::Slot, offset: 64, width: 4, writer: "the server (+1 per response entry)", honest: "read to read + response_depth", otherwise: "outside it: the client's wait ends with `Corrupt` (nothing is read from an entry the count does not vouch for); a client-side count is kept, so the word cannot move the client back" },
    Word { name: "client_seq", region: Region::Slot, offset: 68, width: 4, writer: "the server (+1 per response and at done), the client at claim", honest: "any (wraps)", otherwise: "a futex word, only compared for change: the client wakes early, looks and sleeps again" },
    Word { name: "server_sleeps", region: Region::Slot, offset: 72, width: 4, writer: "the server's respond (+1 before it sleeps for room, -1 after)", honest: "0 or 1", otherwise: "0 while it sleeps: the server wakes at its slice; non-zero: a wake call per response taken (cost only)" },
    Word { name: "entry id", region: Region::Entry, offset: 0, width: 8, writer: "the server, per response entry", honest: "the request's id", otherwise: "another id: the client's wait ends with `Corrupt`; the response is not delivered" },
    Word { name: "entry length", region: Region::Entry, offset: 8, width: 4, writer: "the server, per response entry", honest: "0 to response_max", otherwise: "above response_max: the client's wait ends with `Corrupt`; nothing is copied" },
    Word { name: "entry kind", region: Region::Entry, offset: 12, width: 4, writer: "the server, per response entry", honest: "0 (data), 1 (last), 2 (error: the code in the length), 3 (a relayed server death: its pid in the length)", otherwise: "another value: the client's wait ends with `Corrupt`" },
];
