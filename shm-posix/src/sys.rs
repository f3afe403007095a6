//! The raw calls shm-posix makes, each turned into an `io::Result` in one place.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

pub use shm_core::os::proc::effective_uid as geteuid;
pub use shm_core::os::sys::fstat;
use shm_core::os::sys::{cvt, ret_owned_fd};

/// `shm_open(name, flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, mode)`.
///
/// `O_NONBLOCK` because a peer can put a FIFO (or another special file) where a segment
/// should be, and opening a FIFO without it blocks until a writer appears. On a regular
/// file it changes nothing that we use. Callers check the type on the opened fd (`fstat`),
/// never on the name.
pub fn shm_open(name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string for the call; shm_open returns -1 or a new fd
    // that nothing else owns.
    unsafe {
        ret_owned_fd(libc::shm_open(
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            mode as libc::mode_t,
        ))
    }
}

/// `shm_unlink(name)`.
pub fn shm_unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is a valid C string for the call.
    cvt(unsafe { libc::shm_unlink(name.as_ptr()) }).map(drop)
}

/// `ftruncate(fd, len)`.
pub fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: `fd` is a live borrowed fd.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
}

/// `posix_fallocate(fd, 0, len)` (which returns its error instead of setting errno).
pub fn fallocate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: `fd` is a live borrowed fd.
    match unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        err => Err(io::Error::from_raw_os_error(err)),
    }
}

/// `pread(fd, buf, offset)`.
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `buf` is writable for its length; `fd` is live.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `flock(fd, LOCK_SH | LOCK_NB)`: `Ok(true)` if we got it (held for as long as the fd is
/// open), `Ok(false)` if someone holds an exclusive lock. Never blocks.
pub fn try_flock_shared(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: `fd` is live.
    match cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The pid holding an exclusive `flock` on the file behind `st`, from `/proc/locks`
/// (`N: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE 0 EOF`), if it can be learned.
pub fn flock_holder(st: &libc::stat) -> Option<u32> {
    let want = inode_key(st);
    let text = proc_locks()?;
    let pid = flock_lines(&text, &want)
        .find(|f| f[3] == "WRITE")
        .and_then(|f| f[4].parse().ok());
    pid
}

/// How many `flock` locks (shared or exclusive, one per open file description; waiters
/// not counted) are held on the file behind `st`, from `/proc/locks`, if it can be read
/// whole and consistent ([`proc_locks`]).
pub fn flock_count(st: &libc::stat) -> Option<usize> {
    let want = inode_key(st);
    let text = proc_locks()?;
    let n = flock_lines(&text, &want).count();
    Some(n)
}

/// The fields of every held `FLOCK` line of `text` (a `/proc/locks`) on inode `want`.
fn flock_lines<'a>(text: &'a str, want: &'a str) -> impl Iterator<Item = Vec<&'a str>> + 'a {
    text.lines()
        .filter(|l| !l.contains("->"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(move |f| f.len() >= 6 && f[1] == "FLOCK" && f[5] == want)
}

/// `/proc/locks` as one consistent listing, or `None` when it cannot be had.
///
/// The kernel walks its lock list afresh at every `read` call, resuming by position: a
/// listing read in several calls (`read_to_string` starts with a 32-byte probe) can show
/// a lock twice or miss one when locks come and go between the calls, which they do all
/// the time on a busy host. So the listing is read in calls of 1 MiB: one call that
/// returns it all (up to a page of text, one walk) is consistent; a longer listing is
/// read again until two reads agree (at most four tries).
pub fn proc_locks() -> Option<String> {
    use std::io::Read as _;
    let mut last: Option<String> = None;
    for _ in 0..4 {
        let mut f = std::fs::File::open("/proc/locks").ok()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0;
        let mut calls = 0;
        loop {
            if len == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = f.read(&mut buf[len..]).ok()?;
            if n == 0 {
                break;
            }
            len += n;
            calls += 1;
        }
        buf.truncate(len);
        let text = String::from_utf8(buf).ok()?;
        if calls <= 1 || last.as_ref() == Some(&text) {
            return Some(text);
        }
        last = Some(text);
    }
    None
}

/// `MAJ:MIN:INODE` as `/proc/locks` writes it.
fn inode_key(st: &libc::stat) -> String {
    format!(
        "{:02x}:{:02x}:{}",
        libc::major(st.st_dev),
        libc::minor(st.st_dev),
        st.st_ino
    )
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: `Ok(true)` if we got it (nobody else holds a lock).
pub fn try_flock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: `fd` is live.
    match cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}
