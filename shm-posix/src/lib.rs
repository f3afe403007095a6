//! # shm-posix: named POSIX shared memory
//!
//! A [`PosixShm`] is a `shm_open` object (a file in `/dev/shm`) mapped `MAP_SHARED`. The
//! creating handle owns the name and unlinks it on drop; [`PosixShm::persist`] hands that
//! duty over. Any process that knows the name can open it.
//!
//! ```
//! use shm_posix::ShmOptions;
//! use shm_core::Segment;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let name = format!("/shm-posix-doc-{}", std::process::id());
//! let shm = ShmOptions::new(&name).size(4 << 30).create()?;   // 4 GiB, costs one page
//! let writer = Segment::create(shm, &[100u64, 876, 8021])?;
//!
//! // In another process (here the same one, for the example):
//! let reader = Segment::<[u64; 3], _>::attach(ShmOptions::new(&name).open()?)?;
//! assert_eq!(reader.read()?, [100, 876, 8021]);
//! # drop(reader); drop(writer); // the creator unlinks the name
//! # assert!(ShmOptions::new(&name).open().is_err());
//! # Ok(()) }
//! ```
//!
//! ## Reserving memory: no SIGBUS on a full `/dev/shm`
//!
//! `/dev/shm` is a tmpfs: `ftruncate` only sets a size, and pages are allocated when first
//! touched. If the tmpfs is full at that moment the kernel raises SIGBUS. [`ShmOptions::create`]
//! therefore reserves pages with `posix_fallocate`, so that a full `/dev/shm` fails at
//! create with [`Error::NoSpace`]. Reserving costs memory, and the point of a large sparse
//! segment (the tutorial's 4 GiB) is that untouched pages cost nothing, so by default only
//! the first 64 KiB (the header and the start of the payload) are reserved;
//! [`ShmOptions::reserve`] chooses how much, up to the whole segment
//! ([`Reserve::All`]). Pages beyond the reservation can still SIGBUS on first touch if
//! `/dev/shm` fills up in the meantime; reserve everything you will write.
//!
//! ## Names
//!
//! A name is `/` followed by up to 254 bytes with no other `/`. Like glibc's `shm_open`,
//! every function here also takes the name without its leading slash (`"my_shm"` means
//! `"/my_shm"`), and shows the normalised name in what it returns and in its errors.
//!
//! ## Trust, and the SIGBUS guard
//!
//! A POSIX segment can be truncated by anyone who can open it for writing, and touching a
//! truncated page raises SIGBUS. `open` refuses a segment smaller than its header claims,
//! and refuses segments that another user owns or that are group- or world-writable
//! (unless [`ShmOptions::allow_foreign`] says otherwise), so only processes of our own
//! user can do that. Against such a peer, every mapping this crate makes is **guarded**
//! ([`shm_core::os::sigbus`]): the first mapping installs a process-wide `SIGBUS` handler
//! (keeping, and chaining to, the one that was there) that turns a fault inside one of
//! our mappings into zero pages mapped over it; the call that touched it, and every later
//! call through shm-core, returns [`shm_core::Error::Truncated`]. Faults elsewhere in the
//! process go to the previous handler, or kill the process as they would have. Against a
//! hostile peer of the same user `shm-memfd` is still the better choice: its segments are
//! sealed against shrinking, so the data stays shared instead of being cut off.
//!
//! ## Bounded opens
//!
//! Opening never waits without a bound: the name is opened with `O_NONBLOCK` (a FIFO
//! planted under the name cannot block us) and its type is checked on the opened fd; the
//! shared `flock` below is taken with `LOCK_NB` and retried for at most
//! [`ShmOptions::lock_timeout`] (default [`DEFAULT_LOCK_TIMEOUT`]), then
//! [`Error::Locked`] names the process holding the lock, if `/proc/locks` tells.
//!
//! ## Stale segments
//!
//! Every handle holds a shared `flock` on its segment for as long as it lives. A segment
//! of ours (it starts with the layout's magic) whose lock nobody holds has no live user:
//! its creator died without unlinking it. [`list_stale`] finds those and [`remove_stale`]
//! unlinks them; segments in use are never touched. (A child process between `fork` and
//! `exec` shares its parent's open file descriptions, and so the lock, for that moment; a
//! segment then looks in use a little longer.)
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

mod sys;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use shm_core::os::mapping::Mapping;
use shm_core::wait::{DeadlineOnly, Pace, Waiter};
use shm_core::SharedMemory;

/// The longest name accepted, in bytes, leading `/` included.
pub const NAME_MAX: usize = 255;

/// Bytes reserved at create by default (see the crate docs).
pub const DEFAULT_RESERVE: u64 = 64 * 1024;

/// How many create-then-open rounds `open_or_create` makes while the name keeps appearing
/// and disappearing under it.
const OPEN_OR_CREATE_TRIES: u32 = 64;

/// How long `create` and `open` retry the shared `flock` while another process holds an
/// exclusive one (the stale-segment check holds it for a moment).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// What went wrong, with the name involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name is not a valid POSIX shared memory name.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A size of zero, or too large for this platform.
    #[error("invalid segment size {size}: {reason}")]
    InvalidSize {
        /// The size given.
        size: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Exclusive create found the name taken.
    #[error("segment {name} already exists (exclusive create never reuses a name; open it, or unlink it first)")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// Open found no segment by that name.
    #[error("segment {name} not found in /dev/shm")]
    NotFound {
        /// The name.
        name: String,
    },
    /// The caller may not open or create the segment.
    #[error("permission denied for segment {name}")]
    PermissionDenied {
        /// The name.
        name: String,
    },
    /// `/dev/shm` has no room for the reservation.
    #[error("no space in /dev/shm to reserve {reserve} bytes for segment {name}")]
    NoSpace {
        /// The name.
        name: String,
        /// Bytes that could not be reserved.
        reserve: u64,
    },
    /// The name exists but is not a regular file (a symlink, directory, fifo…).
    #[error("segment {name} is not a regular file (file mode {mode:#o})")]
    NotRegularFile {
        /// The name.
        name: String,
        /// `st_mode` as found.
        mode: u32,
    },
    /// The segment is owned by another user.
    #[error("segment {name} is owned by uid {owner}, expected uid {expected} (refusing a segment someone else planted; see ShmOptions::allow_foreign)")]
    ForeignOwner {
        /// The name.
        name: String,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        expected: u32,
    },
    /// The segment is writable by group or others.
    #[error("segment {name} has unsafe permissions {mode:#o}: writable by group or others (see ShmOptions::allow_foreign)")]
    UnsafeMode {
        /// The name.
        name: String,
        /// The permission bits.
        mode: u32,
    },
    /// Another process held an exclusive lock on the segment for longer than the lock
    /// timeout.
    #[error("segment {name} is locked by {} (waited {waited:?} for its exclusive flock to go)", match .holder { Some(pid) => format!("pid {pid}"), None => "another process".to_owned() })]
    Locked {
        /// The name.
        name: String,
        /// The pid holding the lock, if `/proc/locks` told.
        holder: Option<u32>,
        /// How long we retried.
        waited: Duration,
    },
    /// The segment is empty: there is nothing to map.
    #[error("segment {name} is empty (0 bytes): its creator never sized it")]
    Empty {
        /// The name.
        name: String,
    },
    /// Another system call failed.
    #[error("{op} failed for segment {name}: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The name.
        name: String,
        /// The OS error.
        source: io::Error,
    },
}

impl Error {
    fn io(op: &'static str, name: &str, source: io::Error) -> Error {
        let name = name.to_owned();
        match source.raw_os_error() {
            Some(libc::EEXIST) => Error::AlreadyExists { name },
            Some(libc::ENOENT) => Error::NotFound { name },
            Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied { name },
            Some(libc::ELOOP) => Error::NotRegularFile {
                name,
                mode: libc::S_IFLNK,
            },
            _ => Error::Io { op, name, source },
        }
    }
}

/// How [`ShmOptions`] treats an existing name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creation {
    Exclusive,
    OpenExisting,
    OpenOrCreate,
}

/// How much of a new segment to reserve with `posix_fallocate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// Nothing: the segment is entirely sparse.
    None,
    /// The first `n` bytes (capped at the segment size).
    Bytes(u64),
    /// The whole segment.
    All,
}

/// The name as `shm_open` understands it: glibc takes `"my_shm"` to mean `"/my_shm"`, and
/// so do we. Names that already start with `/` are returned unchanged.
pub fn normalize_name(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{name}")
    }
}

/// Checks a POSIX shared memory name, after [`normalize_name`]: not empty, no `/` after
/// the leading one, no NUL, at most [`NAME_MAX`] bytes.
pub fn validate_name(name: &str) -> Result<CString, Error> {
    let name = normalize_name(name);
    let bad = |reason| Error::InvalidName {
        name: name.clone(),
        reason,
    };
    if name.len() == 1 {
        return Err(bad("it is empty after the leading '/'"));
    }
    if name[1..].contains('/') {
        return Err(bad("it may contain no '/' after the first character"));
    }
    if name.len() > NAME_MAX {
        return Err(bad("it is longer than 255 bytes"));
    }
    if name == "/." || name == "/.." {
        return Err(bad("'.' and '..' are not names"));
    }
    CString::new(name.as_str()).map_err(|_| bad("it contains a NUL byte"))
}

/// Builder for [`PosixShm`]: `ShmOptions::new(name).size(n).create()` / `.open()`.
#[derive(Debug, Clone)]
pub struct ShmOptions {
    name: String,
    size: u64,
    mode: u32,
    reserve: Reserve,
    allow_foreign: bool,
    populate: bool,
    lock_timeout: Duration,
    read_only: bool,
}

impl ShmOptions {
    /// Options for the segment `name` (`"/my_shm"`, or `"my_shm"`, which means the same).
    /// Size 4096, mode `0600`, reserve [`DEFAULT_RESERVE`] bytes.
    pub fn new(name: impl Into<String>) -> Self {
        ShmOptions {
            name: normalize_name(&name.into()),
            size: 4096,
            mode: 0o600,
            reserve: Reserve::Bytes(DEFAULT_RESERVE),
            allow_foreign: false,
            populate: false,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            read_only: false,
        }
    }

    /// How long to retry the shared `flock` while another process holds an exclusive one
    /// (default [`DEFAULT_LOCK_TIMEOUT`]); then [`Error::Locked`].
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The size of a new segment in bytes.
    pub fn size(mut self, size: u64) -> Self {
        self.size = size;
        self
    }

    /// Permission bits of a new segment (default `0600`; the umask still applies).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How much of a new segment to reserve up front (see the crate docs).
    pub fn reserve(mut self, reserve: Reserve) -> Self {
        self.reserve = reserve;
        self
    }

    /// Accept segments owned by another user or writable by group or others at open.
    pub fn allow_foreign(mut self, allow: bool) -> Self {
        self.allow_foreign = allow;
        self
    }

    /// [`open`](Self::open) the segment read-only: `O_RDONLY` and a `PROT_READ` mapping,
    /// whose handle is not [`writable`](SharedMemory::writable) (shm-core never writes
    /// through it: a lossy broadcast subscriber). This keeps *this handle* from writing;
    /// it is not a wall against a process of the same user, which can open the name for
    /// writing itself (for that, use a memfd made with `read_only_peers`). `create`
    /// ignores it.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Fault every page in at map time (`MAP_POPULATE`).
    pub fn populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }

    /// Creates a new segment; an existing name is [`Error::AlreadyExists`], never reused.
    /// The handle owns the name and unlinks it on drop.
    #[doc(alias = "shm_open")]
    pub fn create(&self) -> Result<PosixShm, Error> {
        self.open_impl(Creation::Exclusive).map(|(shm, _)| shm)
    }

    /// Opens an existing segment; its size is the file's size.
    pub fn open(&self) -> Result<PosixShm, Error> {
        self.open_impl(Creation::OpenExisting).map(|(shm, _)| shm)
    }

    /// Opens the segment, creating it if it does not exist. Returns whether it was created
    /// (then the handle owns it, and the caller must initialise its layout).
    pub fn open_or_create(&self) -> Result<(PosixShm, bool), Error> {
        self.open_impl(Creation::OpenOrCreate)
    }

    fn open_impl(&self, creation: Creation) -> Result<(PosixShm, bool), Error> {
        let cname = validate_name(&self.name)?;
        if creation != Creation::OpenExisting && self.size == 0 {
            return Err(Error::InvalidSize {
                size: 0,
                reason: "a segment must hold at least one byte",
            });
        }
        if usize::try_from(self.size).is_err() || i64::try_from(self.size).is_err() {
            return Err(Error::InvalidSize {
                size: self.size,
                reason: "larger than the address space",
            });
        }
        match creation {
            Creation::Exclusive => self.create_exclusive(&cname).map(|s| (s, true)),
            Creation::OpenExisting => self.open_existing(&cname).map(|s| (s, false)),
            Creation::OpenOrCreate => {
                // A peer that keeps creating and unlinking the name could send us round
                // forever: a bounded number of tries, then the last answer.
                for _ in 0..OPEN_OR_CREATE_TRIES {
                    match self.create_exclusive(&cname) {
                        Ok(s) => return Ok((s, true)),
                        Err(Error::AlreadyExists { .. }) => {}
                        Err(e) => return Err(e),
                    }
                    match self.open_existing(&cname) {
                        Ok(s) => return Ok((s, false)),
                        // Unlinked between our two calls: try to create again.
                        Err(Error::NotFound { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(Error::NotFound {
                    name: self.name.clone(),
                })
            }
        }
    }

    fn create_exclusive(&self, cname: &CString) -> Result<PosixShm, Error> {
        let name = &self.name;
        let fd = sys::shm_open(
            cname,
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
            self.mode,
        )
        .map_err(|e| Error::io("shm_open", name, e))?;
        // From here on the name is ours: any failure must unlink it again.
        let guard = UnlinkGuard(cname);
        self.lock_shared(fd.as_fd())?;
        sys::ftruncate(fd.as_fd(), self.size).map_err(|e| Error::io("ftruncate", name, e))?;
        let reserve = match self.reserve {
            Reserve::None => 0,
            Reserve::Bytes(n) => n.min(self.size),
            Reserve::All => self.size,
        };
        if reserve > 0 {
            sys::fallocate(fd.as_fd(), reserve).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOSPC) => Error::NoSpace {
                    name: name.clone(),
                    reserve,
                },
                _ => Error::io("posix_fallocate", name, e),
            })?;
        }
        let map = self.map(fd.as_fd(), self.size as usize)?;
        std::mem::forget(guard);
        Ok(PosixShm {
            map,
            fd,
            name: name.clone(),
            owner: true,
            writable: true,
        })
    }

    fn open_existing(&self, cname: &CString) -> Result<PosixShm, Error> {
        let name = &self.name;
        let fd = sys::shm_open(
            cname,
            if self.read_only {
                libc::O_RDONLY
            } else {
                libc::O_RDWR
            },
            0,
        )
        .map_err(|e| Error::io("shm_open", name, e))?;
        let st = sys::fstat(fd.as_fd()).map_err(|e| Error::io("fstat", name, e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Error::NotRegularFile {
                name: name.clone(),
                mode: st.st_mode,
            });
        }
        if !self.allow_foreign {
            let me = sys::geteuid();
            if st.st_uid != me {
                return Err(Error::ForeignOwner {
                    name: name.clone(),
                    owner: st.st_uid,
                    expected: me,
                });
            }
            if st.st_mode & 0o022 != 0 {
                return Err(Error::UnsafeMode {
                    name: name.clone(),
                    mode: st.st_mode & 0o7777,
                });
            }
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        if size == 0 {
            return Err(Error::Empty { name: name.clone() });
        }
        let size = usize::try_from(size).map_err(|_| Error::InvalidSize {
            size,
            reason: "larger than the address space",
        })?;
        self.lock_shared(fd.as_fd())?;
        // Our lock is proof of use only if the name still names the file we locked:
        // `cleanup` unlinks a stale segment while it holds the exclusive lock, so a
        // segment we locked after that is one nobody can open again. Checked after the
        // lock, so no unlink can slip between the check and our holding.
        if !names_this_file(name, fd.as_fd()) {
            return Err(Error::NotFound { name: name.clone() });
        }
        let map = self.map(fd.as_fd(), size)?;
        Ok(PosixShm {
            map,
            fd,
            name: name.clone(),
            owner: false,
            writable: !self.read_only,
        })
    }

    /// Takes the shared `flock` that marks the segment in use: `LOCK_NB`, retried for at
    /// most the lock timeout while another process holds an exclusive lock.
    fn lock_shared(&self, fd: BorrowedFd<'_>) -> Result<(), Error> {
        let name = &self.name;
        let mut w = Waiter::new(Pace::Poll, Some(self.lock_timeout));
        loop {
            match sys::try_flock_shared(fd) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(Error::io("flock", name, e)),
            }
            if let Err(e) = w.pause(&mut DeadlineOnly) {
                let waited = match e {
                    shm_core::Error::Timeout { waited } => waited,
                    _ => self.lock_timeout,
                };
                let holder = sys::fstat(fd).ok().and_then(|st| sys::flock_holder(&st));
                return Err(Error::Locked {
                    name: name.clone(),
                    holder,
                    waited,
                });
            }
        }
    }

    fn map(&self, fd: BorrowedFd<'_>, len: usize) -> Result<Mapping, Error> {
        let map = if self.read_only {
            Mapping::shared_read_only(fd, len)
        } else if self.populate {
            Mapping::shared_populated(fd, len)
        } else {
            Mapping::shared(fd, len)
        };
        let mut map = map.map_err(|e| Error::io("mmap", &self.name, e))?;
        // A same-user peer can truncate the file under us: catch the fault (crate docs).
        map.guard_sigbus();
        Ok(map)
    }
}

/// Unlinks a name we just created if creation fails half way.
struct UnlinkGuard<'a>(&'a CString);

impl Drop for UnlinkGuard<'_> {
    fn drop(&mut self) {
        // Best effort: the name was created by us a moment ago.
        let _ = sys::shm_unlink(self.0);
    }
}

/// A mapped POSIX shared memory segment.
#[derive(Debug)]
pub struct PosixShm {
    map: Mapping,
    fd: OwnedFd,
    name: String,
    owner: bool,
    writable: bool,
}

impl PosixShm {
    /// The segment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Gives up ownership: the name is no longer unlinked when this handle is dropped.
    /// Returns the name, for whoever takes the duty over (see [`unlink`]).
    pub fn persist(&mut self) -> &str {
        self.owner = false;
        &self.name
    }

    /// Takes ownership: the name is unlinked when this handle is dropped.
    pub fn take_ownership(&mut self) {
        self.owner = true;
    }

    /// How many of the segment's pages are resident in this process's mapping.
    pub fn resident_pages(&self) -> io::Result<usize> {
        self.map.resident_pages()
    }

    /// The current size of the object behind the name (`fstat`), which a peer may have
    /// changed since it was mapped.
    pub fn current_size(&self) -> io::Result<u64> {
        sys::fstat(self.fd.as_fd()).map(|st| u64::try_from(st.st_size).unwrap_or(0))
    }
}

impl AsFd for PosixShm {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// SAFETY: the mapping is page aligned, `len` bytes long, readable and writable, lives as
// long as `self` and does not move with it; we never make references into it.
#[allow(unsafe_code)]
unsafe impl SharedMemory for PosixShm {
    fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn backend(&self) -> &'static str {
        "posix"
    }
    fn is_owner(&self) -> bool {
        self.owner
    }
    fn writable(&self) -> bool {
        self.writable
    }
    fn truncated(&self) -> Option<u64> {
        if !self.map.tripped() {
            return None;
        }
        Some(self.current_size().unwrap_or(0))
    }
}

impl Drop for PosixShm {
    fn drop(&mut self) {
        if self.owner {
            if let Ok(cname) = CString::new(self.name.as_str()) {
                // Never panic in drop; a name someone else already unlinked is fine.
                let _ = sys::shm_unlink(&cname);
            }
        }
        // The mapping and the fd (and with it our flock) go away with the fields.
    }
}

/// Unlinks the segment `name` (`shm_unlink`). Processes that have it mapped keep it.
#[doc(alias = "shm_unlink")]
pub fn unlink(name: &str) -> Result<(), Error> {
    let cname = validate_name(name)?;
    sys::shm_unlink(&cname).map_err(|e| Error::io("shm_unlink", &normalize_name(name), e))
}

/// Whether the segment `name` is one of ours (a regular file that starts with the layout
/// magic) and no process holds it open through this crate.
///
/// Never blocks: the name is opened with `O_NONBLOCK`, its type is checked on the opened
/// fd (a FIFO or anything else but a regular file is not ours), and the lock is only
/// tried (`LOCK_NB`).
pub fn is_stale(name: &str) -> Result<bool, Error> {
    let cname = validate_name(name)?;
    let name = normalize_name(name);
    let fd =
        sys::shm_open(&cname, libc::O_RDONLY, 0).map_err(|e| Error::io("shm_open", &name, e))?;
    let st = sys::fstat(fd.as_fd()).map_err(|e| Error::io("fstat", &name, e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(false);
    }
    let mut magic = [0u8; 8];
    let n = sys::pread(fd.as_fd(), &mut magic, 0).map_err(|e| Error::io("pread", &name, e))?;
    if n != 8 || magic != shm_core::format::layout::MAGIC {
        return Ok(false);
    }
    sys::try_flock_exclusive(fd.as_fd()).map_err(|e| Error::io("flock", &name, e))
}

/// Whether `/dev/shm/NAME` is (still) the file open as `fd`: same device and inode.
fn names_this_file(name: &str, fd: BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(st) = sys::fstat(fd) else {
        return false;
    };
    std::fs::symlink_metadata(format!("/dev/shm{}", normalize_name(name)))
        .is_ok_and(|m| m.dev() == st.st_dev && m.ino() == st.st_ino)
}

/// Unlinks `name` if it is stale, proved while the proof still holds: the exclusive
/// `flock` is taken on the opened file, the name is checked to still name that file, the
/// magic is ours, `still_stale` agrees (the caller's liveness checks), and the unlink
/// happens before the lock is let go. An opener takes its shared lock and then checks
/// that the name still names its file (`open`), so no opener can hold a segment whose
/// name this removes: either it locked first (then the exclusive lock fails here), or it
/// locks after the unlink and finds the name gone.
fn unlink_if_stale(name: &str, still_stale: impl FnOnce() -> bool) -> bool {
    let Some((cname, fd)) = open_ours(name) else {
        return false;
    };
    if !matches!(sys::try_flock_exclusive(fd.as_fd()), Ok(true)) {
        return false;
    }
    if !names_this_file(name, fd.as_fd()) || !still_stale() {
        return false;
    }
    let removed = sys::shm_unlink(&cname).is_ok();
    // The lock goes with the fd, after the unlink.
    drop(fd);
    removed
}

/// Opens `name` read-only if it is a regular file that starts with our layout's magic
/// (judged on the opened fd, never blocking); its C name and the fd.
fn open_ours(name: &str) -> Option<(CString, OwnedFd)> {
    let cname = validate_name(name).ok()?;
    let fd = sys::shm_open(&cname, libc::O_RDONLY, 0).ok()?;
    let regular = sys::fstat(fd.as_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
    let mut magic = [0u8; 8];
    let ours = regular
        && matches!(sys::pread(fd.as_fd(), &mut magic, 0), Ok(8))
        && magic == shm_core::format::layout::MAGIC;
    ours.then_some((cname, fd))
}

/// Whether `name` is a regular file that starts with our layout's magic.
fn has_our_magic(name: &str) -> bool {
    open_ours(name).is_some()
}

/// The names of our segments in `/dev/shm` that start with `prefix` (`"/"` for all) and
/// that no live process holds. Each entry's type is judged on its opened fd by
/// [`is_stale`], never on the directory entry, which a peer can swap after we read it.
pub fn list_stale(prefix: &str) -> Result<Vec<String>, Error> {
    let prefix = normalize_name(prefix);
    let dir = std::fs::read_dir("/dev/shm").map_err(|e| Error::io("read_dir", "/dev/shm", e))?;
    let mut stale = Vec::new();
    for entry in dir.flatten() {
        let Some(file) = entry.file_name().to_str().map(|s| format!("/{s}")) else {
            continue;
        };
        if !file.starts_with(&prefix) || validate_name(&file).is_err() {
            continue;
        }
        if matches!(is_stale(&file), Ok(true)) {
            stale.push(file);
        }
    }
    stale.sort();
    Ok(stale)
}

/// Unlinks every stale segment of ours whose name starts with `prefix` (what
/// [`list_stale`] lists: no process holds it through this crate); returns their names.
/// A segment in use is never removed: the proof is made again under the exclusive lock,
/// held across the unlink (an opener that locks after it finds the name gone).
pub fn remove_stale(prefix: &str) -> Result<Vec<String>, Error> {
    Ok(list_stale(prefix)?
        .into_iter()
        .filter(|name| unlink_if_stale(name, || true))
        .collect())
}

/// What [`list`] and [`inspect`] conclude about an entry of `/dev/shm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// One of ours that a live process holds (or names, or is still creating).
    Live,
    /// One of ours that no process holds and whose processes are all dead: what
    /// [`remove_stale`] removes.
    Stale,
    /// Not one of ours: no header, another user's file, not a regular file, unsafe
    /// permissions.
    Foreign,
    /// One of ours that is cut short or holds values no honest peer writes.
    Corrupt,
}

impl SegmentState {
    /// `live`, `stale`, `foreign`, `corrupt`.
    pub fn name(self) -> &'static str {
        match self {
            SegmentState::Live => "live",
            SegmentState::Stale => "stale",
            SegmentState::Foreign => "foreign",
            SegmentState::Corrupt => "corrupt",
        }
    }
}

/// One entry of `/dev/shm`, as [`inspect`] saw it.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The name, with its leading `/`.
    pub name: String,
    /// The file's size in bytes (0 if it could not be read).
    pub size: u64,
    /// The verdict.
    pub state: SegmentState,
    /// Why, for a state other than `Live` (and what is pending for a live segment
    /// still being created).
    pub reason: Option<String>,
    /// Whether some process holds it open through this library (its shared lock).
    pub held: bool,
    /// What its header and shared state say, when it could be mapped.
    pub inspection: Option<shm_core::inspect::Inspection>,
}

/// Looks at segment `name` without writing it and without waiting: opens it read-only
/// (never blocking on a lock or a FIFO), asks whether anyone holds it, and reads its
/// header and shared state ([`shm_core::inspect::inspect`]). A file that is not ours is
/// reported (`Foreign`, with the reason), never followed.
///
/// # Errors
/// Only [`Error::InvalidName`] and [`Error::NotFound`]; every other failure is a state
/// with its reason.
pub fn inspect(name: &str) -> Result<Listing, Error> {
    use shm_core::inspect::Verdict;
    validate_name(name)?;
    let name = normalize_name(name);
    let size = std::fs::symlink_metadata(format!("/dev/shm{name}"))
        .map(|m| m.len())
        .unwrap_or(0);
    let mut out = Listing {
        name: name.clone(),
        size,
        state: SegmentState::Foreign,
        reason: None,
        held: false,
        inspection: None,
    };
    // Asked before we open it: our own handle holds the shared lock too.
    let unheld = is_stale(&name);
    let opened = ShmOptions::new(&name)
        .read_only(true)
        .lock_timeout(Duration::ZERO)
        .open();
    let shm = match opened {
        Ok(shm) => shm,
        Err(e @ Error::NotFound { .. }) => return Err(e),
        Err(e) => {
            out.state = match e {
                Error::Locked { .. } => SegmentState::Live,
                Error::NotRegularFile { .. }
                | Error::ForeignOwner { .. }
                | Error::UnsafeMode { .. }
                | Error::PermissionDenied { .. } => SegmentState::Foreign,
                // Only a file that carries our magic is ours to call corrupt.
                _ if has_our_magic(&name) => SegmentState::Corrupt,
                _ => SegmentState::Foreign,
            };
            if out.state == SegmentState::Live {
                out.held = true;
            }
            out.reason = Some(e.to_string());
            return Ok(out);
        }
    };
    out.held = matches!(unheld, Ok(false));
    let seen = shm_core::inspect::inspect(shm);
    out.state = match seen.verdict {
        Verdict::Foreign => SegmentState::Foreign,
        Verdict::Corrupt => SegmentState::Corrupt,
        Verdict::Initialising => SegmentState::Live,
        Verdict::Ours if out.held || seen.anyone_alive() => SegmentState::Live,
        Verdict::Ours => SegmentState::Stale,
    };
    out.reason = match out.state {
        SegmentState::Stale => Some(format!(
            "no process holds it; its creator (pid {}) and every peer it names are dead",
            seen.creator_pid
        )),
        _ => seen.problem.clone(),
    };
    out.inspection = Some(seen);
    Ok(out)
}

/// Every entry of `/dev/shm` whose name starts with `prefix` (`"/"` for all), as
/// [`inspect`] sees it, sorted by name. Entries that vanish while listed are left out.
///
/// # Errors
/// [`Error::Io`] if `/dev/shm` cannot be read.
pub fn list(prefix: &str) -> Result<Vec<Listing>, Error> {
    let prefix = normalize_name(prefix);
    let dir = std::fs::read_dir("/dev/shm").map_err(|e| Error::io("read_dir", "/dev/shm", e))?;
    let mut all = Vec::new();
    for entry in dir.flatten() {
        let Some(file) = entry.file_name().to_str().map(|s| format!("/{s}")) else {
            continue;
        };
        if !file.starts_with(&prefix) {
            continue;
        }
        match inspect(&file) {
            Ok(l) => all.push(l),
            Err(Error::NotFound { .. }) => {}
            Err(e) => all.push(Listing {
                name: file,
                size: 0,
                state: SegmentState::Foreign,
                reason: Some(e.to_string()),
                held: false,
                inspection: None,
            }),
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// What [`cleanup`] did (or, dry, would do) with one segment.
#[derive(Debug, Clone)]
pub struct Removal {
    /// The segment.
    pub name: String,
    /// Why it goes.
    pub reason: String,
    /// Whether it was removed (false on a dry run, or if it came back to life or went
    /// away meanwhile).
    pub removed: bool,
}

/// Removes (unless `dry_run`) every segment of ours under `prefix` that no live process
/// holds: stale ones, and corrupt ones that nobody holds. A segment that a process holds
/// through this library, or whose creator or peers are alive, is never removed; the
/// lock is checked again right before each unlink.
///
/// # Errors
/// [`Error::Io`] if `/dev/shm` cannot be read.
pub fn cleanup(prefix: &str, dry_run: bool) -> Result<Vec<Removal>, Error> {
    let mut out = Vec::new();
    for l in list(prefix)? {
        let ours_unheld = match l.state {
            SegmentState::Stale => true,
            SegmentState::Corrupt => {
                !l.held
                    && matches!(is_stale(&l.name), Ok(true))
                    && !l.inspection.as_ref().is_some_and(|i| i.anyone_alive())
            }
            _ => false,
        };
        if !ours_unheld {
            continue;
        }
        let reason = match l.state {
            SegmentState::Corrupt => format!(
                "corrupt ({}) and no process holds it",
                l.reason.as_deref().unwrap_or("?")
            ),
            _ => l.reason.clone().unwrap_or_else(|| "stale".to_owned()),
        };
        // The proof again, under the exclusive lock held across the unlink: nobody
        // holds it and every process it names is dead.
        let removed = !dry_run
            && unlink_if_stale(&l.name, || {
                !l.inspection.as_ref().is_some_and(|i| i.anyone_alive())
            });
        out.push(Removal {
            name: l.name,
            reason,
            removed,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_before_any_syscall() {
        for (name, reason) in [
            ("", "it is empty after the leading '/'"),
            ("/", "it is empty after the leading '/'"),
            ("a/b", "it may contain no '/' after the first character"),
            ("/a/b", "it may contain no '/' after the first character"),
            ("/..", "'.' and '..' are not names"),
            ("/a\0b", "it contains a NUL byte"),
        ] {
            match validate_name(name) {
                Err(Error::InvalidName { reason: r, .. }) => assert_eq!(r, reason, "{name:?}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
        let long = format!("/{}", "x".repeat(255));
        assert!(matches!(
            validate_name(&long),
            Err(Error::InvalidName { .. })
        ));
        assert!(validate_name(&long[..255]).is_ok());
        assert!(
            validate_name(&long[1..255]).is_ok(),
            "254 bytes without the slash"
        );
        assert!(matches!(
            validate_name(&long[1..]),
            Err(Error::InvalidName { .. })
        ));
        assert!(validate_name("/my_shm").is_ok());
        // glibc's reading of a name without the leading slash.
        assert_eq!(
            validate_name("my_shm").unwrap().to_str().unwrap(),
            "/my_shm"
        );
        assert_eq!(normalize_name("my_shm"), "/my_shm");
        assert_eq!(ShmOptions::new("my_shm").name, "/my_shm");
        match validate_name("a\0b") {
            Err(Error::InvalidName { name, .. }) => assert_eq!(name, "/a\0b"),
            other => panic!("{other:?}"),
        }
    }
}
