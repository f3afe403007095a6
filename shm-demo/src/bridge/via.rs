//! `broadcast --via zenoh`: publisher, exporter, Zenoh on loopback, importer and
//! subscriber processes in one command, each a child demo process.

use super::*;

/// How long a bridge process may take to start and meet its peer.
const START: Duration = Duration::from_secs(30);

/// What `broadcast --via zenoh` measured.
pub struct ViaOutcome {
    pub lines: Vec<String>,
    pub publish_seconds: f64,
    pub import: String,
    pub export: String,
}

/// `broadcast --via zenoh`: publisher (here) → exporter process → Zenoh on loopback →
/// importer process → `subscribers` subscriber processes.
pub fn broadcast_via_zenoh(
    backend: Backend,
    b: shm_core::Broadcast<Mem>,
    subscribers: u32,
    messages: u64,
    size: u64,
) -> Result<ViaOutcome> {
    let stop = Arc::new(AtomicBool::new(false));
    let (src_name, server) = match backend {
        Backend::Memfd => {
            let p = host::socket_path();
            let t = serve_memfd(&p, b.raw().memory(), stop.clone())?;
            (p.to_string_lossy().into_owned(), Some(t))
        }
        _ => (
            b.raw().memory().posix_name().expect("posix").to_owned(),
            None,
        ),
    };
    let dst_name = match backend {
        Backend::Memfd => host::socket_path().to_string_lossy().into_owned(),
        _ => format!("/shm-demo-import-{}-{}", std::process::id(), free_port()?),
    };
    let key = format!("shm-demo/{}/{}", std::process::id(), free_port()?);
    let endpoint = format!("tcp/127.0.0.1:{}", free_port()?);
    let s = |v: &str| v.to_owned();
    let run = || -> Result<ViaOutcome> {
        let mut publisher = b.publisher()?;
        // When the network is the bottleneck the publisher mostly waits for room: let it
        // sleep instead of spinning, so that the CPU goes to the processes moving data.
        publisher.set_wait(shm_core::WaitMode::Block {
            spin: Duration::from_micros(2),
        });
        let mut export_args = vec![
            s("--backend"),
            s(backend.name()),
            s("--json"),
            s("bridge"),
            s("export"),
            s("--name"),
            src_name.clone(),
            s("--key"),
            key.clone(),
            s("--listen"),
            endpoint.clone(),
        ];
        // A benchmark's knob (benches/bridge.sh): the exporter's recovery cache, in
        // messages (0: off), to measure what the cache costs in the same run.
        if let Ok(m) = std::env::var("SHM_BRIDGE_CACHE_MESSAGES") {
            export_args.extend([s("--cache-messages"), m]);
        }
        let mut exporter = host::Child::start("exporter", &export_args)?;
        exporter.wait_event("exporting", START)?;
        let mut importer = host::Child::start(
            "importer",
            &[
                s("--backend"),
                s(backend.name()),
                s("--json"),
                s("bridge"),
                s("import"),
                s("--key"),
                key.clone(),
                s("--name"),
                dst_name.clone(),
                s("--connect"),
                endpoint.clone(),
                s("--wait-exporter"),
                s("30"),
            ],
        )?;
        importer.wait_event("importing", START)?;
        exporter.wait_event("matched", START)?;
        let mut peers = Vec::new();
        for _ in 0..subscribers {
            let at = match backend {
                Backend::Memfd => [s("--socket"), dst_name.clone()],
                _ => [s("--name"), dst_name.clone()],
            };
            let mut args = vec![s("--backend"), s(backend.name()), s("peer")];
            args.extend(at);
            args.extend([
                s("--role"),
                s("subscribe"),
                s("--count"),
                messages.to_string(),
                s("--size"),
                size.to_string(),
            ]);
            peers.push(host::Child::start("subscriber", &args)?);
        }
        // Every subscriber has joined the import before the first message.
        let watch = Broadcast::attach(open_local(backend, &dst_name)?)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while watch.subscriber_count() < subscribers {
            crate::util::check_interrupted()?;
            if Instant::now() > deadline {
                return Err(Failure::new(
                    "the subscribers did not join the import within 30 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut maker = crate::msg::Maker::new(size as usize);
        let start = Instant::now();
        for n in 0..messages {
            crate::util::check_interrupted()?;
            publisher.publish(maker.make(n))?;
        }
        let publish_seconds = start.elapsed().as_secs_f64();
        drop(publisher); // the close travels to the importer, which closes the import
                         // Every wait from here is bounded: the exporter ends once it read everything and
                         // put the end on the network, the importer once it published that, the
                         // subscribers once they read it. One that dies says why.
        let bound = Duration::from_secs(60)
            .max(Duration::from_secs_f64(messages as f64 * size as f64 / 1e6));
        let export = exporter.wait_event("done", bound)?;
        let import = importer.wait_event("done", bound)?;
        let mut lines = Vec::new();
        for mut p in peers {
            let line = p.last_line(Some(bound))?;
            if line.is_empty() {
                return Err(Failure::new("a subscriber printed nothing"));
            }
            lines.push(line);
        }
        Ok(ViaOutcome {
            lines,
            publish_seconds,
            import,
            export,
        })
    };
    let r = run();
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = server {
        let _ = t.join();
    }
    r
}
