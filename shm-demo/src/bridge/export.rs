//! `bridge export`: a local broadcast carried onto a Zenoh key.

use super::*;

pub(super) fn run(
    backend: Backend,
    name: &str,
    channel: bool,
    opts: &ExportOptions,
    key: &str,
    net: &Net,
    json: bool,
) -> Result<()> {
    let local = open_local(backend, name)?;
    let session = net.open()?;
    let exporter = if channel {
        let c = shm_core::Channel::attach(local)?;
        shm_zenoh::export_channel(&session, &c, 0, opts)
    } else {
        Exporter::start(&session, Broadcast::attach(local)?, opts)
    }
    .map_err(zerr)?;
    let say = |line: String| {
        println!("{line}");
        let _ = std::io::stdout().flush();
    };
    if json {
        say(Json::new()
            .str("event", "exporting")
            .str("key", key)
            .num("exporter", exporter.id())
            .finish());
    } else {
        say(format!(
            "exporting {name} on key {key} (exporter {:016x}); import it with: shm-demo --backend posix bridge import --key {key} --name /NAME --connect ENDPOINT",
            exporter.id()
        ));
    }
    let mut matched = false;
    let mut last = Instant::now();
    while !exporter.is_finished() {
        crate::util::check_interrupted()?;
        std::thread::sleep(Duration::from_millis(10));
        if exporter.matched() != matched {
            matched = !matched;
            if json {
                say(Json::new()
                    .str("event", "matched")
                    .bool("matched", matched)
                    .finish());
            } else {
                say(format!(
                    "importer {}",
                    if matched { "connected" } else { "gone" }
                ));
            }
        }
        if !json && last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let s = exporter.stats();
            say(format!("sent {} messages, {} B", s.sent, s.bytes));
        }
    }
    let s = exporter.join().map_err(zerr)?;
    // A graceful close sends what Zenoh still queues (the last messages and the end of
    // the stream) before the process exits.
    close(session);
    let line = Json::new()
        .str("event", "done")
        .num("sent", s.sent)
        .num("bytes", s.bytes)
        .num("lagged", s.lagged)
        .num("evicted", s.evicted)
        .num("queries", s.queries)
        .num("resent", s.resent)
        .num("failed", s.failed)
        .num("peak_rss_kib", peak_rss_kib())
        .finish();
    if json {
        say(line);
    } else {
        say(format!("the source closed: {line}"));
    }
    Ok(())
}
