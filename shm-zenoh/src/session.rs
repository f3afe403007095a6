//! The Zenoh session a bridge runs on: peer mode, the endpoints given, multicast
//! scouting off unless asked for.

use std::time::Duration;

use zenoh::Wait as _;

use crate::BridgeError;

/// How a bridge joins the Zenoh network (builder; ends in [`open`](Self::open)).
///
/// ```no_run
/// let session = shm_zenoh::BridgeConfig::new()
///     .listen("tcp/127.0.0.1:7447")
///     .open()?;
/// # Ok::<(), shm_zenoh::BridgeError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct BridgeConfig {
    listen: Vec<String>,
    connect: Vec<String>,
    lease: Option<Duration>,
    scouting: bool,
}

impl BridgeConfig {
    /// Peer mode, no endpoints, multicast scouting off, Zenoh's default lease (10 s).
    pub fn new() -> Self {
        Self::default()
    }
    /// Listen on a Zenoh endpoint (`tcp/127.0.0.1:7447`, `unixsock-stream/PATH`).
    pub fn listen(mut self, endpoint: impl Into<String>) -> Self {
        self.listen.push(endpoint.into());
        self
    }
    /// Connect to a Zenoh endpoint (retried in the background until it answers).
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.connect.push(endpoint.into());
        self
    }
    /// The link lease: a peer that says nothing for this long is gone, its liveliness
    /// tokens with it. This bounds how late an importer learns that its exporter's host
    /// or link died without closing (a killed process closes its TCP connection, which
    /// is seen at once). Zenoh's default is 10 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }
    /// Multicast scouting (off by default: peers meet only through the endpoints given).
    pub fn scouting(mut self, on: bool) -> Self {
        self.scouting = on;
        self
    }

    /// The Zenoh configuration these settings make.
    ///
    /// # Errors
    /// [`BridgeError::Zenoh`] for an endpoint Zenoh does not accept.
    pub fn zenoh_config(&self) -> Result<zenoh::Config, BridgeError> {
        let mut c = zenoh::Config::default();
        let json = |v: &[String]| {
            let quoted: Vec<String> = v.iter().map(|e| format!("{e:?}")).collect();
            format!("[{}]", quoted.join(","))
        };
        let set = |c: &mut zenoh::Config, k: &str, v: &str| {
            c.insert_json5(k, v)
                .map_err(|e| BridgeError::Zenoh(format!("config {k} = {v}: {e}")))
        };
        set(&mut c, "mode", "\"peer\"")?;
        set(&mut c, "listen/endpoints", &json(&self.listen))?;
        set(&mut c, "connect/endpoints", &json(&self.connect))?;
        set(
            &mut c,
            "scouting/multicast/enabled",
            if self.scouting { "true" } else { "false" },
        )?;
        if let Some(lease) = self.lease {
            let ms = lease.as_millis().clamp(100, u128::from(u32::MAX));
            set(&mut c, "transport/link/tx/lease", &ms.to_string())?;
        }
        Ok(c)
    }

    /// Opens the session.
    ///
    /// # Errors
    /// [`BridgeError::Zenoh`]: a bad endpoint, or one it cannot listen on.
    pub fn open(&self) -> Result<zenoh::Session, BridgeError> {
        zenoh::open(self.zenoh_config()?)
            .wait()
            .map_err(|e| BridgeError::Zenoh(format!("cannot open the Zenoh session: {e}")))
    }
}
