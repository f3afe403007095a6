//! `bridge export-service` / `bridge import-service`: a named posix service whose
//! servers on one host answer clients on another.

use shm_core::service::Service;
use shm_zenoh::{
    ServiceExportOptions, ServiceExporter, ServiceImportOptions, ServiceImporter, ServiceStats,
};

use super::*;

fn stats_json(j: Json, s: &ServiceStats) -> Json {
    j.num("calls", s.calls)
        .num("responses", s.responses)
        .num("errors", s.errors)
        .num("timeouts", s.timeouts)
        .num("rejected", s.rejected)
}

fn say(line: String) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// Runs until Ctrl-C (or SIGTERM), printing progress each second; then the stats.
fn until_signal(stats: impl Fn() -> ServiceStats, json: bool) {
    crate::util::hold_until_signal();
    let mut last = Instant::now();
    while !crate::util::interrupted() {
        std::thread::sleep(Duration::from_millis(20));
        if !json && last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let s = stats();
            say(format!(
                "{} calls, {} responses, {} errors, {} timeouts",
                s.calls, s.responses, s.errors, s.timeouts
            ));
        }
    }
}

/// `bridge export-service`.
pub(super) fn export(name: &str, key: &str, workers: usize, net: &Net, json: bool) -> Result<()> {
    let svc = Service::attach(shm_posix::ShmOptions::new(name).open()?)?;
    let session = net.open()?;
    let exporter = ServiceExporter::start(
        &session,
        svc,
        &ServiceExportOptions::new(key).workers(workers),
    )
    .map_err(zerr)?;
    if json {
        say(Json::new()
            .str("event", "exporting")
            .str("key", key)
            .num("exporter", exporter.id())
            .finish());
    } else {
        say(format!(
            "serving {name} to remote clients on key {key}; import it with: shm-demo --backend posix bridge import-service --key {key} --name /NAME --connect ENDPOINT"
        ));
    }
    until_signal(|| exporter.stats(), json);
    let s = exporter.stop();
    close(session);
    say(stats_json(Json::new().str("event", "done"), &s).finish());
    // Only a signal ends it: stopped, cleaned up, and said so by the exit status.
    Err(Failure::new("interrupted; cleaned up and stopped"))
}

/// `bridge import-service`.
pub(super) fn import(
    key: &str,
    name: &str,
    wait_exporter: Duration,
    workers: usize,
    net: &Net,
    json: bool,
) -> Result<()> {
    let session = net.open()?;
    let owned = name.to_owned();
    let opts = ServiceImportOptions::new(key)
        .wait_exporter(wait_exporter)
        .workers(workers);
    crate::util::remember_segment(name);
    let importer = ServiceImporter::start(&session, &opts, move |len| {
        Ok(shm_posix::ShmOptions::new(&owned).size(len).create()?)
    })
    .map_err(zerr);
    let importer = match importer {
        Ok(i) => i,
        Err(e) => {
            crate::util::forget_segment(name);
            return Err(e);
        }
    };
    let d = importer.descriptor();
    if json {
        say(Json::new()
            .str("event", "importing")
            .str("key", key)
            .str("name", name)
            .num("max_request", d.max_request)
            .num("max_response", d.max_response)
            .finish());
    } else {
        say(format!(
            "remote service {key} is {name} here (requests of at most {} B); call it with: shm-demo --backend posix service call --name {name}",
            d.max_request
        ));
    }
    until_signal(|| importer.stats(), json);
    let s = importer.stop();
    crate::util::forget_segment(name);
    close(session);
    say(stats_json(Json::new().str("event", "done"), &s).finish());
    // Only a signal ends it: stopped, cleaned up, and said so by the exit status.
    Err(Failure::new("interrupted; cleaned up and stopped"))
}
