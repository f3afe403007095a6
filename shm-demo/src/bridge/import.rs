//! `bridge import`: a Zenoh key carried into a local broadcast.

use super::*;

pub(super) fn run(
    backend: Backend,
    key: &str,
    name: &str,
    opts: &ImportOptions,
    net: &Net,
    json: bool,
) -> Result<()> {
    let session = net.open()?;
    let owned = name.to_owned();
    let importer = Importer::start(&session, opts, move |len| {
        Ok(match backend {
            Backend::Memfd => {
                Mem::Memfd(MemfdOptions::new().name("shm-import").size(len).create()?)
            }
            _ => {
                crate::util::remember_segment(&owned);
                Mem::Posix(create_replacing_dead(&owned, len, |m| {
                    Some(Broadcast::attach(m).ok()?.state().ok()?.publisher_pid)
                })?)
            }
        })
    })
    .map_err(zerr)?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = match backend {
        Backend::Memfd => Some(serve_memfd(
            Path::new(name),
            importer.broadcast().raw().memory(),
            stop.clone(),
        )?),
        _ => None,
    };
    let d = importer.descriptor();
    let say = |line: String| {
        println!("{line}");
        let _ = std::io::stdout().flush();
    };
    let mode = match d.mode {
        BroadcastMode::Reliable => "reliable",
        BroadcastMode::Lossy => "lossy",
    };
    if json {
        say(Json::new()
            .str("event", "importing")
            .str("key", key)
            .str("name", name)
            .str("mode", mode)
            .str("schema", d.schema.name())
            .num("max_message", d.max_message)
            .finish());
    } else {
        let sub = match backend {
            Backend::Memfd => format!("--backend memfd ... --socket {name}"),
            _ => format!("--backend posix subscribe --name {name}"),
        };
        say(format!(
            "importing key {key} into {name} ({mode}, {} messages of at most {} B); subscribe with: shm-demo {sub}",
            d.schema.name(),
            d.max_message
        ));
    }
    let mut last = Instant::now();
    let mut lost = 0;
    let result = loop {
        if crate::util::interrupted() {
            break Err(Failure::new("interrupted"));
        }
        if importer.is_finished() {
            break Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
        let s = importer.stats();
        if s.upstream_lost != lost {
            lost = s.upstream_lost;
            if json {
                say(Json::new().str("event", "upstream_lost").finish());
            } else {
                say("the exporter is gone; subscribers were told (UpstreamLost); waiting for it to come back".into());
            }
        }
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            if json {
                say(stats_json(Json::new().str("event", "progress"), &s).finish());
            } else {
                say(format!(
                    "delivered {} messages ({} recovered after a cut), missed {}, rejected {}",
                    s.delivered,
                    s.recovered,
                    s.missed,
                    s.rejected()
                ));
            }
        }
    };
    let s = match result {
        Ok(()) => importer.join().map_err(zerr),
        Err(e) => {
            let _ = importer.stop();
            Err(e)
        }
    };
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = server {
        let _ = t.join();
    }
    if backend == Backend::Posix {
        crate::util::forget_segment(name);
    }
    let s = s?;
    say(stats_json(Json::new().str("event", "done"), &s)
        .num("peak_rss_kib", peak_rss_kib())
        .finish());
    Ok(())
}

/// `bridge import --channel`: a remote channel into a local one (posix).
pub(super) fn run_channel(
    key: &str,
    name: &str,
    opts: &ImportOptions,
    net: &Net,
    json: bool,
) -> Result<()> {
    let session = net.open()?;
    let owned = name.to_owned();
    crate::util::remember_segment(name);
    let importer = shm_zenoh::ChannelImporter::start(&session, opts, None, move |len| {
        Ok(create_replacing_dead(&owned, len, |m| {
            Some(
                shm_core::Channel::attach(m)
                    .ok()?
                    .ring_state(0)
                    .ok()?
                    .sender_pid,
            )
        })?)
    })
    .map_err(zerr);
    let importer = match importer {
        Ok(i) => i,
        Err(e) => {
            crate::util::forget_segment(name);
            return Err(e);
        }
    };
    let say = |line: String| {
        println!("{line}");
        let _ = std::io::stdout().flush();
    };
    if json {
        say(Json::new()
            .str("event", "importing")
            .str("key", key)
            .str("name", name)
            .str("kind", "channel")
            .num("max_message", importer.descriptor().max_message)
            .finish());
    } else {
        say(format!(
            "importing channel {key} into {name}; receive with: shm-demo --backend posix receive --name {name}"
        ));
    }
    let mut last = Instant::now();
    let result = loop {
        if crate::util::interrupted() {
            break Err(Failure::new("interrupted"));
        }
        if importer.is_finished() {
            break Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let s = importer.stats();
            if json {
                say(stats_json(Json::new().str("event", "progress"), &s).finish());
            } else {
                say(format!(
                    "delivered {} messages ({} recovered after a cut), missed {}",
                    s.delivered, s.recovered, s.missed
                ));
            }
        }
    };
    // (A handle of our own: the segment outlives the import until it is read.)
    let importer_channel = importer.channel().clone();
    let s = match result {
        Ok(()) => importer.join().map_err(zerr),
        Err(e) => {
            let _ = importer.stop();
            Err(e)
        }
    };
    if s.is_ok() {
        // The channel closed, but its receiver may not have read (or even attached)
        // yet: keep the segment until it has read everything (at most 60 s, or Ctrl-C),
        // as `send` keeps its own.
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until && !crate::util::interrupted() {
            match importer_channel.ring_state(0) {
                Ok(r) if r.head < r.tail => std::thread::sleep(Duration::from_millis(5)),
                _ => break, // all read (or the segment says nothing sensible)
            }
        }
    }
    drop(importer_channel);
    crate::util::forget_segment(name);
    let s = s?;
    say(stats_json(Json::new().str("event", "done"), &s)
        .num("peak_rss_kib", peak_rss_kib())
        .finish());
    Ok(())
}
