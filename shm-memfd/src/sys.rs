//! The raw calls shm-memfd makes: fcntl, fstat, SO_PEERCRED, poll, and `SCM_RIGHTS`
//! receiving.
//!
//! Sending uses the `sendfd` crate. Receiving does not: `sendfd` calls `recvmsg` without
//! `MSG_CMSG_CLOEXEC` (so a received fd leaks into any child we exec before we set the
//! flag) and ignores `MSG_CTRUNC` (so a truncated message looks like "no fd"). Our
//! `recv_fd` fixes both and owns every fd the moment it arrives.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use sendfd::SendWithFd;
pub use shm_core::os::proc::effective_uid as geteuid;
use shm_core::os::sys::cvt;
pub use shm_core::os::sys::fstat;

use crate::Error;

/// `F_SEAL_FUTURE_WRITE` (Linux 5.1), not in every libc release.
pub const F_SEAL_FUTURE_WRITE: libc::c_int = 0x0010;

/// `fcntl(fd, F_GETFL)`.
pub fn fcntl_getfl(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: F_GETFL on a live fd takes no further argument.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })
}

/// `fcntl(fd, F_ADD_SEALS, seals)`.
pub fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: F_ADD_SEALS on a live fd takes an int argument.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// `fcntl(fd, F_GET_SEALS)`.
pub fn get_seals(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: F_GET_SEALS on a live fd takes no further argument.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })
}

/// Names of the seals in `seals`, for error messages.
pub fn seal_names(seals: libc::c_int) -> String {
    let names: Vec<&str> = [
        (libc::F_SEAL_SEAL, "seal"),
        (libc::F_SEAL_SHRINK, "shrink"),
        (libc::F_SEAL_GROW, "grow"),
        (libc::F_SEAL_WRITE, "write"),
        (F_SEAL_FUTURE_WRITE, "future-write"),
    ]
    .iter()
    .filter(|(bit, _)| seals & bit != 0)
    .map(|&(_, name)| name)
    .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// What `/proc/self/fd/N` points at (`/memfd:name (deleted)` for a memfd).
pub fn fd_path(fd: BorrowedFd<'_>) -> io::Result<String> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
}

/// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`.
pub fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid out-pointers of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(cred)
}

/// Waits until `fd` is readable (a listener: a client is waiting), at most `timeout`.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: one valid pollfd.
        match cvt(unsafe { libc::poll(&mut pfd, 1, ms) }) {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `setsockopt(SO_SNDTIMEO)` and `setsockopt(SO_RCVTIMEO)` to `timeout` (at least 1 µs:
/// zero would mean "no timeout" to the kernel). A blocking `connect` (a full backlog),
/// `sendmsg` or `recvmsg` on the socket then fails with `EAGAIN` after that long.
pub fn set_timeouts(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    let t = timeout.max(Duration::from_micros(1));
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    for opt in [libc::SO_SNDTIMEO, libc::SO_RCVTIMEO] {
        // SAFETY: `tv` is a valid timeval of the size given, for the call.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })?;
    }
    Ok(())
}

/// A Unix stream socket connected to `path` (a file path) or, with `abstract_name`, to
/// that name in the abstract namespace; close-on-exec, with [`set_timeouts`] applied
/// *before* `connect`, so that a listener whose backlog is full cannot block us past
/// `timeout`.
pub fn connect_unix(addr: &[u8], abstract_name: bool, timeout: Duration) -> io::Result<OwnedFd> {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let start = usize::from(abstract_name);
    // A path needs room for its terminating NUL; an abstract name has its leading one.
    let room = sa.sun_path.len() - usize::from(!abstract_name);
    if addr.is_empty() || start + addr.len() > room || (!abstract_name && addr.contains(&0)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket address empty, too long or containing NUL",
        ));
    }
    for (i, &b) in addr.iter().enumerate() {
        sa.sun_path[start + i] = b as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + start + addr.len();
    // SAFETY: socket returns -1 or a new fd that nothing else owns.
    let fd = unsafe {
        shm_core::os::sys::ret_owned_fd(libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        ))
    }?;
    set_timeouts(fd.as_fd(), timeout)?;
    loop {
        // SAFETY: `sa` is a valid sockaddr_un of at least `len` bytes.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_un).cast(),
                len as libc::socklen_t,
            )
        };
        match cvt(rc) {
            Ok(_) => return Ok(fd),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Sends one byte with `fds` attached (`SCM_RIGHTS`). The fds are borrowed: the kernel
/// duplicates them into the message.
pub fn send_fds(stream: &UnixStream, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let raw: Vec<_> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    stream.send_with_fd(&[1u8], &raw).map(drop)
}

/// The receive timeout set on `stream` (for the error message).
fn receive_timeout(stream: &UnixStream) -> Duration {
    stream.read_timeout().ok().flatten().unwrap_or_default()
}

/// Room for this many fds in the control buffer: one is expected, the rest is there so
/// that extra fds are received (and closed) rather than silently truncated.
const FD_ROOM: usize = 8;

/// Receives one message and exactly one fd from `stream`, with `MSG_CMSG_CLOEXEC`.
///
/// Every fd that arrives is owned (an `OwnedFd`) before anything else is looked at, so
/// every error path closes them. `MSG_CTRUNC`, no fd, or more than one fd is an error.
pub fn recv_fd(stream: &UnixStream) -> Result<OwnedFd, Error> {
    // u64s keep the buffer aligned for cmsghdr.
    let mut control = [0u64; 64];
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space =
        unsafe { libc::CMSG_SPACE((FD_ROOM * std::mem::size_of::<libc::c_int>()) as u32) } as usize;
    assert!(space <= std::mem::size_of_val(&control));
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: `msg` points at live buffers of the lengths it states.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            // SO_RCVTIMEO ran out (see `set_timeouts`).
            return Err(Error::Timeout(receive_timeout(stream)));
        }
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(Error::Io {
                op: "recvmsg",
                source: e,
            });
        }
    };
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within
    // msg_controllen, and each SCM_RIGHTS payload holds `(cmsg_len - CMSG_LEN(0)) / 4`
    // fds that the kernel just installed in our table and nobody else owns.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                let bytes = ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                    let fd = data.add(i).read_unaligned();
                    if fd >= 0 {
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(Error::ControlTruncated {
            received: fds.len(),
        });
    }
    match fds.len() {
        0 if n == 0 => Err(Error::PeerClosed),
        0 => Err(Error::NoFd),
        1 => Ok(fds.pop().expect("one fd")),
        count => Err(Error::TooManyFds { count }),
    }
}
