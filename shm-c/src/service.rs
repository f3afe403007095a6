//! Services (request/response): `shm_service_*`, `shm_client_*`, `shm_server_*`,
//! `shm_request_*`. Each request goes to exactly one server; its deadline travels with
//! it; a server that dies is `SHM_STATUS_PEER_DIED` for its client.

use std::ffi::{c_char, c_void};

use shm_core::service::ActiveRequest;
use shm_core::{Error, Service, ServiceOptions};
use shm_posix::PosixShm;

use crate::handles::*;
use crate::status::{guard, Failure, ShmStatus};

/// A service segment (opaque).
pub struct ShmService {
    svc: Service<PosixShm>,
}

/// The calling end of a service (opaque).
pub struct ShmClient {
    c: shm_core::service::Client<PosixShm>,
}

/// The answering end of a service (opaque).
pub struct ShmServer {
    s: shm_core::service::Server<PosixShm>,
}

impl ShmServer {
    pub(crate) fn inner(&self) -> &shm_core::service::Server<PosixShm> {
        &self.s
    }
}

/// One request a server took (opaque): read it with `shm_request_data`, answer it with
/// `shm_request_respond*`, then `shm_request_free` it (freed unanswered, its client gets
/// `SHM_STATUS_CLOSED`).
pub struct ShmRequest {
    req: Option<ActiveRequest<PosixShm>>,
}

/// Creates the named POSIX segment `name` holding a service for requests up to
/// `max_request` bytes and responses up to `max_response` bytes (1 to 16 MiB each), with
/// `slots` requests in flight at once (1 to 4096), and stores the handle in `*out`.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_ALREADY_EXISTS`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `out` is NULL or points to a `shm_service *`.
#[no_mangle]
pub unsafe extern "C" fn shm_service_create(
    name: *const c_char,
    max_request: u32,
    max_response: u32,
    slots: u32,
    out: *mut *mut ShmService,
) -> ShmStatus {
    let make = |name: &str| {
        let opts = ServiceOptions::new()
            .max_request(max_request)
            .max_response(max_response)
            .slots(slots);
        let mem = shm_posix::ShmOptions::new(name)
            .size(opts.segment_len()?)
            .create()?;
        Ok(ShmService {
            svc: Service::create(mem, &opts)?,
        })
    };
    // SAFETY: the caller's contract above.
    unsafe { named(name, out, make) }
}

/// Attaches the service in the named POSIX segment `name`, waiting up to `timeout_ns`
/// for the segment to appear.
///
/// Errors: `SHM_STATUS_NOT_FOUND`, `SHM_STATUS_MISMATCH`, `SHM_STATUS_CORRUPT`,
/// `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// As `shm_service_create`.
#[no_mangle]
pub unsafe extern "C" fn shm_service_open(
    name: *const c_char,
    timeout_ns: u64,
    out: *mut *mut ShmService,
) -> ShmStatus {
    let make = |name: &str| {
        let mem = open_named(name, timeout_arg(timeout_ns))?;
        Ok(ShmService {
            svc: Service::attach(mem)?,
        })
    };
    // SAFETY: the caller's contract above.
    unsafe { named(name, out, make) }
}

/// Frees a service handle (NULL: nothing); ends made from it stay usable.
///
/// # Safety
/// `svc` is NULL or a handle from `shm_service_create` / `shm_service_open`.
#[no_mangle]
pub unsafe extern "C" fn shm_service_free(svc: *mut ShmService) -> ShmStatus {
    free(svc, "service")
}

/// Joins as a client and stores the end in `*out`.
///
/// Errors: `SHM_STATUS_ROLE_TAKEN` (every client line taken), `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `svc` is NULL or a live service handle; `out` is NULL or points to a `shm_client *`.
#[no_mangle]
pub unsafe extern "C" fn shm_service_client(
    svc: *mut ShmService,
    out: *mut *mut ShmClient,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(svc, "service", out, |h| {
            Ok(ShmClient { c: h.svc.client()? })
        })
    }
}

/// Joins as a server and stores the end in `*out`.
///
/// Errors: `SHM_STATUS_ROLE_TAKEN` (every server line taken), `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `svc` is NULL or a live service handle; `out` is NULL or points to a `shm_server *`.
#[no_mangle]
pub unsafe extern "C" fn shm_service_server(
    svc: *mut ShmService,
    out: *mut *mut ShmServer,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(svc, "service", out, |h| {
            Ok(ShmServer { s: h.svc.server()? })
        })
    }
}

/// Frees a client (NULL: nothing).
///
/// # Safety
/// `c` is NULL or a handle from `shm_service_client`.
#[no_mangle]
pub unsafe extern "C" fn shm_client_free(c: *mut ShmClient) -> ShmStatus {
    free(c, "client")
}

/// Frees a server (NULL: nothing).
///
/// # Safety
/// `s` is NULL or a handle from `shm_service_server`.
#[no_mangle]
pub unsafe extern "C" fn shm_server_free(s: *mut ShmServer) -> ShmStatus {
    free(s, "server")
}

/// Sends the `len`-byte request at `req` and copies its (first) response into the `cap`
/// bytes at `resp`, waiting at most `timeout_ns` (`SHM_FOREVER`: as long as it takes):
/// the request carries that deadline to its server. `info->len` is the response's length.
///
/// Errors: `SHM_STATUS_TIMEOUT`; `SHM_STATUS_PEER_DIED` (the server holding the request
/// died); `SHM_STATUS_SERVER_ERROR` (an error response: its code in `info->number`);
/// `SHM_STATUS_CLOSED` (the server dropped the request unanswered);
/// `SHM_STATUS_MESSAGE_TOO_LARGE` (a request over `max_request`, or a response larger than
/// `cap`: `info->len` says its size, and that response is lost: give a buffer of the
/// service's `max_response`); `SHM_STATUS_INVALID_ARGUMENT`; `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `c` is NULL or a live client used by one thread at a time; `req` is NULL or `len`
/// readable bytes; `resp` is NULL or `cap` writable bytes; `info` is NULL or a
/// `shm_received`.
#[no_mangle]
pub unsafe extern "C" fn shm_client_call_timeout(
    c: *mut ShmClient,
    req: *const c_void,
    len: usize,
    resp: *mut c_void,
    cap: usize,
    info: *mut ShmReceived,
    timeout_ns: u64,
) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(c, "client") }?;
        // SAFETY: as above.
        let request = unsafe { bytes_arg(req, len) }?;
        // SAFETY: as above.
        let out = unsafe { buffer_arg(resp, cap) }?;
        let r = match timeout_arg(timeout_ns) {
            None => h.c.call(request).map_err(Error::from),
            Some(t) => h.c.call_timeout(request, t).map_err(Error::from),
        };
        match r {
            Ok(response) if response.data.len() > out.len() => {
                Err(too_large(info, response.data.len() as u64, 0))
            }
            Ok(response) => {
                out[..response.data.len()].copy_from_slice(&response.data);
                report(
                    info,
                    ShmReceived {
                        len: response.data.len(),
                        number: 0,
                        missed: 0,
                    },
                );
                Ok(())
            }
            Err(Error::ServerError { code }) => {
                report(
                    info,
                    ShmReceived {
                        len: 0,
                        number: u64::from(code),
                        missed: 0,
                    },
                );
                Err(Error::ServerError { code }.into())
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// `shm_client_call_timeout` with no time limit.
///
/// # Safety
/// As `shm_client_call_timeout`.
#[no_mangle]
pub unsafe extern "C" fn shm_client_call(
    c: *mut ShmClient,
    req: *const c_void,
    len: usize,
    resp: *mut c_void,
    cap: usize,
    info: *mut ShmReceived,
) -> ShmStatus {
    // SAFETY: forwarded: the same contract.
    unsafe { shm_client_call_timeout(c, req, len, resp, cap, info, SHM_FOREVER) }
}

/// Takes the oldest queued request, waiting at most `timeout_ns` (0: only if one is
/// there now; `SHM_FOREVER`: as long as it takes), and stores it in `*out`.
///
/// Errors: `SHM_STATUS_EMPTY` (timeout 0, none there), `SHM_STATUS_TIMEOUT`,
/// `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `s` is NULL or a live server used by one thread at a time; `out` is NULL or points to
/// a `shm_request *`.
#[no_mangle]
pub unsafe extern "C" fn shm_server_receive_timeout(
    s: *mut ShmServer,
    timeout_ns: u64,
    out: *mut *mut ShmRequest,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(s, "server", out, |h| {
            let req = match timeout_arg(timeout_ns) {
                Some(t) if t.is_zero() => h.s.try_receive().map_err(Error::from)?,
                None => h.s.receive().map_err(Error::from)?,
                Some(t) => h.s.receive_timeout(t).map_err(Error::from)?,
            };
            Ok(ShmRequest { req: Some(req) })
        })
    }
}

fn request<'a>(r: *mut ShmRequest) -> Result<&'a mut ActiveRequest<PosixShm>, Failure> {
    // SAFETY: every caller passes its own caller's `r`: NULL or a live request used by
    // one thread at a time.
    let h = unsafe { handle(r, "request") }?;
    h.req
        .as_mut()
        .ok_or_else(|| Failure::invalid("the request was answered with its last response"))
}

/// Stores the address and length of the request's bytes (a private copy, valid until
/// the request is freed) in `*data` and `*len`, and its remaining time to its deadline
/// in nanoseconds in `*remaining_ns` (each may be NULL).
///
/// # Safety
/// `r` is NULL or a live request; the out-pointers are NULL or point to their types.
#[no_mangle]
pub unsafe extern "C" fn shm_request_data(
    r: *mut ShmRequest,
    data: *mut *const c_void,
    len: *mut usize,
    remaining_ns: *mut u64,
) -> ShmStatus {
    guard(|| {
        let req = request(r)?;
        let bytes = req.data();
        if !data.is_null() {
            // SAFETY: non-null; the caller's `const void *`.
            unsafe { data.write(bytes.as_ptr().cast()) };
        }
        if !len.is_null() {
            // SAFETY: non-null; the caller's `size_t`.
            unsafe { len.write(bytes.len()) };
        }
        if !remaining_ns.is_null() {
            let left = req.remaining().map_or(u64::MAX, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
            });
            // SAFETY: non-null; the caller's `uint64_t`.
            unsafe { remaining_ns.write(left) };
        }
        Ok(())
    })
}

/// Sends one response of `len` bytes (more may follow: a stream), waiting for room in
/// the request's response ring within its deadline.
///
/// Errors: `SHM_STATUS_CANCELLED` (the client gave the request up),
/// `SHM_STATUS_TIMEOUT` (its deadline passed), `SHM_STATUS_PEER_DIED` (the client died),
/// `SHM_STATUS_MESSAGE_TOO_LARGE`, `SHM_STATUS_INVALID_ARGUMENT` (answered already).
///
/// # Safety
/// `r` is NULL or a live request used by one thread at a time; `data` is NULL or `len`
/// readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shm_request_respond(
    r: *mut ShmRequest,
    data: *const c_void,
    len: usize,
) -> ShmStatus {
    guard(|| {
        let req = request(r)?;
        // SAFETY: the caller's contract above.
        let bytes = unsafe { bytes_arg(data, len) }?;
        req.respond(bytes).map_err(|e| Error::from(e).into())
    })
}

/// Sends the last response of `len` bytes (the end of the stream).
///
/// Errors: as `shm_request_respond`.
///
/// # Safety
/// As `shm_request_respond`.
#[no_mangle]
pub unsafe extern "C" fn shm_request_respond_last(
    r: *mut ShmRequest,
    data: *const c_void,
    len: usize,
) -> ShmStatus {
    guard(|| {
        request(r)?;
        // SAFETY: the caller's contract above; checked live just now.
        let h = unsafe { handle(r, "request") }?;
        // SAFETY: the caller's contract above.
        let bytes = unsafe { bytes_arg(data, len) }?;
        let req = h.req.take().expect("checked present above");
        req.respond_last(bytes).map_err(|e| Error::from(e).into())
    })
}

/// Answers with an error `code`, which the client's call returns as
/// `SHM_STATUS_SERVER_ERROR` with the code in `info->number`.
///
/// Errors: as `shm_request_respond`.
///
/// # Safety
/// `r` is NULL or a live request used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn shm_request_respond_error(r: *mut ShmRequest, code: u32) -> ShmStatus {
    guard(|| {
        request(r)?;
        // SAFETY: the caller's contract above; checked live just now.
        let h = unsafe { handle(r, "request") }?;
        let req = h.req.take().expect("checked present above");
        req.respond_error(code).map_err(|e| Error::from(e).into())
    })
}

/// Frees a request (NULL: nothing); one not answered with its last response ends its
/// client's call with `SHM_STATUS_CLOSED`.
///
/// # Safety
/// `r` is NULL or a handle from `shm_server_receive_timeout`.
#[no_mangle]
pub unsafe extern "C" fn shm_request_free(r: *mut ShmRequest) -> ShmStatus {
    free(r, "request")
}
