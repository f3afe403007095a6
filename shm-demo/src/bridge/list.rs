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
    if !json && exports.is_empty() {
        println!("(no exports reachable)");
    }
    Ok(())
}
