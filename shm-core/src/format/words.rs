//! The word tables: every word of every layout that another process can write, with who
//! writes it honestly, the values an honest writer can produce, and what a reader does
//! with any other value.
//!
//! A process that maps a segment writable can write any byte of it, so every word below
//! is peer-writable: the tables are the one place where the library decides how far it
//! trusts each of them. Each layout has its table next to its code
//! ([`layout::HEADER_WORDS`](crate::format::layout::HEADER_WORDS),
//! `seqlock::WORDS`, `channel::WORDS`, `broadcast::WORDS`, `event::WORDS`,
//! `service::WORDS`); the layout docs print it
//! (each module's `words.md`, checked against the table by a test), and the test suite
//! uses it twice:
//!
//! * a **coverage test** runs every operation of a layout honestly and checks that every
//!   control byte that changed lies in a word of the table (a word added to a layout
//!   without a row fails it);
//! * the **hostile-word test** (in [`conformance`](crate::conformance), on every
//!   backend) has a peer process write adversarial values into each row by itself, in a
//!   burst, then stop, while honest ends run, and checks that every call stays bounded,
//!   nothing torn is delivered, nothing panics, and the honest ends recover once the peer
//!   stops.
//!
//! The rules every row follows: a reader's own state never moves on one peer word alone
//! (a position, a delivered mark or a base taken from shared memory is bounded by what
//! the reader can check); a count of peers asks [`proc::is_live`](crate::os::proc::is_live);
//! a value outside the honest range is clamped, resynced, reported (`Corrupt`, `Lagged`,
//! `Evicted`) or refused at attach, as the row says, never used to address memory.

/// Where a word lies: the offset in its [`Word`] row counts from the start of this region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The segment's 128-byte header (offset from the segment's start).
    Header,
    /// The payload's fixed control words (offset from the payload's start).
    Payload,
    /// Each ring of a channel (offset from the ring's start).
    Ring,
    /// Each subscriber line of a broadcast (offset from the line's start).
    Line,
    /// Each slot of a broadcast (offset from the slot's start).
    Slot,
    /// The message headers inside a channel ring's data (any 8-aligned offset of it).
    RingData,
    /// Each 8-byte word of an event's bitmap of notified ids.
    Bitmap,
    /// Each response entry of a service's slot (offset from the entry's start).
    Entry,
}

impl Region {
    /// How the docs name it.
    pub fn name(self) -> &'static str {
        match self {
            Region::Header => "header",
            Region::Payload => "payload",
            Region::Ring => "ring",
            Region::Line => "line",
            Region::Slot => "slot",
            Region::RingData => "ring data",
            Region::Bitmap => "bitmap word",
            Region::Entry => "response entry",
        }
    }
}

/// One peer-writable word of a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word {
    /// Its name in the layout docs.
    pub name: &'static str,
    /// Where it lies.
    pub region: Region,
    /// Its offset in the region.
    pub offset: u64,
    /// 4 or 8 bytes (the header's name field is longer).
    pub width: u64,
    /// Who writes it honestly.
    pub writer: &'static str,
    /// The values an honest writer produces.
    pub honest: &'static str,
    /// What a reader does with any other value.
    pub otherwise: &'static str,
}

/// The seal over a layout's config words (FNV-1a, 64 bits): the creator stores it after
/// them and every attach checks it, so that one forged config word, even a valid value
/// (fewer subscriber lines, a smaller ring), cannot put an attaching end's view of the
/// layout off. Not a defence against a peer that rewrites the words and the seal: that
/// is a segment of its own making, which attach validates like any other.
pub fn seal(words: &[u8]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The table as the docs print it (a Markdown table, one row a word).
pub fn markdown(words: &[Word]) -> String {
    let mut out = String::from(
        "| word | where | size | written by | honest values | any other value |\n\
         |---|---|---:|---|---|---|\n",
    );
    for w in words {
        out.push_str(&format!(
            "| `{}` | {} +{} | {} | {} | {} | {} |\n",
            w.name,
            w.region.name(),
            w.offset,
            w.width,
            w.writer,
            w.honest,
            w.otherwise
        ));
    }
    out
}

/// Whether `byte` (an offset in `region`) lies in a word of `words`.
pub fn covers(words: &[Word], region: Region, byte: u64) -> bool {
    words
        .iter()
        .any(|w| w.region == region && (w.offset..w.offset + w.width).contains(&byte))
}

/// Checks that `doc` (a layout's `words.md`) is exactly [`markdown`] of `words`; with the
/// environment variable `SHM_BLESS_WORDS=1`, rewrites the file at `path` instead.
///
/// # Panics
/// When they differ: the docs and the table are one source.
pub fn assert_docs_match(words: &[Word], doc: &str, path: &str) {
    let want = markdown(words);
    if doc == want {
        return;
    }
    if std::env::var_os("SHM_BLESS_WORDS").is_some_and(|v| v == "1") {
        std::fs::write(path, &want).expect("rewrite the word table");
        return;
    }
    panic!(
        "{path} differs from the word table in the code; run the test with \
         SHM_BLESS_WORDS=1 to rewrite it. Expected:\n{want}"
    );
}
