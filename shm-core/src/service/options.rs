//! How a service segment is laid out: [`ServiceOptions`].

use super::layout::*;
use crate::format::error::Error;
use crate::format::schema::Schema;

/// The schema a service's header declares when its requests are bytes.
pub(super) fn service_schema() -> Schema {
    Schema::new("service", 1, 0, 8).expect("short name")
}

/// How a service segment is laid out: the largest request and response, how many
/// requests can be in flight at once (queued or being answered), how many responses a
/// request's stream holds before its server waits, and how many client and server
/// processes it has lines for.
///
/// # Examples
/// ```
/// # use shm_core::service::ServiceOptions;
/// # fn main() -> Result<(), shm_core::Error> {
/// let opts = ServiceOptions::new().max_request(256).max_response(4096).slots(32);
/// assert!(opts.segment_len()? > 32 * 4096);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceOptions {
    pub(super) request_max: u32,
    pub(super) response_max: u32,
    pub(super) slots: u32,
    pub(super) response_depth: u32,
    pub(super) max_clients: u32,
    pub(super) max_servers: u32,
    pub(super) request_schema: Option<Result<Schema, Error>>,
    pub(super) response_schema: Option<Result<Schema, Error>>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            request_max: 4096,
            response_max: 4096,
            slots: 64,
            response_depth: 4,
            max_clients: 16,
            max_servers: 8,
            request_schema: None,
            response_schema: None,
        }
    }
}

impl ServiceOptions {
    /// Requests and responses of up to 4 KiB, 64 requests in flight, 4 responses per
    /// request's stream, 16 clients, 8 servers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest request, in bytes (1 to [`MAX_MESSAGE`]; default 4096).
    pub fn max_request(mut self, bytes: u32) -> Self {
        self.request_max = bytes;
        self
    }

    /// The largest response, in bytes (1 to [`MAX_MESSAGE`]; default 4096).
    pub fn max_response(mut self, bytes: u32) -> Self {
        self.response_max = bytes;
        self
    }

    /// How many requests can be in flight at once, over all clients: queued, being
    /// answered, or answered and not yet read (1 to [`MAX_SLOTS`]; default 64). A client
    /// that finds every slot held waits (`call`) or is told `Full` (`try_call`).
    pub fn slots(mut self, slots: u32) -> Self {
        self.slots = slots;
        self
    }

    /// How many responses of one request's stream the client may leave unread before the
    /// server's `respond` waits (1 to [`MAX_RESPONSE_DEPTH`]; default 4).
    pub fn response_depth(mut self, depth: u32) -> Self {
        self.response_depth = depth;
        self
    }

    /// How many client processes may hold ends at once (1 to [`MAX_ENDS`]; default 16).
    pub fn max_clients(mut self, n: u32) -> Self {
        self.max_clients = n;
        self
    }

    /// How many server processes may hold ends at once (1 to [`MAX_ENDS`]; default 8).
    pub fn max_servers(mut self, n: u32) -> Self {
        self.max_servers = n;
        self
    }

    /// Requests are records of type `T`: the header declares `T`'s schema (checked by
    /// [`Service::attach_records`](super::Service::attach_records)), and `max_request`
    /// becomes `size_of::<T>()`.
    pub fn record<T: crate::format::record::Record>(mut self) -> Self {
        self.request_schema = Some(Schema::of::<T>());
        self.request_max = std::mem::size_of::<T>().max(1) as u32;
        self
    }

    /// Responses are records of type `T` (checked by
    /// [`Service::attach_records`](super::Service::attach_records)), and `max_response`
    /// becomes `size_of::<T>()`.
    pub fn response_record<T: crate::format::record::Record>(mut self) -> Self {
        self.response_schema = Some(Schema::of::<T>());
        self.response_max = std::mem::size_of::<T>().max(1) as u32;
        self
    }

    /// Requests are records of `schema` (as [`record`](Self::record), without a Rust
    /// type: for a bridge that recreates a remote service); `max_request` becomes the
    /// schema's size.
    pub fn request_schema(mut self, schema: Schema) -> Self {
        self.request_max = u32::try_from(schema.size().max(1)).unwrap_or(u32::MAX);
        self.request_schema = Some(Ok(schema));
        self
    }

    /// Responses are records of `schema` (as [`response_record`](Self::response_record),
    /// without a Rust type); `max_response` becomes the schema's size.
    pub fn response_schema(mut self, schema: Schema) -> Self {
        self.response_max = u32::try_from(schema.size().max(1)).unwrap_or(u32::MAX);
        self.response_schema = Some(Ok(schema));
        self
    }

    pub(super) fn check(&self) -> Result<(), Error> {
        for (option, found, max, expected) in [
            (
                "service max_request",
                self.request_max,
                MAX_MESSAGE,
                "1 to 64 MiB",
            ),
            (
                "service max_response",
                self.response_max,
                MAX_MESSAGE,
                "1 to 64 MiB",
            ),
            ("service slots", self.slots, MAX_SLOTS, "1 to 4096"),
            (
                "service response_depth",
                self.response_depth,
                MAX_RESPONSE_DEPTH,
                "1 to 256",
            ),
            (
                "service max_clients",
                self.max_clients,
                MAX_ENDS,
                "1 to 1024",
            ),
            (
                "service max_servers",
                self.max_servers,
                MAX_ENDS,
                "1 to 1024",
            ),
        ] {
            if !(1..=max).contains(&found) {
                return Err(Error::InvalidOption {
                    option,
                    found: found.into(),
                    expected,
                });
            }
        }
        if let Some(Err(e)) = self.request_schema {
            return Err(e);
        }
        if let Some(Err(e)) = self.response_schema {
            return Err(e);
        }
        let need = self.payload_len();
        if need > MAX_PAYLOAD {
            return Err(Error::InvalidOption {
                option: "service size (slots × (request + depth × response))",
                found: need,
                expected: "at most 1 TiB",
            });
        }
        Ok(())
    }

    /// Payload bytes (every term is bounded by the option ranges: no overflow).
    pub(super) fn payload_len(&self) -> u64 {
        slots_at(self.max_clients, self.max_servers)
            + u64::from(self.slots)
                * slot_stride(self.request_max, self.response_max, self.response_depth)
    }

    /// The segment size (header included) these options need: what to ask a backend for.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an option out of range, or a service past 1 TiB;
    /// [`Error::SchemaName`] for a record type whose name is too long.
    pub fn segment_len(&self) -> Result<u64, Error> {
        self.check()?;
        Ok(crate::format::layout::PAYLOAD_OFFSET as u64 + self.payload_len())
    }
}
