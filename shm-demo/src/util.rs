//! Sizes, durations, JSON output, errors and signals.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

/// A failure the demo reports on stderr: what went wrong, and what to do about it.
#[derive(Debug)]
pub struct Failure {
    pub what: String,
    pub hint: Option<String>,
    /// A command line the demo cannot run (exit status 2), not a run that failed (1).
    pub usage: bool,
    /// Its JSON line was printed already (a verifying command's result with its
    /// `problem`): `main` does not print an `{"error": ...}` line after it.
    pub reported: bool,
}

impl Failure {
    pub fn new(what: impl std::fmt::Display) -> Self {
        Failure {
            what: what.to_string(),
            hint: None,
            usage: false,
            reported: false,
        }
    }
    /// A command line the demo cannot run.
    pub fn usage(what: impl std::fmt::Display) -> Self {
        Failure {
            usage: true,
            ..Failure::new(what)
        }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// Parses `4GiB`, `64MiB`, `512KiB`, `4096`, `1G`, `10k` (binary units).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 4096, 64MiB, 4GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use B, KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[i])
    }
}

pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

/// A flat JSON object, built field by field.
#[derive(Default)]
pub struct Json(String);

impl Json {
    pub fn new() -> Self {
        Json(String::new())
    }
    fn key(&mut self, k: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        let _ = write!(self.0, "\"{k}\":");
    }
    pub fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        self.0.push('"');
        for c in v.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }
    pub fn num(mut self, k: &str, v: impl std::fmt::Display) -> Self {
        self.key(k);
        let _ = write!(self.0, "{v}");
        self
    }
    pub fn float(mut self, k: &str, v: f64) -> Self {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.0, "{v:.6}");
        } else {
            self.0.push_str("null");
        }
        self
    }
    /// Where it was measured: `cpu` (the model) and `cores` (the CPUs we may run on).
    pub fn machine(self) -> Self {
        self.str("cpu", &shm_core::os::cpu::model())
            .num("cores", shm_core::os::cpu::cores())
    }
    /// A value that is JSON already (`null`, an array, an object).
    pub fn raw(mut self, k: &str, json: &str) -> Self {
        self.key(k);
        self.0.push_str(json);
        self
    }

    /// `null` for `None`, else the string.
    pub fn opt_str(self, k: &str, v: Option<&str>) -> Self {
        match v {
            Some(v) => self.str(k, v),
            None => self.raw(k, "null"),
        }
    }

    pub fn bool(mut self, k: &str, v: bool) -> Self {
        self.key(k);
        self.0.push_str(if v { "true" } else { "false" });
        self
    }
    pub fn finish(mut self) -> String {
        if self.0.is_empty() {
            self.0.push('{');
        }
        self.0.push('}');
        self.0
    }
}

/// Reads `"key":number` from a flat JSON line.
pub fn json_num(line: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Set by the commands whose documented end is a signal (`write --hold`, `serve`): they
/// check [`interrupted`] in their loops and clean up on the way out, exiting 0. Every
/// other run is ended by the handler itself (see [`catch_signals`]).
static HOLDING: AtomicBool = AtomicBool::new(false);

/// Paths the demo made (POSIX segments as `/dev/shm/NAME`, socket files), for the signal
/// handler to remove: fixed slots of atomic bytes, so that the handler reads them without
/// a lock or an allocation.
const PATH_SLOTS: usize = 64;
const PATH_MAX: usize = 256;
struct PathSlot {
    used: AtomicBool,
    len: AtomicUsize,
    bytes: [AtomicU8; PATH_MAX],
}
static PATHS: [PathSlot; PATH_SLOTS] = [const {
    PathSlot {
        used: AtomicBool::new(false),
        len: AtomicUsize::new(0),
        bytes: [const { AtomicU8::new(0) }; PATH_MAX],
    }
}; PATH_SLOTS];

/// Remembers `path` for removal if a signal ends the run; [`forget_path`] when it is
/// removed the ordinary way. A path that does not fit (or a full table) is not
/// remembered: the ordinary cleanup still runs on every other way out.
pub fn remember_path(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let b = path.as_os_str().as_bytes();
    if b.len() >= PATH_MAX || b.contains(&0) {
        return;
    }
    for slot in &PATHS {
        if slot.used.load(Ordering::Relaxed) || slot.len.load(Ordering::Relaxed) != 0 {
            continue;
        }
        // Claim the slot through `len` (0 = free), then fill it, then publish it.
        if slot
            .len
            .compare_exchange(0, b.len(), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        for (d, &c) in slot.bytes.iter().zip(b) {
            d.store(c, Ordering::Relaxed);
        }
        slot.bytes[b.len()].store(0, Ordering::Relaxed);
        // Release: pairs with the handler's Acquire load of `used`.
        slot.used.store(true, Ordering::Release);
        return;
    }
}

/// The same, for a POSIX segment name (`/NAME` lives at `/dev/shm/NAME`).
pub fn remember_segment(name: &str) {
    let plain = name.trim_start_matches('/');
    remember_path(std::path::Path::new(&format!("/dev/shm/{plain}")));
}

/// Forgets a path removed the ordinary way.
pub fn forget_path(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let b = path.as_os_str().as_bytes();
    for slot in &PATHS {
        if slot.used.load(Ordering::Acquire)
            && slot.len.load(Ordering::Relaxed) == b.len()
            && slot
                .bytes
                .iter()
                .zip(b)
                .all(|(x, &c)| x.load(Ordering::Relaxed) == c)
        {
            slot.used.store(false, Ordering::Release);
            slot.len.store(0, Ordering::Release);
        }
    }
}

/// The same, for a POSIX segment name.
pub fn forget_segment(name: &str) {
    let plain = name.trim_start_matches('/');
    forget_path(std::path::Path::new(&format!("/dev/shm/{plain}")));
}

/// Marks this run as one that a signal ends normally (it checks [`interrupted`]).
/// Sends SIGTERM to `pid` (a child of ours: its handler removes what it made).
#[allow(unsafe_code)]
pub fn terminate(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) has no memory effects on us; the pid is a child we have not reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
}

pub fn hold_until_signal() {
    HOLDING.store(true, Ordering::Release);
}

#[allow(unsafe_code)]
extern "C" fn on_signal(sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
    if HOLDING.load(Ordering::Acquire) {
        return; // the holding loop sees the flag and cleans up
    }
    // Any other run ends here, within the signal's delivery: remove what the run made,
    // then `_exit` with 128 + the signal. Only async-signal-safe calls (unlink, _exit);
    // children die with us (they are started with PR_SET_PDEATHSIG = SIGKILL).
    for slot in &PATHS {
        // Acquire: pairs with the Release store in `remember_path`.
        if !slot.used.load(Ordering::Acquire) {
            continue;
        }
        let mut buf = [0u8; PATH_MAX];
        for (d, x) in buf.iter_mut().zip(slot.bytes.iter()) {
            *d = x.load(Ordering::Relaxed);
        }
        buf[PATH_MAX - 1] = 0;
        // SAFETY: `buf` is NUL-terminated (its last byte at least); unlink is
        // async-signal-safe and only reads the path.
        unsafe { libc::unlink(buf.as_ptr().cast()) };
    }
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(128 + sig) };
}

/// Installs the handler for SIGINT and SIGTERM. Commands that hold a segment until a
/// signal ([`hold_until_signal`]) see a flag and unwind (removing what they made, exit
/// 0); every other run (the exchange, stream, pingpong, broadcast, idle) is ended by the
/// handler at once: it removes the segments and sockets the run made, its children die
/// with it, and it exits with 130 (SIGINT) or 143 (SIGTERM).
#[allow(unsafe_code)]
pub fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only uses atomics and async-signal-safe calls; the
        // sigaction struct is fully initialised.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        Err(Failure::new("interrupted; cleaned up and stopped"))
    } else {
        Ok(())
    }
}

/// The string value of `key` in a flat JSON line made by [`Json`] (escapes kept as they
/// are: for messages to people).
pub fn json_str(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let rest = &line[line.find(&pat)? + pat.len()..];
    let mut end = 0;
    let bytes = rest.as_bytes();
    while end < bytes.len() {
        match bytes[end] {
            b'\\' => end += 2,
            b'"' => return Some(rest[..end].to_owned()),
            _ => end += 1,
        }
    }
    None
}

/// The JSON line a peer prints when its role fails.
pub fn error_line(f: &Failure) -> String {
    Json::new().str("error", &f.what).finish()
}

/// The report line of a second process whose only result is whether it finished:
/// `{"pid":N}`, or `{"error":"..."}` ([`parse_peer_line`] reads either).
pub fn outcome_line<E: std::fmt::Display>(r: std::result::Result<(), E>) -> String {
    match r {
        Ok(()) => Json::new().num("pid", std::process::id()).finish(),
        Err(e) => Json::new().str("error", &e.to_string()).finish(),
    }
}

/// Turns a peer's line into a result, or its error into ours.
pub fn parse_peer_line(line: &str) -> Result<()> {
    if let Some(i) = line.find("\"error\":\"") {
        let rest = &line[i + 9..];
        return Err(Failure::new(format!(
            "the peer failed: {}",
            rest.trim_end_matches("\"}")
        )));
    }
    if !line.starts_with('{') {
        return Err(Failure::new(format!(
            "the peer sent no result (got {line:?})"
        )));
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (the bridge's endpoints and the Zenoh measurements).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Failure::new(format!("no free port on 127.0.0.1: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| Failure::new(e.to_string()))?
        .port())
}

/// Ends a verifying command: prints its JSON line (with the machine and, if any, the
/// problem) or its text line (given the verdict, "ok" or "NOT VERIFIED: why"), then
/// fails with the problem if there was one.
pub fn conclude(
    json: bool,
    line: Json,
    text: impl FnOnce(&str) -> String,
    problem: Option<String>,
) -> Result<()> {
    if json {
        let mut j = line.bool("verified", problem.is_none()).machine();
        if let Some(p) = &problem {
            j = j.str("problem", p);
        }
        println!("{}", j.finish());
    } else {
        let verdict = match &problem {
            None => "all accounted for".to_owned(),
            Some(p) => format!("NOT VERIFIED: {p}"),
        };
        println!("{}", text(&verdict));
    }
    match problem {
        None => Ok(()),
        Some(p) => Err(Failure {
            reported: json,
            ..Failure::new(p)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10k"), Ok(10240));
        assert!(parse_size("4XB").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
        assert_eq!(fmt_bytes(4 << 30), "4.00 GiB");
        assert_eq!(fmt_bytes(8192), "8.00 KiB");
    }

    #[test]
    fn json_is_built_and_read() {
        let j = Json::new()
            .str("backend", "po\"six")
            .num("n", 3)
            .bool("ok", true)
            .finish();
        assert_eq!(j, r#"{"backend":"po\"six","n":3,"ok":true}"#);
        assert_eq!(json_num(&j, "n"), Some(3.0));
        assert_eq!(json_str(&j, "backend").as_deref(), Some("po\\\"six"));
        assert_eq!(json_str(&j, "missing"), None);
    }
}
