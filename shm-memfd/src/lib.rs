//! # shm-memfd: sealed memfds passed over a Unix socket
//!
//! A [`MemfdShm`] is a `memfd_create` file, sized and then sealed against shrinking and
//! growing (`F_SEAL_SHRINK | F_SEAL_GROW`, then `F_SEAL_SEAL`) before any fd leaves the
//! process, so nobody, its creator included, can truncate it under a peer's mapping: the
//! SIGBUS that a truncated POSIX segment causes cannot happen here. This is the backend
//! for peers you do not trust.
//!
//! The fd travels with `SCM_RIGHTS`. A [`Server`] listens on a Unix socket (a path, or a
//! name in the abstract namespace) and sends the fd to each client, by default only to
//! clients of our own uid (`SO_PEERCRED`). [`connect`] receives exactly one fd, close-on-exec,
//! and verifies it before mapping: a memfd, opened read-write, sealed against shrink and
//! grow, not sealed against writes, non-empty. The size is read only after the seals are
//! seen: before they are there a sender could still change it. Every fd that arrives and
//! is not used is closed.
//!
//! Nothing here waits without a bound except [`Server::serve_one`], which waits for a
//! client as `accept` does (use [`Server::serve_one_timeout`] to bound it): `connect`,
//! receiving and sending run with socket timeouts ([`DEFAULT_TIMEOUT`], or the one given
//! to [`connect_timeout`]), so a server that accepts and never sends, a full backlog or a
//! client that never reads ends in [`Error::Timeout`].
//!
//! ```
//! use shm_memfd::{MemfdOptions, Server};
//! use shm_core::Segment;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("shm-memfd-doc-{}", std::process::id()));
//! let seg = Segment::create(MemfdOptions::new().size(1 << 20).create()?, &[100u64, 876, 8021])?;
//! let server = Server::bind(&dir)?;
//! let client = std::thread::spawn({
//!     let dir = dir.clone();
//!     move || shm_memfd::connect(&dir)   // in another process, in real use
//! });
//! server.serve_one(seg.raw().memory())?;
//! let reader = Segment::<[u64; 3], _>::attach(client.join().unwrap()?)?;
//! assert_eq!(reader.read()?, [100, 876, 8021]);
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

mod sys;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use memfd::FileSeal;
use shm_core::os::mapping::Mapping;
use shm_core::SharedMemory;

pub use sys::{recv_fd, send_fds};

/// The bound on connecting, receiving the fd and sending it, unless one is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A size of zero or beyond the address space.
    #[error("invalid memfd size {size}: {reason}")]
    InvalidSize {
        /// The size given.
        size: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The fd received is not a memfd.
    #[error("expected a memfd, found {found}")]
    NotMemfd {
        /// What it is instead ("a pipe", "a regular file (/tmp/x)", …).
        found: String,
    },
    /// The memfd lacks the seals that make it safe to map.
    #[error("memfd is not sealed against {missing}: its sender could truncate it under our mapping (seals found: {found})")]
    Unsealed {
        /// The missing seals.
        missing: &'static str,
        /// The seals it has.
        found: String,
    },
    /// The memfd is sealed against writing; a shared segment must be writable.
    #[error("memfd is sealed against writing (seals found: {found}); expected a writable segment (map it with from_fd_read_only / connect_read_only)")]
    WriteSealed {
        /// The seals it has.
        found: String,
    },
    /// The fd is not open for reading and writing.
    #[error("memfd fd is open {found}, expected read-write")]
    NotReadWrite {
        /// Its access mode.
        found: &'static str,
    },
    /// The memfd has no bytes to map.
    #[error("memfd is empty (0 bytes)")]
    Empty,
    /// The message carried no fd.
    #[error("expected one fd in the message, found none")]
    NoFd,
    /// The message carried more than one fd; all were closed.
    #[error("expected one fd in the message, found {count}; all were closed")]
    TooManyFds {
        /// How many arrived.
        count: usize,
    },
    /// The kernel truncated the control message (`MSG_CTRUNC`), for example because our
    /// fd limit was reached; every fd that did arrive was closed.
    #[error("control message truncated (MSG_CTRUNC): the fd could not be received (is RLIMIT_NOFILE exhausted?); {received} fd(s) arrived and were closed")]
    ControlTruncated {
        /// How many fds did arrive.
        received: usize,
    },
    /// The peer closed the connection before sending anything.
    #[error("the peer closed the connection without sending an fd")]
    PeerClosed,
    /// The peer runs as another user.
    #[error("peer uid {found} is not ours ({expected}); refusing (see allow_any_uid)")]
    ForeignPeer {
        /// Our uid.
        expected: u32,
        /// The peer's.
        found: u32,
    },
    /// No client connected, or the peer did not answer, within the timeout.
    #[error("timed out after {0:?} waiting for the peer")]
    Timeout(Duration),
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { op, source }
}

/// Builder for a new, sealed [`MemfdShm`]: `MemfdOptions::new().size(n).create()`.
#[derive(Debug, Clone)]
pub struct MemfdOptions {
    name: String,
    size: u64,
    read_only_peers: bool,
}

impl Default for MemfdOptions {
    fn default() -> Self {
        MemfdOptions {
            name: "shm".to_owned(),
            size: 4096,
            read_only_peers: false,
        }
    }
}

impl MemfdOptions {
    /// Defaults: name `"shm"` (shown in `/proc/PID/fd` as `/memfd:shm`), 4096 bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// The name shown in `/proc/PID/fd` (not a namespace: names need not be unique).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The size in bytes; fixed for the memfd's life.
    pub fn size(mut self, size: u64) -> Self {
        self.size = size;
        self
    }

    /// Make every other mapping of the memfd read-only: after the creator's writable
    /// mapping exists, the memfd is sealed with `F_SEAL_FUTURE_WRITE`, so whoever gets
    /// the fd (the creator included, for any new mapping) can map it only `PROT_READ`,
    /// cannot `write(2)` to it, cannot `mprotect` a mapping writable and cannot resize
    /// it. Receivers take it with [`MemfdShm::from_fd_read_only`] /
    /// [`connect_read_only`]. For lossy broadcast subscribers, which write nothing.
    pub fn read_only_peers(mut self, yes: bool) -> Self {
        self.read_only_peers = yes;
        self
    }

    /// `memfd_create(MFD_CLOEXEC | MFD_ALLOW_SEALING)`, `ftruncate`, seal shrink and grow,
    /// map, then (with [`read_only_peers`](Self::read_only_peers)) seal future writes,
    /// then seal the seals.
    #[doc(alias = "memfd_create")]
    pub fn create(&self) -> Result<MemfdShm, Error> {
        if self.size == 0 {
            return Err(Error::InvalidSize {
                size: 0,
                reason: "a memfd segment must hold at least one byte",
            });
        }
        let len = usize::try_from(self.size).map_err(|_| Error::InvalidSize {
            size: self.size,
            reason: "larger than the address space",
        })?;
        let mfd = memfd::MemfdOptions::default()
            .close_on_exec(true)
            .allow_sealing(true)
            .create(&self.name)
            .map_err(|e| Error::Io {
                op: "memfd_create",
                source: memfd_io(e),
            })?;
        mfd.as_file()
            .set_len(self.size)
            .map_err(io_err("ftruncate"))?;
        let seal = |seals: &[FileSeal]| {
            mfd.add_seals(seals).map_err(|e| Error::Io {
                op: "fcntl(F_ADD_SEALS)",
                source: memfd_io(e),
            })
        };
        seal(&[FileSeal::SealShrink, FileSeal::SealGrow])?;
        let fd = OwnedFd::from(mfd.into_file());
        let map = Mapping::shared(&fd, len).map_err(io_err("mmap"))?;
        if self.read_only_peers {
            // After our writable mapping exists: it keeps working, every later one is
            // read-only (Linux 5.1).
            sys::add_seals(fd.as_fd(), sys::F_SEAL_FUTURE_WRITE)
                .map_err(io_err("fcntl(F_ADD_SEALS, F_SEAL_FUTURE_WRITE)"))?;
        }
        sys::add_seals(fd.as_fd(), libc::F_SEAL_SEAL).map_err(io_err("fcntl(F_ADD_SEALS)"))?;
        Ok(MemfdShm {
            map,
            fd,
            owner: true,
            writable: true,
        })
    }
}

fn memfd_io(e: memfd::Error) -> io::Error {
    match e {
        memfd::Error::Create(e) | memfd::Error::AddSeals(e) | memfd::Error::GetSeals(e) => e,
    }
}

/// A mapped, sealed memfd.
#[derive(Debug)]
pub struct MemfdShm {
    map: Mapping,
    fd: OwnedFd,
    owner: bool,
    writable: bool,
}

impl MemfdShm {
    /// Verifies that `fd` is a sealed, writable, non-empty memfd, then maps all of it. On
    /// failure the fd is closed and the error says what was found.
    pub fn from_fd(fd: OwnedFd) -> Result<MemfdShm, Error> {
        let len = verify(fd.as_fd())?;
        let map = Mapping::shared(&fd, len).map_err(io_err("mmap"))?;
        Ok(MemfdShm {
            map,
            fd,
            owner: false,
            writable: true,
        })
    }

    /// Verifies that `fd` is a sealed (shrink, grow), non-empty memfd, write-sealed or
    /// not, then maps all of it `PROT_READ`. The handle is not
    /// [`writable`](SharedMemory::writable): shm-core never writes through it (a lossy
    /// broadcast subscriber's memory).
    pub fn from_fd_read_only(fd: OwnedFd) -> Result<MemfdShm, Error> {
        let len = verify_impl(fd.as_fd(), true)?;
        let map = Mapping::shared_read_only(&fd, len).map_err(io_err("mmap"))?;
        Ok(MemfdShm {
            map,
            fd,
            owner: false,
            writable: false,
        })
    }

    /// A second, independent mapping of the same memfd (through a `dup` of its fd); a
    /// read-only one if the memfd is sealed against future writes.
    pub fn try_clone(&self) -> Result<MemfdShm, Error> {
        let fd = self.fd.try_clone().map_err(io_err("dup"))?;
        let seals = sys::get_seals(fd.as_fd()).map_err(io_err("fcntl(F_GET_SEALS)"))?;
        if !self.writable || seals & (libc::F_SEAL_WRITE | sys::F_SEAL_FUTURE_WRITE) != 0 {
            MemfdShm::from_fd_read_only(fd)
        } else {
            MemfdShm::from_fd(fd)
        }
    }

    /// How many of the segment's pages are resident in this mapping.
    pub fn resident_pages(&self) -> io::Result<usize> {
        self.map.resident_pages()
    }
}

impl AsFd for MemfdShm {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// SAFETY: the mapping is page aligned, `len` bytes long, readable and writable, lives as
// long as `self` and does not move. The memfd is sealed against shrinking (checked by
// `verify` for received fds, done by `create` for ours), so no peer can cut pages out from
// under the mapping. We never make references into it.
#[allow(unsafe_code)]
unsafe impl SharedMemory for MemfdShm {
    fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn backend(&self) -> &'static str {
        "memfd"
    }
    fn is_owner(&self) -> bool {
        self.owner
    }
    fn writable(&self) -> bool {
        self.writable
    }
    fn truncated(&self) -> Option<u64> {
        None // sealed against shrinking (F_SEAL_SHRINK, checked before mapping)
    }
}

/// Checks a received fd before it is mapped writable; returns its size.
pub fn verify(fd: BorrowedFd<'_>) -> Result<usize, Error> {
    verify_impl(fd, false)
}

/// `verify`, or with `read_only` the checks for a read-only mapping: any access mode that
/// can read, and write seals allowed.
fn verify_impl(fd: BorrowedFd<'_>, read_only: bool) -> Result<usize, Error> {
    let flags = sys::fcntl_getfl(fd).map_err(io_err("fcntl(F_GETFL)"))?;
    if flags & libc::O_PATH != 0 {
        return Err(Error::NotMemfd {
            found: "an O_PATH descriptor".to_owned(),
        });
    }
    let st = sys::fstat(fd).map_err(io_err("fstat"))?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFIFO => Some("a pipe"),
        libc::S_IFSOCK => Some("a socket"),
        libc::S_IFDIR => Some("a directory"),
        libc::S_IFCHR => Some("a character device"),
        libc::S_IFBLK => Some("a block device"),
        _ => Some("an unknown kind of file"),
    };
    if let Some(kind) = kind {
        return Err(Error::NotMemfd {
            found: kind.to_owned(),
        });
    }
    let target = sys::fd_path(fd).unwrap_or_default();
    if !target.starts_with("/memfd:") {
        return Err(Error::NotMemfd {
            found: format!("a regular file ({target})"),
        });
    }
    match flags & libc::O_ACCMODE {
        libc::O_RDWR => {}
        libc::O_RDONLY if read_only => {}
        libc::O_RDONLY => return Err(Error::NotReadWrite { found: "read-only" }),
        _ => {
            return Err(Error::NotReadWrite {
                found: "write-only",
            })
        }
    }
    // Seals first, then the size: until SHRINK and GROW are set the sender can still
    // change the size, so a size read before the seals could be stale by the time we map.
    let seals = sys::get_seals(fd).map_err(io_err("fcntl(F_GET_SEALS)"))?;
    let missing = match (
        seals & libc::F_SEAL_SHRINK != 0,
        seals & libc::F_SEAL_GROW != 0,
    ) {
        (true, true) => None,
        (false, true) => Some("shrinking"),
        (true, false) => Some("growing"),
        (false, false) => Some("shrinking and growing"),
    };
    if let Some(missing) = missing {
        return Err(Error::Unsealed {
            missing,
            found: sys::seal_names(seals),
        });
    }
    if !read_only && seals & (libc::F_SEAL_WRITE | sys::F_SEAL_FUTURE_WRITE) != 0 {
        return Err(Error::WriteSealed {
            found: sys::seal_names(seals),
        });
    }
    // Seals cannot be removed, so from here on the size is frozen.
    let st = sys::fstat(fd).map_err(io_err("fstat"))?;
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size == 0 {
        return Err(Error::Empty);
    }
    usize::try_from(size).map_err(|_| Error::InvalidSize {
        size,
        reason: "larger than the address space",
    })
}

/// Where a [`Server`] listens.
#[derive(Debug)]
enum Endpoint {
    Path(PathBuf),
    Abstract,
}

/// Hands a memfd's fd to each client that connects to a Unix socket.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    endpoint: Endpoint,
    allow_any_uid: bool,
}

impl Server {
    /// Listens on the socket file `path` (removed again when the server is dropped).
    pub fn bind(path: impl AsRef<Path>) -> Result<Server, Error> {
        let path = path.as_ref().to_owned();
        let listener = UnixListener::bind(&path).map_err(io_err("bind"))?;
        Ok(Server {
            listener,
            endpoint: Endpoint::Path(path),
            allow_any_uid: false,
        })
    }

    /// Listens on `name` in the abstract socket namespace (no file; gone with the server).
    pub fn bind_abstract(name: &str) -> Result<Server, Error> {
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(io_err("bind"))?;
        let listener = UnixListener::bind_addr(&addr).map_err(io_err("bind"))?;
        Ok(Server {
            listener,
            endpoint: Endpoint::Abstract,
            allow_any_uid: false,
        })
    }

    /// Send to clients of any uid, not only our own.
    pub fn allow_any_uid(mut self, allow: bool) -> Self {
        self.allow_any_uid = allow;
        self
    }

    /// Accepts one client, checks its uid, and sends it the fd of `shm`. Returns the
    /// client's pid.
    pub fn serve_one(&self, shm: &impl AsFd) -> Result<u32, Error> {
        let (stream, _) = self.listener.accept().map_err(io_err("accept"))?;
        self.send_to(&stream, shm.as_fd())
    }

    /// [`serve_one`](Self::serve_one), giving up after `timeout` with [`Error::Timeout`].
    pub fn serve_one_timeout(&self, shm: &impl AsFd, timeout: Duration) -> Result<u32, Error> {
        if !sys::poll_readable(self.listener.as_fd(), timeout).map_err(io_err("poll"))? {
            return Err(Error::Timeout(timeout));
        }
        self.serve_one(shm)
    }

    fn send_to(&self, stream: &UnixStream, fd: BorrowedFd<'_>) -> Result<u32, Error> {
        // A client that never reads cannot hold us in `sendmsg`.
        sys::set_timeouts(stream.as_fd(), DEFAULT_TIMEOUT).map_err(io_err("setsockopt"))?;
        let cred = sys::peer_cred(stream.as_fd()).map_err(io_err("getsockopt(SO_PEERCRED)"))?;
        let me = sys::geteuid();
        if !self.allow_any_uid && cred.uid != me {
            return Err(Error::ForeignPeer {
                expected: me,
                found: cred.uid,
            });
        }
        send_fds(stream, &[fd]).map_err(io_err("sendmsg"))?;
        Ok(cred.pid as u32)
    }
}

impl Server {
    /// Serves `fd` to every client that connects, from a thread of its own, until the
    /// returned [`Serving`] is dropped (or [`Serving::stop`]): an operator's read-only
    /// look (`shm-demo ls --socket`) and any number of consumers each get the memfd,
    /// none takes another's place. A client of another uid (unless
    /// [`allow_any_uid`](Self::allow_any_uid)) or one that fails is skipped and counted.
    ///
    /// # Errors
    /// [`Error::Io`] if the thread cannot be started.
    pub fn serve_background(self, fd: OwnedFd) -> Result<Serving, Error> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let counts = std::sync::Arc::new([
            std::sync::atomic::AtomicU64::new(0),
            std::sync::atomic::AtomicU64::new(0),
        ]);
        let (s2, c2) = (std::sync::Arc::clone(&stop), std::sync::Arc::clone(&counts));
        let thread = std::thread::Builder::new()
            .name("shm-memfd-serve".into())
            .spawn(move || {
                use std::sync::atomic::Ordering;
                // Relaxed: a flag polled every 50 ms; nothing is published through it.
                while !s2.load(Ordering::Relaxed) {
                    match self.serve_one_timeout(&fd, Duration::from_millis(50)) {
                        // Relaxed (both): counts for display.
                        Ok(_) => c2[0].fetch_add(1, Ordering::Relaxed),
                        Err(Error::Timeout(_)) => continue,
                        Err(_) => c2[1].fetch_add(1, Ordering::Relaxed),
                    };
                }
                // The server drops here, with the thread: its socket file goes.
            })
            .map_err(io_err("spawn"))?;
        Ok(Serving {
            stop,
            counts,
            thread: Some(thread),
        })
    }
}

/// A [`Server`] serving every client from a thread of its own
/// ([`Server::serve_background`]); dropping it stops the thread (within 50 ms) and
/// removes the socket file.
#[derive(Debug)]
pub struct Serving {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    counts: std::sync::Arc<[std::sync::atomic::AtomicU64; 2]>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Serving {
    /// Clients served so far. A client may already hold its fd a moment before it is
    /// counted here (the count follows the send); after [`stop`](Self::stop) it is final.
    pub fn served(&self) -> u64 {
        // Relaxed: a count for display.
        self.counts[0].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Clients refused or failed so far (another uid, a client that hung up).
    pub fn refused(&self) -> u64 {
        // Relaxed: as above.
        self.counts[1].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops serving and waits for the thread (within 50 ms; the socket file goes).
    pub fn stop(&mut self) {
        // Relaxed: polled by the thread every 50 ms.
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop();
    }
}

impl AsFd for Server {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Endpoint::Path(path) = &self.endpoint {
            // Best effort: someone may already have removed it.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Connects to the socket file `path`, receives the memfd and maps it (see [`receive`]),
/// within [`DEFAULT_TIMEOUT`].
pub fn connect(path: impl AsRef<Path>) -> Result<MemfdShm, Error> {
    connect_timeout(path, DEFAULT_TIMEOUT)
}

/// [`connect`], bounded by `timeout` for the connect and again for the receive:
/// [`Error::Timeout`] if the server's backlog stays full or it never sends.
pub fn connect_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<MemfdShm, Error> {
    use std::os::unix::ffi::OsStrExt;
    let stream = connect_stream(path.as_ref().as_os_str().as_bytes(), false, timeout)?;
    receive_timeout(&stream, false, timeout)
}

/// [`connect_timeout`] for a read-only mapping ([`MemfdShm::from_fd_read_only`]): for a
/// memfd made with [`MemfdOptions::read_only_peers`], or any memfd this process should
/// only read.
pub fn connect_read_only(path: impl AsRef<Path>, timeout: Duration) -> Result<MemfdShm, Error> {
    use std::os::unix::ffi::OsStrExt;
    let stream = connect_stream(path.as_ref().as_os_str().as_bytes(), false, timeout)?;
    let fd = receive_fd(&stream, false, timeout)?;
    MemfdShm::from_fd_read_only(fd)
}

/// Connects to `name` in the abstract namespace and receives the memfd, within
/// [`DEFAULT_TIMEOUT`].
pub fn connect_abstract(name: &str) -> Result<MemfdShm, Error> {
    let stream = connect_stream(name.as_bytes(), true, DEFAULT_TIMEOUT)?;
    receive_timeout(&stream, false, DEFAULT_TIMEOUT)
}

fn connect_stream(
    addr: &[u8],
    abstract_name: bool,
    timeout: Duration,
) -> Result<UnixStream, Error> {
    match sys::connect_unix(addr, abstract_name, timeout) {
        Ok(fd) => Ok(UnixStream::from(fd)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Error::Timeout(timeout)),
        Err(e) => Err(Error::Io {
            op: "connect",
            source: e,
        }),
    }
}

/// Receives exactly one fd on `stream` (close-on-exec), checks that the sender runs as our
/// uid (unless `allow_any_uid`), verifies the fd (see [`verify`]) and maps it. Waits at
/// most [`DEFAULT_TIMEOUT`] for the fd (it sets the stream's receive timeout).
pub fn receive(stream: &UnixStream, allow_any_uid: bool) -> Result<MemfdShm, Error> {
    receive_timeout(stream, allow_any_uid, DEFAULT_TIMEOUT)
}

/// [`receive`], waiting at most `timeout` for the fd (set as the stream's `SO_RCVTIMEO`
/// and `SO_SNDTIMEO`).
pub fn receive_timeout(
    stream: &UnixStream,
    allow_any_uid: bool,
    timeout: Duration,
) -> Result<MemfdShm, Error> {
    MemfdShm::from_fd(receive_fd(stream, allow_any_uid, timeout)?)
}

/// [`receive_timeout`] for a read-only mapping ([`MemfdShm::from_fd_read_only`]).
///
/// # Errors
/// As [`receive_timeout`].
pub fn receive_read_only_timeout(
    stream: &UnixStream,
    allow_any_uid: bool,
    timeout: Duration,
) -> Result<MemfdShm, Error> {
    MemfdShm::from_fd_read_only(receive_fd(stream, allow_any_uid, timeout)?)
}

/// Connects to the socket file `path` (bounded by `timeout` if the server's backlog is
/// full), for a caller that receives with [`receive_timeout`] itself: a binding that
/// waits in slices, say.
///
/// # Errors
/// [`Error::Io`] (no such socket, refused), [`Error::Timeout`].
pub fn connect_stream_timeout(
    path: impl AsRef<Path>,
    timeout: Duration,
) -> Result<UnixStream, Error> {
    use std::os::unix::ffi::OsStrExt;
    connect_stream(path.as_ref().as_os_str().as_bytes(), false, timeout)
}

/// The checks and the receive that every `receive*` shares: timeouts, the peer's uid, one
/// fd.
fn receive_fd(
    stream: &UnixStream,
    allow_any_uid: bool,
    timeout: Duration,
) -> Result<OwnedFd, Error> {
    sys::set_timeouts(stream.as_fd(), timeout).map_err(io_err("setsockopt"))?;
    if !allow_any_uid {
        let cred = sys::peer_cred(stream.as_fd()).map_err(io_err("getsockopt(SO_PEERCRED)"))?;
        let me = sys::geteuid();
        if cred.uid != me {
            return Err(Error::ForeignPeer {
                expected: me,
                found: cred.uid,
            });
        }
    }
    recv_fd(stream)
}
