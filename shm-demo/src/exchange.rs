//! The tutorial's exchange: one command on every backend, or writer and reader in two
//! terminals.

use crate::cli::Ctx;
use crate::role::{Role, RoleArgs};
use std::path::Path;
use std::time::{Duration, Instant};

use shm_core::format::memory::resident_bytes;
use shm_core::{Record, Segment, SharedMemory};
use shm_posix::ShmOptions;

use crate::errors;
use crate::host::{self, Backend, Mem};
use crate::record::{MyData, MyDataV2, TUTORIAL};
use crate::util::{
    check_interrupted, error_line, fmt_bytes, fmt_duration, interrupted, json_num, Failure, Json,
    Result,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaArg {
    V1,
    V2,
}

/// Attaches as the tutorial's reader and reports the record and the attach time.
pub fn read_role(mem: Mem) -> String {
    let t = Instant::now();
    match Segment::<MyData, _>::attach(mem) {
        Ok(seg) => {
            let attach = t.elapsed();
            let v = match seg.read() {
                Ok(v) => v,
                Err(e) => return error_line(&errors::core(e)),
            };
            Json::new()
                .num("pid", std::process::id())
                .num("attach_ns", attach.as_nanos())
                .num("col1", v.col1)
                .num("col2", v.col2)
                .num("col3", v.col3)
                .finish()
        }
        Err(e) => error_line(&errors::core(e)),
    }
}

struct Row {
    backend: Backend,
    mapped: u64,
    resident: u64,
    create: Duration,
    write: Duration,
    attach: Duration,
    writer_pid: u32,
    reader_pid: u32,
    record: MyData,
}

fn exchange_one(backend: Backend, size: u64) -> Result<Row> {
    let t = Instant::now();
    let mem = host::create(backend, size)?;
    let create = t.elapsed();
    let t = Instant::now();
    let seg = Segment::create(mem, &TUTORIAL)?;
    let write = t.elapsed();
    check_interrupted()?;
    let peer = host::start_peer(
        backend,
        seg.raw().memory(),
        RoleArgs::new(Role::Read),
        |_, m| read_role(m),
    )?;
    let reader_pid = peer.pid();
    let line = peer.finish()?;
    crate::util::parse_peer_line(&line)?;
    let field = |k| json_num(&line, k).unwrap_or(0.0) as u64;
    let record = MyData {
        col1: field("col1"),
        col2: field("col2"),
        col3: field("col3"),
    };
    let resident =
        resident_bytes(seg.raw().memory()).map_err(|e| Failure::new(format!("mincore: {e}")))?;
    Ok(Row {
        backend,
        mapped: seg.raw().memory().len() as u64,
        resident,
        create,
        write,
        attach: Duration::from_nanos(field("attach_ns")),
        writer_pid: std::process::id(),
        reader_pid,
        record,
    })
}

fn how(backend: Backend) -> &'static str {
    match backend {
        Backend::Posix => "spawned, opened the name",
        Backend::Anon => "forked, inherited the mapping",
        Backend::Memfd => "spawned, received the fd over a socket",
    }
}

/// The one-command exchange on each of `backends`.
pub fn run(backends: &[Backend], size: u64, json: bool) -> Result<()> {
    if size < 4096 {
        return Err(Failure::new(format!("--size {size} is too small"))
            .hint("the segment needs at least 4096 bytes"));
    }
    let mut rows = Vec::new();
    for &b in backends {
        check_interrupted()?;
        let row = exchange_one(b, size)?;
        let ok = row.record == TUTORIAL;
        if json {
            println!(
                "{}",
                Json::new()
                    .str("backend", b.name())
                    .num("mapped_bytes", row.mapped)
                    .num("resident_bytes", row.resident)
                    .num("create_ns", row.create.as_nanos())
                    .num("write_ns", row.write.as_nanos())
                    .num("attach_ns", row.attach.as_nanos())
                    .num("writer_pid", row.writer_pid)
                    .num("reader_pid", row.reader_pid)
                    .num("col1", row.record.col1)
                    .num("col2", row.record.col2)
                    .num("col3", row.record.col3)
                    .bool("ok", ok)
                    .finish()
            );
        } else {
            println!("== {}", b.name());
            println!(
                "writer  pid {:<7} created {} in {}, wrote {} in {}",
                row.writer_pid,
                fmt_bytes(row.mapped),
                fmt_duration(row.create),
                TUTORIAL,
                fmt_duration(row.write)
            );
            println!(
                "reader  pid {:<7} ({}) attached in {}, read {}",
                row.reader_pid,
                how(b),
                fmt_duration(row.attach),
                row.record
            );
            println!(
                "memory  mapped {}, resident {} ({:.5}% of the segment)",
                fmt_bytes(row.mapped),
                fmt_bytes(row.resident),
                100.0 * row.resident as f64 / row.mapped as f64
            );
        }
        if !ok {
            return Err(Failure::new(format!(
                "{}: the reader read {}, expected {}",
                b.name(),
                row.record,
                TUTORIAL
            )));
        }
        rows.push(row);
    }
    if !json && rows.len() > 1 {
        println!();
        println!(
            "{:<8} {:>10} {:>11} {:>10} {:>10} {:>10}  {:<16} match",
            "backend", "mapped", "resident", "create", "write", "attach", "record"
        );
        for r in &rows {
            println!(
                "{:<8} {:>10} {:>11} {:>10} {:>10} {:>10}  {:<16} {}",
                r.backend.name(),
                fmt_bytes(r.mapped),
                fmt_bytes(r.resident),
                fmt_duration(r.create),
                fmt_duration(r.write),
                fmt_duration(r.attach),
                format!("{} {} {}", r.record.col1, r.record.col2, r.record.col3),
                if r.record == TUTORIAL { "yes" } else { "NO" }
            );
        }
    }
    Ok(())
}

/// The tutorial's writer.
pub fn write(name: &str, size: u64, hold: bool, raw: bool, json: bool) -> Result<()> {
    if hold {
        crate::util::hold_until_signal();
    } else {
        crate::util::remember_segment(name);
    }
    let shm = ShmOptions::new(name)
        .size(size)
        .mode(if raw { 0o644 } else { 0o600 })
        .create()?;
    // The normalised name (`my_shm` is `/my_shm`), in everything we print.
    let name = shm.name().to_owned();
    let name = name.as_str();
    let seg = if raw {
        Segment::create_foreign(shm, &TUTORIAL)
    } else {
        Segment::create(shm, &TUTORIAL)
    }?;
    let raw_flag = if raw { " --raw" } else { "" };
    if json {
        println!(
            "{}",
            Json::new()
                .str("name", name)
                .num("size", size)
                .num("pid", std::process::id())
                .num("col1", TUTORIAL.col1)
                .num("col2", TUTORIAL.col2)
                .num("col3", TUTORIAL.col3)
                .bool("hold", hold)
                .bool("raw", raw)
                .finish()
        );
    } else if raw {
        println!(
            "wrote {TUTORIAL} to {name} ({}) the tutorial's way: at offset 0, no header",
            fmt_bytes(size)
        );
    } else {
        println!("wrote {TUTORIAL} to {name} ({})", fmt_bytes(size));
    }
    if hold {
        if !json {
            println!("holding {name} until Ctrl-C or SIGTERM; read it with: shm-demo --backend posix read --name {name}{raw_flag}");
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        while !interrupted() {
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(seg);
        if !json {
            println!("removed {name}");
        }
    } else {
        let mut shm = seg.into_memory();
        crate::util::forget_segment(name);
        shm.persist();
        if !json {
            println!(
                "left {name} for a reader: shm-demo --backend posix read --name {name}{raw_flag} --unlink"
            );
        }
    }
    Ok(())
}

fn print_record(v: &MyData, source: &str, json: bool) {
    if json {
        println!(
            "{}",
            Json::new()
                .str("source", source)
                .num("col1", v.col1)
                .num("col2", v.col2)
                .num("col3", v.col3)
                .finish()
        );
    } else {
        println!("read {v} from {source}");
    }
}

fn attach_and_read<M: shm_core::SharedMemory>(mem: M, schema: SchemaArg) -> Result<MyData> {
    fn read_as<T: Record + Into<MyData>, M: shm_core::SharedMemory>(mem: M) -> Result<MyData> {
        Ok(Segment::<T, _>::attach(mem)?.read()?.into())
    }
    match schema {
        SchemaArg::V1 => read_as::<MyData, M>(mem),
        SchemaArg::V2 => read_as::<MyDataV2, M>(mem),
    }
}

impl From<MyDataV2> for MyData {
    fn from(v: MyDataV2) -> Self {
        MyData {
            col1: v.col1,
            col2: v.col2,
            col3: v.col3,
        }
    }
}

/// The tutorial's reader.
pub fn read(name: &str, unlink: bool, schema: SchemaArg, raw: bool, json: bool) -> Result<()> {
    let shm = ShmOptions::new(name).open()?;
    let name = shm.name().to_owned();
    let v = if raw {
        Segment::<MyData, _>::attach_foreign(shm)
            .and_then(|seg| seg.read())
            .map_err(|e| match e {
                shm_core::Error::TooSmall { .. } => crate::util::Failure::new(e).hint(
                    "a segment without a header must hold MyData (three 64-bit integers) at offset 0",
                ),
                e => errors::core(e),
            })?
    } else {
        attach_and_read(shm, schema)?
    };
    print_record(&v, &name, json);
    if unlink {
        shm_posix::unlink(&name)?;
        if !json {
            println!("removed {name}");
        }
    }
    Ok(())
}

/// Serves a sealed memfd holding the tutorial's record.
pub fn serve(socket: &Path, size: u64, once: bool, json: bool) -> Result<()> {
    crate::util::hold_until_signal();
    let shm = shm_memfd::MemfdOptions::new()
        .name("shm-demo")
        .size(size)
        .create()?;
    let seg = Segment::create(shm, &TUTORIAL)?;
    let server = shm_memfd::Server::bind(socket)?;
    if !json {
        println!(
            "serving a sealed {} memfd holding {TUTORIAL} on {}; connect with: shm-demo --backend memfd connect --socket {}",
            fmt_bytes(size),
            socket.display(),
            socket.display()
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    while !interrupted() {
        match server.serve_one_timeout(seg.raw().memory(), Duration::from_millis(100)) {
            Ok(pid) => {
                if json {
                    println!(
                        "{}",
                        Json::new()
                            .str("event", "sent")
                            .num("client_pid", pid)
                            .finish()
                    );
                } else {
                    println!("sent the fd to pid {pid}");
                }
                if once {
                    break;
                }
            }
            Err(shm_memfd::Error::Timeout(_)) => {}
            Err(e) if matches!(e, shm_memfd::Error::Io { op: "poll", .. }) && interrupted() => {
                break
            }
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    if !json {
        println!("stopped; removed {}", socket.display());
    }
    Ok(())
}

/// Receives the memfd and prints the record.
pub fn connect(socket: &Path, json: bool) -> Result<()> {
    let shm = shm_memfd::connect(socket)?;
    let v = attach_and_read(shm, SchemaArg::V1)?;
    print_record(&v, &socket.display().to_string(), json);
    Ok(())
}

/// The tutorial's writer: create a named segment and write MyData into it.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  shm-demo --backend posix write --name /my_shm --size 4GiB --hold"
)]
pub struct WriteArgs {
    /// Segment name, like /my_shm (my_shm means the same, as in glibc's shm_open).
    #[arg(long)]
    name: String,
    /// Segment size: 4GiB, 64MiB, 4096, ...
    #[arg(long, default_value = "4GiB", value_parser = crate::util::parse_size)]
    size: u64,
    /// Keep the segment until Ctrl-C or SIGTERM, then remove it. Without --hold the
    /// segment is left for a reader, who removes it with `read --unlink`.
    #[arg(long)]
    hold: bool,
    /// Write the record the tutorial's way: at offset 0, no header, for programs that
    /// do not speak our layout (the tutorial's Go or C reader, Python's
    /// multiprocessing.shared_memory).
    #[arg(long)]
    raw: bool,
}

impl WriteArgs {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        ctx.require(Backend::Posix, POSIX_ONLY, true)?;
        write(&self.name, self.size, self.hold, self.raw, ctx.json)
    }
}

/// The tutorial's reader: attach to a named segment and print MyData.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  shm-demo --backend posix read --name /my_shm --unlink")]
pub struct ReadArgs {
    /// Segment name, like /my_shm (my_shm means the same, as in glibc's shm_open).
    #[arg(long)]
    name: String,
    /// Remove the segment after reading it (as the tutorial's reader does).
    #[arg(long)]
    unlink: bool,
    /// The record version to expect: v1 (what `write` writes) or v2 (shows a schema
    /// mismatch).
    #[arg(long, default_value = "v1")]
    schema: SchemaArg,
    /// Read a segment with no header (made the tutorial's way, or by Python or C):
    /// MyData at offset 0. Only the size can be checked; the type is taken on trust.
    #[arg(long, conflicts_with = "schema")]
    raw: bool,
}

impl ReadArgs {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        ctx.require(Backend::Posix, POSIX_ONLY, true)?;
        read(&self.name, self.unlink, self.schema, self.raw, ctx.json)
    }
}

/// Create a sealed memfd with MyData and hand it to every client of a Unix socket.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  shm-demo --backend memfd serve --socket /tmp/shm.sock")]
pub struct ServeArgs {
    /// Socket path.
    #[arg(long)]
    socket: std::path::PathBuf,
    /// Segment size.
    #[arg(long, default_value = "4GiB", value_parser = crate::util::parse_size)]
    size: u64,
    /// Serve one client, then exit (default: until Ctrl-C or SIGTERM).
    #[arg(long)]
    once: bool,
}

impl ServeArgs {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        ctx.require(Backend::Memfd, MEMFD_ONLY, true)?;
        serve(&self.socket, self.size, self.once, ctx.json)
    }
}

/// Receive the memfd from a server, verify it, attach and print MyData.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  shm-demo --backend memfd connect --socket /tmp/shm.sock")]
pub struct ConnectArgs {
    /// Socket path.
    #[arg(long)]
    socket: std::path::PathBuf,
}

impl ConnectArgs {
    pub fn run(self, ctx: Ctx) -> Result<()> {
        ctx.require(Backend::Memfd, MEMFD_ONLY, true)?;
        connect(&self.socket, ctx.json)
    }
}

/// The exchange with no subcommand: on the backend named, or on all three.
pub fn run_default(ctx: Ctx, size: u64) -> Result<()> {
    match ctx.backend {
        None => run(&Backend::ALL, size, ctx.json),
        Some(_) => run(
            &[ctx
                .require_shm("the exchange needs a shared-memory backend: posix, anon or memfd")?],
            size,
            ctx.json,
        ),
    }
}

const POSIX_ONLY: &str = "write and read name a POSIX segment: use --backend posix";
const MEMFD_ONLY: &str = "serve and connect pass a memfd: use --backend memfd";
