//! [`ShmOptions`]: create or open a named segment.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use shm_core::os::mapping::Mapping;
use shm_core::wait::{DeadlineOnly, Pace, Waiter};

use crate::listing::names_this_file;
use crate::{normalize_name, sys, validate_name, Error, PosixShm};

/// Bytes reserved at create by default (see the crate docs).
pub const DEFAULT_RESERVE: u64 = 64 * 1024;

/// How many create-then-open rounds `open_or_create` makes while the name keeps appearing
/// and disappearing under it.
const OPEN_OR_CREATE_TRIES: u32 = 64;

/// How long `create` and `open` retry the shared `flock` while another process holds an
/// exclusive one (the stale-segment check holds it for a moment).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

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

/// Builder for [`PosixShm`]: `ShmOptions::new(name).size(n).create()` / `.open()`.
#[derive(Debug, Clone)]
pub struct ShmOptions {
    pub(crate) name: String,
    size: u64,
    mode: u32,
    reserve: Reserve,
    allow_foreign: bool,
    populate: bool,
    lock_timeout: Duration,
    read_only: bool,
    wait: Duration,
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
            wait: Duration::ZERO,
        }
    }

    /// How long [`open`](Self::open) waits for the segment to appear (default: not at
    /// all): a name that does not exist yet, or a segment its creator has not sized yet,
    /// is tried again (polling: spins, then sleeps from 10 µs up to 1 ms) until `wait` has
    /// passed, then the last error ([`Error::NotFound`], [`Error::Empty`]). What the
    /// segment holds is the layout's to wait for: an attach waits for the creator's
    /// `ready` ([`AttachOptions`](shm_core::AttachOptions)).
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// # use shm_posix::{Error, ShmOptions};
    /// let name = format!("/doc-wait-{}", std::process::id());
    /// let t = std::thread::spawn({
    ///     let name = name.clone();
    ///     move || {
    ///         std::thread::sleep(Duration::from_millis(50));
    ///         ShmOptions::new(&name).size(4096).create().unwrap()
    ///     }
    /// });
    /// let mem = ShmOptions::new(&name).wait(Duration::from_secs(10)).open().unwrap();
    /// drop((mem, t.join().unwrap()));
    /// let gone = ShmOptions::new(&name).wait(Duration::from_millis(20)).open();
    /// assert!(matches!(gone, Err(Error::NotFound { .. })));
    /// ```
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
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
    /// whose handle is not [`writable`](shm_core::SharedMemory::writable) (shm-core never writes
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

    /// Opens an existing segment; its size is the file's size. With [`wait`](Self::wait),
    /// waits that long for it to appear.
    pub fn open(&self) -> Result<PosixShm, Error> {
        let once = || self.open_impl(Creation::OpenExisting).map(|(shm, _)| shm);
        if self.wait.is_zero() {
            return once();
        }
        let mut last = None;
        let r = shm_core::wait::poll_until(self.wait, || match once() {
            Err(e @ (Error::NotFound { .. } | Error::Empty { .. })) => {
                last = Some(e);
                None
            }
            other => Some(other),
        });
        match r {
            Ok(r) => r,
            Err(_) => Err(last.unwrap_or_else(|| Error::NotFound {
                name: self.name.clone(),
            })),
        }
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
