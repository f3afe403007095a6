//! Services between threads (the heap backend; the conformance suite runs them between
//! processes on every backend): dispatch, streams, deadlines, cancellation, errors, the
//! four forms and their error types, typed records, a wait set.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_core::service::{Service, ServiceOptions};
use shm_core::testing::block_on;
use shm_core::{
    bytemuck, CallError, CallTimeoutError, Error, HeapMemory, Record, RespondError, TryCallError,
    TryRecvError, TryResponseError, WaitSet,
};

const BOUND: Duration = Duration::from_secs(20);

fn service(opts: &ServiceOptions) -> (Service<HeapMemory>, HeapMemory) {
    let mem = HeapMemory::new(opts.segment_len().unwrap() as usize);
    let view = mem.share();
    (Service::create(mem, opts).unwrap(), view)
}

fn answer(req: &[u8]) -> Vec<u8> {
    req.iter().rev().map(|b| b.wrapping_add(1)).collect()
}

#[test]
fn every_request_is_answered_by_exactly_one_server() {
    const CLIENTS: u64 = 3;
    const CALLS: u64 = 1000;
    let opts = ServiceOptions::new()
        .slots(8)
        .max_request(64)
        .max_response(64);
    let (svc, _view) = service(&opts);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handled = Arc::new(AtomicU64::new(0));
    let servers: Vec<_> = (0..3)
        .map(|_| {
            let svc = svc.clone();
            let (stop, handled) = (Arc::clone(&stop), Arc::clone(&handled));
            std::thread::spawn(move || {
                let mut server = svc.server().unwrap();
                let mut mine = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match server.receive_timeout(Duration::from_millis(5)) {
                        Ok(req) => {
                            let a = answer(req.data());
                            req.respond_last(&a).unwrap();
                            mine += 1;
                        }
                        Err(shm_core::RecvTimeoutError::Timeout { .. }) => {}
                        Err(e) => panic!("server: {e}"),
                    }
                }
                handled.fetch_add(mine, Ordering::Relaxed);
                mine
            })
        })
        .collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let svc = svc.clone();
            std::thread::spawn(move || {
                let mut client = svc.client().unwrap();
                for i in 0..CALLS {
                    let req = format!("client {c} call {i}").into_bytes();
                    let r = client.call_timeout(&req, BOUND).unwrap();
                    assert_eq!(r.data, answer(&req), "call {i} of client {c}");
                    assert!(r.last);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let per: Vec<u64> = servers.into_iter().map(|s| s.join().unwrap()).collect();
    assert_eq!(handled.load(Ordering::Relaxed), CLIENTS * CALLS, "{per:?}");
    assert!(
        svc.state().unwrap().requests.is_empty(),
        "a slot was left held"
    );
}

#[test]
fn a_stream_arrives_whole_in_order_and_the_server_waits_for_room() {
    let opts = ServiceOptions::new().response_depth(2).max_response(16);
    let (svc, _view) = service(&opts);
    let server = {
        let svc = svc.clone();
        std::thread::spawn(move || {
            let mut server = svc.server().unwrap();
            let mut req = server.receive_timeout(BOUND).unwrap();
            let n: u32 = std::str::from_utf8(req.data()).unwrap().parse().unwrap();
            for i in 0..n {
                req.respond(&i.to_le_bytes()).unwrap();
            }
            req.respond_last(b"done").unwrap();
        })
    };
    let mut client = svc.client().unwrap();
    let mut pending = client.send_request(b"50").unwrap();
    for i in 0u32..50 {
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(2)); // let the server fill the ring
        }
        let r = pending.receive_timeout(BOUND).unwrap();
        assert_eq!(r.data, i.to_le_bytes(), "response {i}");
        assert!(!r.last);
    }
    let last = pending.receive_timeout(BOUND).unwrap();
    assert_eq!((last.data.as_slice(), last.last), (&b"done"[..], true));
    assert!(pending.is_finished());
    assert_eq!(pending.receive(), Err(CallError::Closed));
    server.join().unwrap();
}

#[test]
fn a_request_past_its_deadline_is_never_handed_out() {
    let (svc, _view) = service(&ServiceOptions::new());
    let mut client = svc.client().unwrap();
    let mut server = svc.server().unwrap();
    let t = Instant::now();
    let e = client
        .call_timeout(b"late", Duration::from_millis(30))
        .unwrap_err();
    assert!(matches!(e, CallTimeoutError::Timeout { .. }), "{e:?}");
    assert!(t.elapsed() >= Duration::from_millis(30));
    // Dropped at the timeout: the slot is free again.
    assert!(svc.state().unwrap().requests.is_empty());

    // Kept pending past its deadline: no server gets it, the client is told Timeout.
    let mut pending = client
        .send_request_timeout(b"late too", Duration::from_millis(20))
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert!(matches!(server.try_receive(), Err(TryRecvError::Empty)));
    assert!(matches!(
        pending.try_receive(),
        Err(TryResponseError::Timeout { .. })
    ));
    drop(pending);
    assert!(svc.state().unwrap().requests.is_empty());

    // A server sees the time left.
    let _p = client
        .send_request_timeout(b"in time", Duration::from_secs(5))
        .unwrap();
    let req = server.receive_timeout(BOUND).unwrap();
    let left = req.remaining().expect("a deadline");
    assert!(
        left <= Duration::from_secs(5) && left > Duration::from_secs(3),
        "{left:?}"
    );
    assert!(req.deadline().is_some());
}

#[test]
fn a_dropped_pending_response_cancels_the_request() {
    let (svc, _view) = service(&ServiceOptions::new().response_depth(1));
    let mut client = svc.client().unwrap();
    let mut server = svc.server().unwrap();
    // Queued, then dropped: gone from the queue.
    drop(client.send_request(b"never mind").unwrap());
    assert!(matches!(server.try_receive(), Err(TryRecvError::Empty)));
    // Taken, then dropped: the server sees it.
    let pending = client.send_request(b"stop").unwrap();
    let mut req = server.receive_timeout(BOUND).unwrap();
    assert!(!req.is_cancelled());
    req.respond(b"one").unwrap();
    drop(pending);
    assert!(req.is_cancelled());
    // Blocked for room, or not: either way `Cancelled`, at once.
    assert_eq!(req.respond(b"two"), Err(RespondError::Cancelled));
    assert_eq!(
        svc.state().unwrap().requests.len(),
        1,
        "held until the server lets go"
    );
    drop(req);
    assert!(svc.state().unwrap().requests.is_empty());
}

#[test]
fn error_responses_and_unanswered_requests() {
    let (svc, _view) = service(&ServiceOptions::new().max_request(8).slots(2));
    let mut client = svc.client().unwrap();
    let mut server = svc.server().unwrap();
    let p1 = client.send_request(b"a").unwrap();
    let p2 = client.send_request(b"b").unwrap();
    // Every slot held: the try form says Full, the others wait.
    assert!(matches!(client.try_call(b"c"), Err(TryCallError::Full)));
    assert!(matches!(
        client.send_request_timeout(b"c", Duration::from_millis(10)),
        Err(CallTimeoutError::Timeout { .. })
    ));
    assert_eq!(
        client.try_call(&[0; 9]).unwrap_err(),
        TryCallError::MessageTooLarge { len: 9, max: 8 }
    );
    let (mut p1, mut p2) = (p1, p2);
    let r1 = server.receive_timeout(BOUND).unwrap();
    assert_eq!(r1.data(), b"a", "the oldest request first");
    r1.respond_error(77).unwrap();
    assert_eq!(p1.receive(), Err(CallError::ServerError { code: 77 }));
    let r2 = server.receive_timeout(BOUND).unwrap();
    drop(r2); // unanswered
    assert_eq!(p2.receive(), Err(CallError::Closed));
    let e: Error = CallError::ServerError { code: 77 }.into();
    assert_eq!(e.to_string(), "the server answered with error code 77");
}

#[test]
fn ends_are_limited_and_lines_come_back() {
    let (svc, _view) = service(&ServiceOptions::new().max_clients(1).max_servers(1));
    let c = svc.client().unwrap();
    assert_eq!(svc.client().unwrap_err(), Error::ClientsFull { max: 1 });
    let s = svc.server().unwrap();
    assert_eq!(svc.server().unwrap_err(), Error::ServersFull { max: 1 });
    let st = svc.state().unwrap();
    assert_eq!((st.client_pids.len(), st.server_pids.len()), (1, 1));
    drop((c, s));
    svc.client().unwrap();
    svc.server().unwrap();
}

#[test]
fn the_async_forms_run_the_same_steps() {
    let (svc, _view) = service(&ServiceOptions::new());
    let server = {
        let svc = svc.clone();
        std::thread::spawn(move || {
            let mut server = svc.server().unwrap();
            for _ in 0..100 {
                let req = block_on(server.receive_async()).unwrap();
                let a = answer(req.data());
                req.respond_last(&a).unwrap();
            }
        })
    };
    let mut client = svc.client().unwrap();
    for i in 0..100u32 {
        let req = i.to_le_bytes();
        let r = block_on(client.call_async(&req)).unwrap();
        assert_eq!(r.data, answer(&req));
    }
    server.join().unwrap();
}

#[test]
fn an_idle_client_can_be_woken_from_sleep() {
    // The client sleeps (no spin) and the server answers 20 ms later: the wake-up works.
    let (svc, _view) = service(&ServiceOptions::new());
    let server = {
        let svc = svc.clone();
        std::thread::spawn(move || {
            let mut server = svc.server().unwrap();
            server.set_wait(shm_core::WaitMode::Block {
                spin: Duration::ZERO,
            });
            for _ in 0..20 {
                let req = server.receive_timeout(BOUND).unwrap();
                std::thread::sleep(Duration::from_millis(2));
                let a = answer(req.data());
                req.respond_last(&a).unwrap();
            }
        })
    };
    let mut client = svc.client().unwrap();
    client.set_wait(shm_core::WaitMode::Block {
        spin: Duration::ZERO,
    });
    for i in 0..20u8 {
        assert_eq!(client.call(&[i, 1]).unwrap().data, answer(&[i, 1]));
    }
    server.join().unwrap();
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct Query {
    x: u64,
}
impl Record for Query {
    const NAME: &'static str = "Query";
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct Answer {
    y: u64,
    z: u64,
}
impl Record for Answer {
    const NAME: &'static str = "Answer";
}

#[test]
fn typed_services_check_both_records_on_attach() {
    let opts = ServiceOptions::new()
        .record::<Query>()
        .response_record::<Answer>();
    let (svc, view) = service(&opts);
    assert_eq!(svc.max_request(), 8);
    assert_eq!(svc.max_response(), 16);
    let typed = Service::attach_records::<Query, Answer>(view.share()).unwrap();
    assert_eq!(typed.records().0.unwrap().name(), "Query");
    assert!(matches!(
        Service::attach_records::<Query, Query>(view.share()),
        Err(Error::SchemaMismatch { .. })
    ));
    assert!(matches!(
        Service::attach_records::<Answer, Answer>(view.share()),
        Err(Error::SchemaMismatch { .. })
    ));
    // Bytes attach too.
    Service::attach(view).unwrap();
}

#[test]
fn a_wait_set_sees_a_request_for_its_server() {
    let (svc, _view) = service(&ServiceOptions::new());
    let mut server = svc.server().unwrap();
    let mut set = WaitSet::new();
    let key = set.attach(&server).unwrap();
    let t = {
        let svc = svc.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let mut c = svc.client().unwrap();
            c.call_timeout(b"hi", BOUND).unwrap()
        })
    };
    let ready = set.wait_timeout(BOUND).unwrap();
    assert!(ready.iter().any(|r| r.key == key), "{ready:?}");
    let req = server.try_receive().unwrap();
    req.respond_last(b"hello").unwrap();
    assert_eq!(t.join().unwrap().data, b"hello");
}

#[test]
fn options_out_of_range_are_refused() {
    for opts in [
        ServiceOptions::new().slots(0),
        ServiceOptions::new().slots(5000),
        ServiceOptions::new().max_request(0),
        ServiceOptions::new().max_response(1 << 30),
        ServiceOptions::new().response_depth(0),
        ServiceOptions::new().max_clients(0),
        ServiceOptions::new().max_servers(2000),
        ServiceOptions::new()
            .slots(4096)
            .response_depth(256)
            .max_response(64 << 20),
    ] {
        assert!(
            matches!(opts.segment_len(), Err(Error::InvalidOption { .. })),
            "{opts:?}"
        );
    }
}
