//! What is in `/dev/shm`: one walk of it, one test of whether an entry is ours, and
//! what is built on them (stale segments, listing, inspection, cleanup).

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::{normalize_name, sys, validate_name, Error, ShmOptions};

/// Whether the segment `name` is one of ours (a regular file that starts with the layout
/// magic) and no process holds it open through this crate.
///
/// Never blocks: the name is opened with `O_NONBLOCK`, its type is checked on the opened
/// fd (a FIFO or anything else but a regular file is not ours), and the lock is only
/// tried (`LOCK_NB`).
pub fn is_stale(name: &str) -> Result<bool, Error> {
    match open_checked(name)? {
        None => Ok(false),
        Some((_, fd)) => sys::try_flock_exclusive(fd.as_fd())
            .map_err(|e| Error::io("flock", &normalize_name(name), e)),
    }
}

/// The one test of whether an entry is ours: opens `name` read-only without blocking
/// (`sys::shm_open` adds `O_NONBLOCK`, so a FIFO a peer put there cannot hold us; the
/// type is judged on the opened fd, never on the directory entry a peer can swap) and
/// reads its first 8 bytes: `Some` (its C name and the fd) for a regular file that starts with our
/// layout's magic, `None` for anything else.
fn open_checked(name: &str) -> Result<Option<(CString, OwnedFd)>, Error> {
    let cname = validate_name(name)?;
    let name = normalize_name(name);
    let fd =
        sys::shm_open(&cname, libc::O_RDONLY, 0).map_err(|e| Error::io("shm_open", &name, e))?;
    let st = sys::fstat(fd.as_fd()).map_err(|e| Error::io("fstat", &name, e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(None);
    }
    let mut magic = [0u8; 8];
    let n = sys::pread(fd.as_fd(), &mut magic, 0).map_err(|e| Error::io("pread", &name, e))?;
    Ok((n == 8 && magic == shm_core::format::layout::MAGIC).then_some((cname, fd)))
}

/// Every name in `/dev/shm` that starts with `prefix` (normalised; `"/"` for all) and is
/// a valid segment name, sorted: the one walk of the directory. What each entry is gets
/// judged later, on the opened file.
fn entries(prefix: &str) -> Result<Vec<String>, Error> {
    let prefix = normalize_name(prefix);
    let dir = std::fs::read_dir("/dev/shm").map_err(|e| Error::io("read_dir", "/dev/shm", e))?;
    let mut names: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(|s| format!("/{s}")))
        .filter(|n| n.starts_with(&prefix) && validate_name(n).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Whether `/dev/shm/NAME` is (still) the file open as `fd`: same device and inode.
pub(crate) fn names_this_file(name: &str, fd: BorrowedFd<'_>) -> bool {
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

/// [`open_checked`] for a caller that only needs "ours or not".
fn open_ours(name: &str) -> Option<(CString, OwnedFd)> {
    open_checked(name).ok().flatten()
}

/// Whether `name` is a regular file that starts with our layout's magic.
fn has_our_magic(name: &str) -> bool {
    open_ours(name).is_some()
}

/// The names of our segments in `/dev/shm` that start with `prefix` (`"/"` for all) and
/// that no live process holds. Each entry's type is judged on its opened fd by
/// [`is_stale`], never on the directory entry, which a peer can swap after we read it.
pub fn list_stale(prefix: &str) -> Result<Vec<String>, Error> {
    Ok(entries(prefix)?
        .into_iter()
        .filter(|name| matches!(is_stale(name), Ok(true)))
        .collect())
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
    // Asked before we open it: our own handle holds the shared lock too. Only a file of
    // ours can be held through this library: a foreign file (no magic) never is (it was
    // reported held because "not stale" was read as "held").
    let held = match open_checked(&name) {
        Ok(Some((_, fd))) => matches!(sys::try_flock_exclusive(fd.as_fd()), Ok(false)),
        _ => false,
    };
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
    out.held = held;
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
    let mut all = Vec::new();
    for file in entries(prefix)? {
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
