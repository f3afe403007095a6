//! The error type of shm-core: one variant per way an attach or an access can fail.

use std::time::Duration;

use crate::format::schema::{kind_name, Kind, Schema};

/// Which function gives the size to ask a backend for, per kind.
fn sized_by(kind: Kind) -> &'static str {
    match kind {
        Kind::Channel => " (ChannelOptions::segment_len gives the segment size to ask for)",
        Kind::Broadcast => " (BroadcastOptions::segment_len gives the segment size to ask for)",
        Kind::Event => " (EventOptions::segment_len gives the segment size to ask for)",
        Kind::Service => " (ServiceOptions::segment_len gives the segment size to ask for)",
        Kind::Record | Kind::SeqLock => "",
    }
}

/// What `NotReady` says: with no creator recorded, the segment may not be one of ours at
/// all (a file another program made, all zeros where our header goes), and it says so.
fn not_ready(waited: Duration, creator_pid: u32) -> String {
    if creator_pid == 0 {
        format!(
            "no shm header after {waited:?}: no creator recorded, so either not a segment of ours (made by another program: attach_foreign reads those) or one whose creator has not begun writing it"
        )
    } else {
        format!("segment still initialising after {waited:?} (creator pid {creator_pid}, alive)")
    }
}

/// What `BadMagic` says; no header at all is said in words.
fn bad_magic(expected: &[u8; 8], found: &[u8; 8]) -> String {
    if *found == [0; 8] {
        format!(
            "not a segment of ours: no shm header (zeros where the magic \"{}\" goes), and no creator of ours is writing one (made by another program: attach_foreign reads those)",
            expected.escape_ascii()
        )
    } else {
        format!(
            "not an shm segment: expected magic \"{}\", found \"{}\"",
            expected.escape_ascii(),
            found.escape_ascii()
        )
    }
}

/// "the publishing end of the broadcast", "the sending end of ring 0", ...
fn role_name(role: &str, ring: u32) -> String {
    if role == "publishing" {
        "the broadcast's publishing end".to_owned()
    } else if role == "listening" {
        "the event's listening end".to_owned()
    } else {
        format!("the {role} end of ring {ring}")
    }
}

/// What went wrong, with what was expected and what was found.
///
/// Nothing a peer writes into shared memory makes this crate panic: every such failure
/// ends up as one of these variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The memory is smaller than the layout needs.
    #[error(
        "segment too small: the layout needs at least {needed} bytes, the mapping has {found}"
    )]
    TooSmall {
        /// Bytes the layout needs.
        needed: u64,
        /// Bytes the memory has.
        found: u64,
    },
    /// The first eight bytes are not this layout's magic: not one of our segments.
    /// All zeros there (no header at all) is this too once the backend can tell that no
    /// other handle holds the memory ([`SharedMemory::held_elsewhere`](crate::SharedMemory::held_elsewhere)):
    /// no creator of ours is writing one.
    #[error("{}", bad_magic(expected, found))]
    BadMagic {
        /// [`crate::format::layout::MAGIC`].
        expected: [u8; 8],
        /// What the segment holds.
        found: [u8; 8],
    },
    /// A segment written by another version of the layout.
    #[error("unsupported layout version: expected {expected}, found {found}")]
    UnsupportedVersion {
        /// [`crate::format::layout::LAYOUT_VERSION`].
        expected: u32,
        /// What the segment holds.
        found: u32,
    },
    /// The header claims more bytes than are mapped (the segment was truncated, or lies).
    #[error("segment truncated: its header claims {claimed} bytes, the mapping holds {mapped}")]
    Truncated {
        /// `segment_size` from the header.
        claimed: u64,
        /// The length of the mapping.
        mapped: u64,
    },
    /// A header field holds a value the layout does not allow.
    #[error("corrupt header: {field} is {found}, expected {expected}")]
    CorruptHeader {
        /// The field's name, as in [`crate::format::layout::Header`].
        field: &'static str,
        /// Its value.
        found: u64,
        /// What the layout allows.
        expected: &'static str,
    },
    /// The payload area is smaller than the record or structure it must hold.
    #[error("payload too small: {kind} needs {needed} bytes, the segment gives {found}{}", sized_by(*.kind))]
    PayloadTooSmall {
        /// What the payload holds.
        kind: Kind,
        /// Bytes it needs.
        needed: u64,
        /// `payload_len` from the header.
        found: u64,
    },
    /// The segment holds another kind of payload (a channel where a record was expected, …).
    #[error("wrong segment kind: segment holds {}, caller expects {expected}", kind_name(*.found))]
    KindMismatch {
        /// What the caller asked for.
        expected: Kind,
        /// The `kind` word of the header.
        found: u32,
    },
    /// The payload's own layout has another version.
    #[error("unsupported {kind} layout version: expected {expected}, found {found}")]
    KindVersion {
        /// The payload kind.
        kind: Kind,
        /// The version this build understands.
        expected: u32,
        /// The version in the header.
        found: u32,
    },
    /// The segment holds another record type than the caller's.
    #[error("schema mismatch: segment holds {found}, caller expects {expected}")]
    SchemaMismatch {
        /// The record type the segment was created for.
        found: Schema,
        /// The caller's record type.
        expected: Schema,
    },
    /// A record name longer than a header can hold.
    #[error("schema name too long: at most {max} bytes, found {found}")]
    SchemaName {
        /// [`crate::format::schema::SCHEMA_NAME_MAX`].
        max: usize,
        /// The name's length.
        found: usize,
    },
    /// A record type aligned more strictly than the payload is.
    #[error("unsupported alignment: records may be aligned to at most {max} bytes, found {found}")]
    Alignment {
        /// The payload's alignment.
        max: u64,
        /// The type's alignment.
        found: u64,
    },
    /// An option or argument outside what the operation can do (a channel capacity whose
    /// segment would not fit in 64 bits, …).
    #[error("invalid {option}: {found}, expected {expected}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// Its value.
        found: u64,
        /// What is allowed.
        expected: &'static str,
    },
    /// `create` was given memory that already holds a header.
    #[error("memory already initialised: create needs fresh, zeroed memory")]
    AlreadyInitialized,
    /// The creator has not finished initialising the segment, and is still alive (or its
    /// liveness is unknown).
    #[error("{}", not_ready(*.waited, *.creator_pid))]
    NotReady {
        /// How long attach waited.
        waited: Duration,
        /// The creator's pid from the header, 0 if not written yet.
        creator_pid: u32,
    },
    /// The creator died before it finished initialising the segment.
    #[error("segment never became ready: its creator (pid {pid}) died during initialisation")]
    CreatorDied {
        /// The dead creator's pid.
        pid: u32,
    },
    /// A byte range outside the payload.
    #[error("out of bounds: {len} bytes at offset {offset} do not fit in a payload of {payload_len} bytes")]
    OutOfBounds {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// The payload's length.
        payload_len: u64,
    },
    /// The channel has no ring with this index.
    #[error("no ring {ring}: the channel has {rings}")]
    NoSuchRing {
        /// Requested ring.
        ring: u32,
        /// Rings in the channel.
        rings: u32,
    },
    /// An event id at or above the event's limit ([`crate::event::Notifier::notify`]).
    #[error("no event id {id}: the event carries ids below {limit}")]
    NoSuchEvent {
        /// The id asked for.
        id: u64,
        /// The event's `max_ids`.
        limit: u64,
    },
    /// Another live process already holds this end of the ring (or the broadcast's
    /// publishing end: `role` "publishing").
    #[error("{} is held by live pid {pid}", role_name(.role, *.ring))]
    RoleTaken {
        /// `"sending"` or `"receiving"`.
        role: &'static str,
        /// The ring.
        ring: u32,
        /// Its holder.
        pid: u32,
    },
    /// A message larger than the ring can ever hold.
    #[error("message too large: {len} bytes, the channel carries at most {max}")]
    MessageTooLarge {
        /// Its length.
        len: u64,
        /// The largest message the ring holds.
        max: u64,
    },
    /// `try_send`: no room now.
    #[error("channel full")]
    Full,
    /// `try_recv`: no message now.
    #[error("channel empty")]
    Empty,
    /// A bounded wait ran out.
    #[error("timed out after {waited:?}")]
    Timeout {
        /// How long we waited.
        waited: Duration,
    },
    /// The other end was closed cleanly (and, for a receiver, every message was read).
    #[error("the other side closed cleanly")]
    Closed,
    /// The other end's process died without closing.
    #[error("the other side's process (pid {pid}) died without closing")]
    PeerDied {
        /// Its pid.
        pid: u32,
    },
    /// The other side wrote a value into the shared ring state that no honest peer writes.
    #[error("corrupt shared state: {what} is {found}")]
    Corrupt {
        /// What was read.
        what: &'static str,
        /// Its value.
        found: u64,
    },
    /// A broadcast subscriber fell more than the ring behind (lossy mode), or a message was
    /// overwritten while it was copied out: `missed` messages are gone, and the next
    /// receive gets the oldest message still held.
    #[error("lagged: {missed} message(s) were overwritten before they could be read")]
    Lagged {
        /// How many messages were skipped.
        missed: u64,
    },
    /// The broadcast's upstream source is gone for now: an imported stream's exporter
    /// (see `shm-zenoh`) disappeared. Not final: the subscriber stays joined, and when the
    /// source returns the next receive reports what was lost as [`Error::Lagged`] and
    /// messages resume.
    #[error("the broadcast's upstream source is gone (messages resume when it returns)")]
    UpstreamLost,
    /// This end was made in another process, which forked the caller: the parent still
    /// holds it, and an end driven by two processes would corrupt the stream. A forked
    /// child takes ends of its own (`Channel::sender`, `Broadcast::subscribe`, ...).
    #[error("this end belongs to the process that forked this one (pid {parent}); take a new end in the child")]
    Forked {
        /// The pid the end was made in.
        parent: u32,
    },
    /// The reliable publisher evicted this subscriber, so that the others could go on.
    #[error("evicted by the publisher: {reason}")]
    Evicted {
        /// Why: it stayed behind past the timeout, its process died, or it wrote a
        /// position no honest subscriber writes.
        reason: &'static str,
    },
    /// Every subscriber line of the broadcast is taken.
    #[error("all {max} subscriber places of the broadcast are taken")]
    SubscribersFull {
        /// The capacity fixed at create.
        max: u32,
    },
    /// A system call the operation needs failed (an eventfd, a thread).
    #[error("{call} failed: errno {errno}")]
    System {
        /// The call.
        call: &'static str,
        /// Its errno (0 when it gave none).
        errno: i32,
    },
    /// Every notifier line of the event is taken.
    #[error("all {max} notifier places of the event are taken")]
    NotifiersFull {
        /// The capacity fixed at create.
        max: u32,
    },
    /// Every client line of the service is taken.
    #[error("all {max} client places of the service are taken")]
    ClientsFull {
        /// The capacity fixed at create.
        max: u32,
    },
    /// Every server line of the service is taken.
    #[error("all {max} server places of the service are taken")]
    ServersFull {
        /// The capacity fixed at create.
        max: u32,
    },
    /// A server's answer to a request that its client cancelled (dropped the pending
    /// response, or its process died): nothing more reaches the client.
    #[error("the request was cancelled: its client dropped it or died")]
    Cancelled,
    /// The server answered the request with an error code
    /// ([`ActiveRequest::respond_error`](crate::service::ActiveRequest::respond_error)).
    #[error("the server answered with error code {code}")]
    ServerError {
        /// The server's code.
        code: u32,
    },
    /// The operation needs to write to memory that is mapped read-only here.
    #[error("{what} needs write access, and this mapping is read-only")]
    ReadOnly {
        /// What was asked.
        what: &'static str,
    },
    /// An atomic access at an offset that is not a multiple of its size.
    #[error("misaligned: offset {offset} is not a multiple of {align}")]
    Misaligned {
        /// Requested offset.
        offset: u64,
        /// Required alignment.
        align: u64,
    },
    /// A seqlock writer has held the lock past the timeout and is still alive.
    #[error("seqlock writer (pid {pid}) still writing after {waited:?}")]
    WriterStuck {
        /// How long we waited.
        waited: Duration,
        /// The writer's pid from the segment.
        pid: u32,
    },
    /// A seqlock writer died in the middle of a write; the record may be torn until the
    /// next store replaces it.
    #[error("seqlock writer (pid {pid}) died in the middle of a write; no consistent value until the next store")]
    WriterDied {
        /// The dead writer's pid.
        pid: u32,
    },
}

// ---------------------------------------------------------------------------------------
// Errors per operation
//
// Each endpoint operation returns an error with the variants that operation can meet, and
// one `Failed` arm for the rest (a segment truncated under us, corrupt shared state, a
// fork: this end cannot go on, and the umbrella `Error` inside says why). A caller of
// `try_recv` matches `Empty`, `Closed`, ... and never an attach error. Every one converts
// into [`Error`] (for `?` in code that mixes operations) and from it (the endpoints'
// internals speak `Error`; the conversion sorts a value into its arm).

/// Writes one per-operation error enum: its variants are named and shaped as the
/// [`Error`] variants they stand for, so the two conversions are written once, here.
macro_rules! op_error {
    (
        $(#[$m:meta])*
        pub enum $name:ident {
            $( $(#[$vm:meta])* $var:ident $({ $($(#[$fm:meta])* $f:ident: $t:ty),* $(,)? })? ),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vm])* $var $({ $($(#[$fm])* $f: $t),* })?, )*
            /// Anything else ends this end: a segment truncated under us, corrupt shared
            /// state, a fork, a read-only mapping, ... The [`Error`] inside says which.
            Failed(Error),
        }

        impl From<Error> for $name {
            fn from(e: Error) -> Self {
                match e {
                    $( Error::$var $({ $($f),* })? => $name::$var $({ $($f),* })?, )*
                    e => $name::Failed(e),
                }
            }
        }

        impl From<$name> for Error {
            fn from(e: $name) -> Self {
                match e {
                    $( $name::$var $({ $($f),* })? => Error::$var $({ $($f),* })?, )*
                    $name::Failed(e) => e,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&Error::from(*self), f)
            }
        }

        impl std::error::Error for $name {}
    };
}

op_error! {
    /// Why a send that waits (`send`, `reserve`, `publish` and their `_async` forms)
    /// failed.
    pub enum SendError {
        /// The receiving end closed cleanly.
        Closed,
        /// The receiving end's process died without closing.
        PeerDied {
            /// Its pid.
            pid: u32,
        },
        /// The message is larger than the channel or broadcast carries.
        MessageTooLarge {
            /// Its length.
            len: u64,
            /// The most that fits.
            max: u64,
        },
    }
}

op_error! {
    /// Why a send that never waits (`try_send`, `try_reserve`, `try_publish`) failed.
    pub enum TrySendError {
        /// No room now; the same call later may succeed.
        Full,
        /// As [`SendError::Closed`].
        Closed,
        /// As [`SendError::PeerDied`].
        PeerDied {
            /// Its pid.
            pid: u32,
        },
        /// As [`SendError::MessageTooLarge`].
        MessageTooLarge {
            /// Its length.
            len: u64,
            /// The most that fits.
            max: u64,
        },
    }
}

op_error! {
    /// Why a send that waits at most a while (`send_timeout`, `reserve_timeout`,
    /// `publish_timeout`) failed.
    pub enum SendTimeoutError {
        /// No room came before the timeout.
        Timeout {
            /// How long it waited.
            waited: Duration,
        },
        /// As [`SendError::Closed`].
        Closed,
        /// As [`SendError::PeerDied`].
        PeerDied {
            /// Its pid.
            pid: u32,
        },
        /// As [`SendError::MessageTooLarge`].
        MessageTooLarge {
            /// Its length.
            len: u64,
            /// The most that fits.
            max: u64,
        },
    }
}

op_error! {
    /// Why a receive that waits (`recv`, `recv_into`, `recv_record` and their `_async`
    /// forms) failed.
    pub enum RecvError {
        /// The sending end closed cleanly and everything it sent was read.
        Closed,
        /// The sending end's process died without closing (everything it sent was read).
        PeerDied {
            /// Its pid.
            pid: u32,
        },
        /// Lossy broadcast: `missed` messages were overwritten before this subscriber
        /// read them; the next receive gets the oldest one still held.
        Lagged {
            /// How many.
            missed: u64,
        },
        /// Relayed broadcast: the upstream source is gone for now (not final).
        UpstreamLost,
        /// Reliable broadcast: the publisher evicted this subscriber.
        Evicted {
            /// Why.
            reason: &'static str,
        },
        /// The message does not fit the caller's slice (`recv_into_slice`); it stays for
        /// the next call.
        MessageTooLarge {
            /// Its length.
            len: u64,
            /// The slice's length.
            max: u64,
        },
    }
}

op_error! {
    /// Why a receive that never waits (`try_recv`, `try_recv_into`, ...) failed.
    pub enum TryRecvError {
        /// Nothing to receive now; the same call later may succeed.
        Empty,
        /// As [`RecvError::Closed`].
        Closed,
        /// As [`RecvError::PeerDied`].
        PeerDied {
            /// Its pid.
            pid: u32,
        },
        /// As [`RecvError::Lagged`].
        Lagged {
            /// How many.
            missed: u64,
        },
        /// As [`RecvError::UpstreamLost`].
        UpstreamLost,
        /// As [`RecvError::Evicted`].
        Evicted {
            /// Why.
            reason: &'static str,
        },
        /// As [`RecvError::MessageTooLarge`].
        MessageTooLarge {
            /// Its length.
            len: u64,
            /// The slice's length.
            max: u64,
        },
    }
}

op_error! {
    /// Why a receive that waits at most a while (`recv_timeout`, `recv_into_timeout`, ...)
    /// failed.
    pub enum RecvTimeoutError {
        /// Nothing came before the timeout.
        Timeout {
            /// How long it waited.
            waited: Duration,
        },
        /// As [`RecvError::Closed`].
        Closed,
        /// As [`RecvError::PeerDied`].
        PeerDied {
            /// Its pid.
            pid: u32,
        },
        /// As [`RecvError::Lagged`].
        Lagged {
            /// How many.
            missed: u64,
        },
        /// As [`RecvError::UpstreamLost`].
        UpstreamLost,
        /// As [`RecvError::Evicted`].
        Evicted {
            /// Why.
            reason: &'static str,
        },
        /// As [`RecvError::MessageTooLarge`].
        MessageTooLarge {
            /// Its length.
            len: u64,
            /// The slice's length.
            max: u64,
        },
    }
}

op_error! {
    /// Why a notify failed ([`crate::event::Notifier::notify`]; it never waits).
    pub enum NotifyError {
        /// The listener closed its end (nothing was set).
        Closed,
        /// The listener's process died without closing (nothing was set).
        PeerDied {
            /// Its pid.
            pid: u32,
        },
        /// The id is at or above the event's `max_ids`.
        NoSuchEvent {
            /// The id asked for.
            id: u64,
            /// The event's limit.
            limit: u64,
        },
    }
}

op_error! {
    /// Why a wait for events that never waits ([`crate::event::Listener::try_wait`])
    /// failed.
    pub enum TryWaitError {
        /// No id was notified since the last look.
        Empty,
        /// A notifier's process died without closing (reported once per notifier; every
        /// id it notified before was delivered first).
        PeerDied {
            /// Its pid.
            pid: u32,
        },
    }
}

op_error! {
    /// Why a wait for events ([`crate::event::Listener::wait`], `wait_async`) failed.
    pub enum WaitError {
        /// As [`TryWaitError::PeerDied`].
        PeerDied {
            /// Its pid.
            pid: u32,
        },
    }
}

op_error! {
    /// Why a wait for events that waits at most a while
    /// ([`crate::event::Listener::wait_timeout`]) failed.
    pub enum WaitTimeoutError {
        /// No id was notified before the timeout.
        Timeout {
            /// How long it waited.
            waited: Duration,
        },
        /// As [`TryWaitError::PeerDied`].
        PeerDied {
            /// Its pid.
            pid: u32,
        },
    }
}

op_error! {
    /// Why a request that never waits ([`crate::service::Client::try_call`]) was not
    /// sent.
    pub enum TryCallError {
        /// Every request slot is in use now; the same call later may succeed.
        Full,
        /// The request is larger than the service carries.
        MessageTooLarge {
            /// Its length.
            len: u64,
            /// The most that fits.
            max: u64,
        },
    }
}

op_error! {
    /// Why a call, or a wait for a response, failed (`call`, `send_request`,
    /// `receive` and their `_async` forms).
    pub enum CallError {
        /// The server finished the request without (another) response: after the last
        /// response of a stream, or a server that dropped the request unanswered.
        Closed,
        /// The server's process died while it held the request (and the request was not
        /// idempotent, or was already sent back once).
        PeerDied {
            /// Its pid.
            pid: u32,
        },
        /// The server answered with an error code.
        ServerError {
            /// The server's code.
            code: u32,
        },
        /// The request is larger than the service carries.
        MessageTooLarge {
            /// Its length.
            len: u64,
            /// The most that fits.
            max: u64,
        },
    }
}

op_error! {
    /// Why a call, or a wait for a response, that waits at most a while failed
    /// (`call_timeout`, `send_request_timeout`, `receive_timeout`).
    pub enum CallTimeoutError {
        /// The timeout, or the request's deadline, passed first.
        Timeout {
            /// How long it waited.
            waited: Duration,
        },
        /// As [`CallError::Closed`].
        Closed,
        /// As [`CallError::PeerDied`].
        PeerDied {
            /// Its pid.
            pid: u32,
        },
        /// As [`CallError::ServerError`].
        ServerError {
            /// The server's code.
            code: u32,
        },
        /// As [`CallError::MessageTooLarge`].
        MessageTooLarge {
            /// Its length.
            len: u64,
            /// The most that fits.
            max: u64,
        },
    }
}

op_error! {
    /// Why a look for a response that never waits
    /// ([`crate::service::PendingResponse::try_receive`]) failed.
    pub enum TryResponseError {
        /// No response now; the same call later may succeed.
        Empty,
        /// The request's deadline passed.
        Timeout {
            /// How long since the request was sent.
            waited: Duration,
        },
        /// As [`CallError::Closed`].
        Closed,
        /// As [`CallError::PeerDied`].
        PeerDied {
            /// Its pid.
            pid: u32,
        },
        /// As [`CallError::ServerError`].
        ServerError {
            /// The server's code.
            code: u32,
        },
    }
}

op_error! {
    /// Why a server's response was not sent ([`crate::service::ActiveRequest::respond`],
    /// `respond_last`, `respond_error`).
    pub enum RespondError {
        /// The client cancelled the request or died: nothing more reaches it.
        Cancelled,
        /// The request's deadline passed while the response waited for room (the client
        /// stopped reading).
        Timeout {
            /// How long it waited.
            waited: Duration,
        },
        /// The request was already finished (after `respond_last`).
        Closed,
        /// The response is larger than the service carries.
        MessageTooLarge {
            /// Its length.
            len: u64,
            /// The most that fits.
            max: u64,
        },
    }
}
