//! What is exported on the network: every exporter's liveliness token, and the rate its
//! key carries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shm_core::{BroadcastMode, Schema};
use zenoh::sample::Sample;
use zenoh::Wait as _;

use crate::wire::{Descriptor, Kind, SampleHeader, ServiceDescriptor, SERVICE_CHUNK, TOKEN_CHUNK};
use crate::BridgeError;

/// One export seen on the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// A broadcast or a channel.
    pub kind: Kind,
    /// The Zenoh key it puts on.
    pub key: String,
    /// The exporter's identity.
    pub exporter: u64,
    /// Reliable or lossy.
    pub mode: BroadcastMode,
    /// The largest message.
    pub max_message: u64,
    /// The record schema.
    pub schema: Schema,
    /// Messages per second seen from this exporter during the listing's window.
    pub rate: f64,
}

/// Lists the exports reachable through `session`: each live exporter's token, and its
/// message rate measured for `window` (0: no rate is measured).
///
/// # Errors
/// [`BridgeError::Zenoh`] when Zenoh refuses the query or a subscription.
pub fn list(session: &zenoh::Session, window: Duration) -> Result<Vec<Export>, BridgeError> {
    let z = |what: &str, e: zenoh::Error| BridgeError::Zenoh(format!("{what}: {e}"));
    let replies = session
        .liveliness()
        .get(format!("**/{TOKEN_CHUNK}/*"))
        .timeout(Duration::from_secs(2))
        .wait()
        .map_err(|e| z("liveliness get", e))?;
    let mut found: Vec<(String, Descriptor)> = Vec::new();
    while let Ok(reply) = replies.recv() {
        if let Ok(s) = reply.result() {
            if let Some(kd) = Descriptor::from_token_key(s.key_expr().as_str()) {
                if !found.iter().any(|(_, d)| d.exporter == kd.1.exporter) {
                    found.push(kd);
                }
            }
        }
    }
    let counts: Arc<Mutex<HashMap<u64, Arc<AtomicU64>>>> = Arc::default();
    for (_, d) in &found {
        counts
            .lock()
            .expect("not poisoned")
            .insert(d.exporter, Arc::default());
    }
    if !window.is_zero() {
        let mut subs = Vec::new();
        let mut keys: Vec<&String> = found.iter().map(|(k, _)| k).collect();
        keys.dedup();
        for key in keys {
            let counts = counts.clone();
            subs.push(
                session
                    .declare_subscriber(key.clone())
                    .callback(move |s: Sample| {
                        let Some(att) = s.attachment() else { return };
                        if let Ok(h) = SampleHeader::decode(&att.to_bytes()) {
                            if let Some(c) = counts.lock().expect("not poisoned").get(&h.exporter) {
                                c.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                    .wait()
                    .map_err(|e| z("declare a subscriber", e))?,
            );
        }
        std::thread::sleep(window);
        drop(subs);
    }
    let counts = counts.lock().expect("not poisoned");
    Ok(found
        .into_iter()
        .map(|(key, d)| Export {
            kind: d.kind,
            key,
            exporter: d.exporter,
            mode: d.mode,
            max_message: d.max_message,
            schema: d.schema,
            rate: if window.is_zero() {
                0.0
            } else {
                counts[&d.exporter].load(Ordering::Relaxed) as f64 / window.as_secs_f64()
            },
        })
        .collect())
}

/// One service export seen on the network.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceExport {
    /// The Zenoh key its queryable answers on.
    pub key: String,
    /// What the exporter announces: identity, limits, record types.
    pub descriptor: ServiceDescriptor,
}

/// Lists the service exports reachable through `session` (each live exporter's token).
///
/// # Errors
/// [`BridgeError::Zenoh`] when Zenoh refuses the query.
pub fn list_services(session: &zenoh::Session) -> Result<Vec<ServiceExport>, BridgeError> {
    service_tokens(session, "**")
}

/// The live service exporters' tokens under `key` (a key expression), one per exporter.
pub(crate) fn service_tokens(
    session: &zenoh::Session,
    key: &str,
) -> Result<Vec<ServiceExport>, BridgeError> {
    let replies = session
        .liveliness()
        .get(format!("{key}/{TOKEN_CHUNK}/{SERVICE_CHUNK}/*"))
        .timeout(Duration::from_secs(2))
        .wait()
        .map_err(|e| BridgeError::Zenoh(format!("liveliness get: {e}")))?;
    let mut found: Vec<ServiceExport> = Vec::new();
    while let Ok(reply) = replies.recv() {
        if let Ok(s) = reply.result() {
            if let Some((key, descriptor)) =
                ServiceDescriptor::from_token_key(s.key_expr().as_str())
            {
                if !found
                    .iter()
                    .any(|f| f.descriptor.exporter == descriptor.exporter)
                {
                    found.push(ServiceExport { key, descriptor });
                }
            }
        }
    }
    Ok(found)
}
