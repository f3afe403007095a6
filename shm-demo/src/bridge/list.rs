//! `bridge list`: what the network exports.

use super::*;

pub(super) fn run(seconds: f64, net: &Net, json: bool) -> Result<()> {
    let session = net.open()?;
    // Let the session meet its peers before asking.
    std::thread::sleep(Duration::from_millis(500));
    let window = Duration::from_secs_f64(seconds.clamp(0.0, 3600.0));
    let exports = shm_zenoh::list(&session, window).map_err(zerr)?;
    if !json {
        println!(
            "{:<30} {:>16} {:<9} {:<12} {:>12} {:>12}",
            "key", "exporter", "mode", "schema", "max_message", "rate/s"
        );
    }
    for e in &exports {
        let mode = match e.mode {
            BroadcastMode::Reliable => "reliable",
            BroadcastMode::Lossy => "lossy",
        };
        if json {
            println!(
                "{}",
                Json::new()
                    .str(
                        "kind",
                        match e.kind {
                            shm_zenoh::wire::Kind::Broadcast => "broadcast",
                            shm_zenoh::wire::Kind::Channel => "channel",
                        },
                    )
                    .str("key", &e.key)
                    .str("exporter", &format!("{:016x}", e.exporter))
                    .str("mode", mode)
                    .str("schema", e.schema.name())
                    .num("schema_version", e.schema.version())
                    .num("schema_size", e.schema.size())
                    .num("max_message", e.max_message)
                    .float("rate", e.rate)
                    .finish()
            );
        } else {
            println!(
                "{:<30} {:016x} {:<9} {:<12} {:>12} {:>12.1}",
                e.key,
                e.exporter,
                mode,
                e.schema.name(),
                e.max_message,
                e.rate
            );
        }
    }
    let services = shm_zenoh::list_services(&session).map_err(zerr)?;
    if !json && !services.is_empty() {
        println!(
            "\n{:<30} {:>16} {:>12} {:>12} {:<12} {:<12}",
            "service key", "exporter", "max_request", "max_response", "request", "response"
        );
    }
    let name = |s: &Option<shm_core::Schema>| s.map_or("bytes".to_owned(), |s| s.name().to_owned());
    for s in &services {
        let d = &s.descriptor;
        if json {
            println!(
                "{}",
                Json::new()
                    .str("kind", "service")
                    .str("key", &s.key)
                    .str("exporter", &format!("{:016x}", d.exporter))
                    .num("max_request", d.max_request)
                    .num("max_response", d.max_response)
                    .str("request", &name(&d.request))
                    .str("response", &name(&d.response))
                    .finish()
            );
        } else {
            println!(
                "{:<30} {:016x} {:>12} {:>12} {:<12} {:<12}",
                s.key,
                d.exporter,
                d.max_request,
                d.max_response,
                name(&d.request),
                name(&d.response)
            );
        }
    }
    if !json && exports.is_empty() && services.is_empty() {
        println!("(no exports reachable)");
    }
    Ok(())
}
