//! Hostile peers and crashes against named POSIX segments, with real processes doing the
//! damage.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use shm_core::testing::{
    assert_counts_unchanged, assert_success, dev_shm_entries, fd_count, results, spawn_self,
    unique_name, MyData, ROLE_VAR, TUTORIAL,
};
use shm_core::{AttachOptions, Error as CoreError, Segment};
use shm_posix::{Error, Reserve, ShmOptions};

fn path(name: &str) -> String {
    format!("/dev/shm{name}")
}

/// Child processes: each does its damage (or dies at its step) and exits.
#[test]
#[ignore = "entry point for child processes spawned by the other tests"]
fn child() {
    let role = std::env::var(ROLE_VAR).expect("run by spawn_self");
    let name = std::env::var("SHM_NAME").unwrap_or_default();
    let cname = std::ffi::CString::new(name.clone()).unwrap();
    let die = || {
        // SAFETY: SIGKILL to ourselves: the process ends here, as a crash would.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        unreachable!()
    };
    match role.as_str() {
        "die-after-open" => {
            // SAFETY: shm_open with a valid C string; the fd is leaked on purpose (we die).
            let fd = unsafe {
                libc::shm_open(
                    cname.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                    0o600,
                )
            };
            assert!(fd >= 0);
            die();
        }
        "die-after-size" => {
            // SAFETY: as above, then ftruncate on the fd we just got.
            unsafe {
                let fd = libc::shm_open(
                    cname.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                    0o600,
                );
                assert!(fd >= 0);
                assert_eq!(libc::ftruncate(fd, 1 << 20), 0);
            }
            die();
        }
        "die-during-init" => {
            // The library creates the segment; we then put the header back to "initialising"
            // as it is between writing the fields and storing `ready`, and die there.
            let mut shm = ShmOptions::new(&name).size(1 << 20).create().unwrap();
            shm.persist();
            let seg = Segment::create(shm, &TUTORIAL).unwrap();
            shm_core::conformance::poke(
                seg.raw().memory(),
                shm_core::format::layout::READY_OFFSET,
                &0u32.to_ne_bytes(),
            );
            die();
        }
        "die-after-ready" => {
            let mut shm = ShmOptions::new(&name).size(1 << 20).create().unwrap();
            shm.persist();
            let _seg = Segment::create(shm, &TUTORIAL).unwrap();
            die();
        }
        "truncate" => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path(&name))
                .unwrap();
            f.set_len(4096).unwrap();
        }
        "dev-shm-full" => dev_shm_full(),
        "soak" => {
            let prefix = unique_name("/shm-posix-soak");
            let fds = fd_count();
            for i in 0..100_000 {
                let name = format!("{prefix}-{}", i % 16);
                let seg = Segment::create(
                    ShmOptions::new(&name).size(8192).create().unwrap(),
                    &TUTORIAL,
                )
                .unwrap();
                let other =
                    Segment::<MyData, _>::attach(ShmOptions::new(&name).open().unwrap()).unwrap();
                assert_eq!(other.read().unwrap(), TUTORIAL);
                drop(seg);
            }
            println!(
                "RESULT {fds} {} 0 {}",
                fd_count(),
                dev_shm_entries(&prefix[1..]).len()
            );
        }
        other => panic!("unknown role {other}"),
    }
}

/// A file with no header that nobody else holds (another program's, or one whose maker
/// died before writing it) is refused at once, whatever the ready timeout; the same file
/// while another handle holds it (a creator of ours between sizing and `ready`) is waited
/// for, bounded.
#[test]
fn no_header_and_no_other_holder_is_refused_without_waiting() {
    // Made as another program makes it: shm_open + ftruncate, no flock, then closed.
    let name = foreign_segment("/shm-posix-nohdr");
    let _unlink = Unlink(name.clone());
    // An hour of ready timeout: a wait would end in `NotReady` (or the test's own limit),
    // never in `BadMagic`.
    let long = AttachOptions::new().ready_timeout(Duration::from_secs(3600));
    for _ in 0..3 {
        let err = Segment::<MyData, _>::attach_with(ShmOptions::new(&name).open().unwrap(), &long)
            .unwrap_err();
        assert!(
            matches!(err, CoreError::BadMagic { found, .. } if found == [0; 8]),
            "{err:?}"
        );
    }
    // Every kind refuses it the same way.
    let err = shm_core::Channel::attach(ShmOptions::new(&name).open().unwrap()).unwrap_err();
    assert!(matches!(err, CoreError::BadMagic { .. }), "{err:?}");
    // Another handle holds it: waited for.
    let held = ShmOptions::new(&name).open().unwrap();
    let ready_timeout = Duration::from_millis(50);
    let quick = AttachOptions::new().ready_timeout(ready_timeout);
    let err = Segment::<MyData, _>::attach_with(ShmOptions::new(&name).open().unwrap(), &quick)
        .unwrap_err();
    assert!(
        matches!(err, CoreError::NotReady { creator_pid: 0, waited } if waited >= ready_timeout),
        "{err:?}"
    );
    drop(held);
}

/// A header-less segment nobody else holds, as another program leaves it: its name.
fn foreign_segment(prefix: &str) -> String {
    let name = unique_name(prefix);
    let cname = std::ffi::CString::new(name.clone()).unwrap();
    // SAFETY: shm_open with a valid C string; ftruncate and close on the fd it gave.
    unsafe {
        let fd = libc::shm_open(
            cname.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        );
        assert!(fd >= 0);
        assert_eq!(libc::ftruncate(fd, 1 << 16), 0);
        libc::close(fd);
    }
    name
}

/// Removes a name from /dev/shm when dropped.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = shm_posix::unlink(&self.0);
    }
}

/// The refusal of a foreign segment reads the kernel's lock table, which other processes
/// change all the time. A listing read in pieces could show our own lock twice (or hide
/// one): the attach then took the memory for held and waited its whole ready timeout (the
/// CI host hung for an hour in the test above). Here two threads take and drop locks on
/// files of their own as fast as they can while the attach is refused 300 times: each
/// must be `BadMagic`, never a wait that ends in `NotReady`.
#[test]
fn a_busy_lock_table_does_not_turn_a_refusal_into_a_wait() {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let name = foreign_segment("/shm-posix-busylocks");
    let _unlink = Unlink(name.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..2)
        .map(|k| {
            let stop = Arc::clone(&stop);
            let own = unique_name(&format!("/shm-posix-churn{k}"));
            std::thread::spawn(move || {
                let _unlink = Unlink(own.clone());
                let f = std::fs::File::create(path(&own)).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: flock on a file we hold open.
                    unsafe {
                        libc::flock(f.as_raw_fd(), libc::LOCK_SH);
                        libc::flock(f.as_raw_fd(), libc::LOCK_UN);
                    }
                }
            })
        })
        .collect();
    // Long enough that a wrong "held" ends in `NotReady`, not in the test's own limit.
    let opts = AttachOptions::new().ready_timeout(Duration::from_secs(5));
    let mut outcomes = Vec::new();
    for _ in 0..300 {
        let err = Segment::<MyData, _>::attach_with(ShmOptions::new(&name).open().unwrap(), &opts)
            .unwrap_err();
        let refused = matches!(err, CoreError::BadMagic { found, .. } if found == [0; 8]);
        outcomes.push((refused, err));
        if !refused {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in churn {
        t.join().unwrap();
    }
    let wrong: Vec<_> = outcomes.iter().filter(|(ok, _)| !ok).collect();
    assert!(
        wrong.is_empty(),
        "refused {} times, then {wrong:?}",
        outcomes.len() - 1
    );
    assert_eq!(outcomes.len(), 300);
}

#[test]
fn crash_at_every_lifecycle_step_gives_errors_not_hangs() {
    let quick = AttachOptions::new().ready_timeout(Duration::from_millis(100));
    let prefix = unique_name("/shm-posix-crash");
    let mut names = Vec::new();
    for step in [
        "die-after-open",
        "die-after-size",
        "die-during-init",
        "die-after-ready",
    ] {
        let name = format!("{prefix}-{step}");
        let out = spawn_self("child", step, &[("SHM_NAME", &name)], "");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(libc::SIGKILL),
            "{step}"
        );
        names.push(name);
    }
    // After shm_open: an empty object.
    assert!(matches!(
        ShmOptions::new(&names[0]).open(),
        Err(Error::Empty { .. })
    ));
    // After sizing: zeroes, never initialised, and no handle but ours: no creator of ours
    // is writing a header (each holds its flock while it does), so refused at once.
    let err = Segment::<MyData, _>::attach_with(ShmOptions::new(&names[1]).open().unwrap(), &quick)
        .unwrap_err();
    assert!(
        matches!(err, CoreError::BadMagic { found, .. } if found == [0; 8]),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a segment of ours"), "{err}");
    // Held by another handle, as a creator in progress would hold it: the bounded wait.
    let held = ShmOptions::new(&names[1]).open().unwrap();
    let err = Segment::<MyData, _>::attach_with(ShmOptions::new(&names[1]).open().unwrap(), &quick)
        .unwrap_err();
    assert!(
        matches!(err, CoreError::NotReady { creator_pid: 0, .. }),
        "{err:?}"
    );
    drop(held);
    // During header init: the creator's pid is recorded and dead.
    let err = Segment::<MyData, _>::attach_with(ShmOptions::new(&names[2]).open().unwrap(), &quick)
        .unwrap_err();
    assert!(matches!(err, CoreError::CreatorDied { .. }), "{err:?}");
    assert!(
        err.to_string().contains("died during initialisation"),
        "{err}"
    );
    // After ready: the data is whole.
    let seg = Segment::<MyData, _>::attach(ShmOptions::new(&names[3]).open().unwrap()).unwrap();
    assert_eq!(seg.read().unwrap(), TUTORIAL);
    // The cleaner removes the three dead ones of ours, leaves the one we hold, and never
    // touches the empty or unsized object it cannot recognise as ours (no magic).
    let removed = shm_posix::remove_stale(&prefix).unwrap();
    assert_eq!(
        removed,
        [names[2].clone()],
        "only dead segments of ours are removed"
    );
    drop(seg);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !shm_posix::list_stale(&prefix).unwrap().contains(&names[3]) {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        shm_posix::remove_stale(&prefix).unwrap(),
        [names[3].clone()]
    );
    for n in &names[..2] {
        shm_posix::unlink(n).unwrap();
    }
    assert!(dev_shm_entries(&prefix[1..]).is_empty());
}

#[test]
fn segment_truncated_by_another_process_is_refused_at_open() {
    let name = unique_name("/shm-posix-shrink");
    let seg = Segment::create(
        ShmOptions::new(&name).size(1 << 20).create().unwrap(),
        &TUTORIAL,
    )
    .unwrap();
    let out = spawn_self("child", "truncate", &[("SHM_NAME", &name)], "");
    assert_success(&out);
    let err = Segment::<MyData, _>::attach(ShmOptions::new(&name).open().unwrap()).unwrap_err();
    assert_eq!(
        err,
        CoreError::Truncated {
            claimed: 1 << 20,
            mapped: 4096
        }
    );
    // Our own mapping of the first page is still good; past it is what the docs warn of
    // (POSIX segments need a trusted peer; memfd seals make this impossible).
    assert_eq!(seg.read().unwrap(), TUTORIAL);
}

#[test]
fn squatted_names_are_never_written() {
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 9) as u8)
        .collect();
    // Foreign data.
    let name = unique_name("/shm-posix-squat");
    std::fs::write(path(&name), &random).unwrap();
    let err = ShmOptions::new(&name).size(8192).create().unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(
        std::fs::read(path(&name)).unwrap(),
        random,
        "the squatter's bytes are untouched"
    );
    // A file owned by another uid (we are root in CI; elsewhere chown fails and the
    // exclusive create is checked on our own file only).
    let owned = std::fs::metadata(path(&name)).unwrap();
    let chowned = std::os::unix::fs::chown(path(&name), Some(4242), Some(4242)).is_ok();
    if !chowned {
        // SAFETY: geteuid cannot fail.
        assert_ne!(unsafe { libc::geteuid() }, 0, "root must be able to chown");
        eprintln!("skipped: a file owned by another uid needs root to make (chown)");
    }
    if chowned {
        let err = ShmOptions::new(&name).size(8192).create().unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
        let err = ShmOptions::new(&name).open().unwrap_err();
        assert!(
            matches!(err, Error::ForeignOwner { owner: 4242, .. }),
            "{err:?}"
        );
        let (_, created) = ShmOptions::new(&name)
            .allow_foreign(true)
            .open_or_create()
            .unwrap();
        assert!(!created);
    }
    assert_eq!(std::fs::metadata(path(&name)).unwrap().size(), owned.size());
    assert_eq!(std::fs::read(path(&name)).unwrap(), random);
    shm_posix::unlink(&name).unwrap();
}

/// In a private mount namespace with a 1 MiB tmpfs on /dev/shm.
fn dev_shm_full() {
    // SAFETY: unshare and mount with valid arguments; this child process is the only one
    // that sees the new namespace.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            println!("RESULT cannot unshare: {}", std::io::Error::last_os_error());
            return;
        }
        let root = std::ffi::CString::new("/").unwrap();
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0
        );
        let (src, dst, fs, opts) = (
            std::ffi::CString::new("tmpfs").unwrap(),
            std::ffi::CString::new("/dev/shm").unwrap(),
            std::ffi::CString::new("tmpfs").unwrap(),
            std::ffi::CString::new("size=1m").unwrap(),
        );
        assert_eq!(
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                fs.as_ptr(),
                0,
                opts.as_ptr().cast()
            ),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
    }
    // A 4 MiB segment reserved in full: no space, at create, and nothing left behind.
    let name = unique_name("/shm-posix-full");
    match ShmOptions::new(&name)
        .size(4 << 20)
        .reserve(Reserve::All)
        .create()
    {
        Err(e @ Error::NoSpace { .. }) => println!("RESULT full: {e}"),
        other => println!("RESULT unexpected: {other:?}"),
    }
    println!("RESULT left {}", dev_shm_entries("").len());
    // Fill the tmpfs, then even the default 64 KiB reservation fails at create.
    let filler = Segment::create(
        ShmOptions::new(unique_name("/fill"))
            .size(1 << 20)
            .reserve(Reserve::None)
            .create()
            .unwrap(),
        &0u8,
    )
    .unwrap();
    let _ = filler.write_at(0, &vec![1u8; (1 << 20) - 256]);
    match ShmOptions::new(&name).size(1 << 20).create() {
        Err(e @ Error::NoSpace { .. }) => println!("RESULT default: {e}"),
        other => println!("RESULT unexpected: {other:?}"),
    }
    drop(filler);
    println!("RESULT left {}", dev_shm_entries("").len());
}

#[test]
fn full_dev_shm_fails_at_create_without_sigbus() {
    let out = spawn_self("child", "dev-shm-full", &[], "");
    assert_success(&out);
    let r = results(&out);
    if r.first().is_some_and(|l| l.starts_with("cannot unshare")) {
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_ne!(euid, 0, "root must be able to unshare: {r:?}");
        eprintln!("skipped: a private mount namespace needs root ({})", r[0]);
        return;
    }
    assert_eq!(r.len(), 4, "{r:?}");
    assert!(
        r[0].starts_with("full: no space in /dev/shm to reserve 4194304 bytes"),
        "{r:?}"
    );
    assert_eq!(r[1], "left 0", "nothing left behind after a failed create");
    assert!(
        r[2].starts_with("default: no space in /dev/shm to reserve 65536 bytes"),
        "{r:?}"
    );
    assert_eq!(r[3], "left 0");
}

#[test]
fn soak_100_000_cycles_leave_fds_and_dev_shm_unchanged() {
    let out = spawn_self("child", "soak", &[], "");
    assert_counts_unchanged(&out, &["fds", "/dev/shm entries"]);
}
