//! Services between processes on every backend: the other side is a forked process on
//! real backends (killed with SIGKILL where a case needs a death), a thread on the heap
//! backend.

use std::time::{Duration, Instant};

use super::families::Other;
use super::Backend;
use crate::format::error::{CallTimeoutError, RecvTimeoutError};
use crate::format::memory::SharedMemory;
use crate::service::{Service, ServiceOptions};

/// How long one call waits at most (a bound, never a measure).
const BOUND: Duration = Duration::from_secs(20);

/// What the test servers answer: the request reversed, each byte plus one.
fn answer(req: &[u8]) -> Vec<u8> {
    req.iter().rev().map(|b| b.wrapping_add(1)).collect()
}

/// The test server: answers every request; `stream N` with N responses and a last one;
/// `die` by killing its own process while it holds the request (a thread just drops it).
fn serve<M: SharedMemory>(mem: M, forked: bool) -> i32 {
    let Ok(svc) = Service::attach(mem) else {
        return 2;
    };
    let Ok(mut server) = svc.server() else {
        return 3;
    };
    loop {
        let mut req = match server.receive_timeout(BOUND) {
            Ok(r) => r,
            Err(_) => return 4,
        };
        let data = req.take_data();
        if data == b"die" {
            if forked {
                // SAFETY: kill on our own pid; the process ends here, holding the request.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
            return 0;
        }
        if let Some(n) = data.strip_prefix(b"stream ") {
            let n: u32 = std::str::from_utf8(n)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            for i in 0..n {
                if req.respond(&i.to_le_bytes()).is_err() {
                    return 5;
                }
            }
            if req.respond_last(b"end").is_err() {
                return 6;
            }
            continue;
        }
        if data == b"who" {
            let _ = req.respond_last(&std::process::id().to_le_bytes());
            continue;
        }
        if data.starts_with(b"slow ") {
            // Long enough to be killed in, even on a loaded machine.
            std::thread::sleep(Duration::from_millis(20));
        }
        // A cancelled request (its client died) is fine: nothing to answer.
        let _ = req.respond_last(&answer(&data));
    }
}

/// A service between two processes: 500 calls of 1 to 300 bytes to a server in the
/// other process, each answer checked; a stream of 40 responses through a ring of 4; a
/// call whose server dies holding it ends with `PeerDied` and its pid (a thread's drop:
/// `Closed`). Then, on real backends: an idempotent request whose server dies goes back
/// to the queue and is answered by another server; a client that dies with a request
/// queued leaves nothing a server is handed; and no slot stays held.
pub fn service_across_processes<B: Backend>(b: &mut B)
where
    B::Mem: Sync,
{
    let opts = ServiceOptions::new()
        .slots(16)
        .max_request(512)
        .max_response(512)
        .response_depth(4);
    let mem = b.create(opts.segment_len().expect("fits") as usize);
    let view = b.reopen(&mem);
    let svc = Service::create(mem, &opts).expect("create");
    let forked = b.shared_across_fork();
    let other = Other::start(forked, move || serve(view, forked));
    let mut client = svc.client().expect("client");
    for i in 0..500u64 {
        let len = 1 + (i.wrapping_mul(7919) % 300) as usize;
        let req: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect();
        let r = client
            .call_timeout(&req, BOUND)
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(r.data, answer(&req), "call {i}");
        assert!(r.last);
    }
    let mut pending = client.send_request(b"stream 40").expect("stream");
    for i in 0u32..40 {
        let r = pending.receive_timeout(BOUND).expect("a stream's response");
        assert_eq!(
            (r.data, r.last),
            (i.to_le_bytes().to_vec(), false),
            "part {i}"
        );
    }
    let end = pending.receive_timeout(BOUND).expect("the last response");
    assert_eq!((end.data.as_slice(), end.last), (&b"end"[..], true));
    drop(pending);

    let t = Instant::now();
    let died = client.call_timeout(b"die", BOUND);
    match other.pid() {
        Some(pid) => assert_eq!(died, Err(CallTimeoutError::PeerDied { pid })),
        None => assert_eq!(died, Err(CallTimeoutError::Closed)),
    }
    assert!(t.elapsed() < BOUND / 2, "the death took {:?}", t.elapsed());
    let status = other.join();
    assert_eq!(status, if forked { -libc::SIGKILL } else { 0 });
    assert!(
        svc.state().expect("state").requests.is_empty(),
        "a slot stayed held after the server's death"
    );
    if !forked {
        return;
    }

    // An idempotent request whose server dies is answered by the next server.
    let view = b.reopen(svc.raw().memory());
    let dying = Other::start(true, move || serve(view, true));
    client.set_idempotent(true);
    let mut pending = client.send_request(b"die").expect("send");
    assert_eq!(dying.join(), -libc::SIGKILL);
    let view = b.reopen(svc.raw().memory());
    let next = std::thread::spawn(move || {
        let mut server = Service::attach(view).and_then(|s| s.server())?;
        let mut req = server.receive_timeout(BOUND)?;
        let data = req.take_data();
        req.respond_last(&answer(&data))?;
        Ok::<_, crate::format::error::Error>(())
    });
    let r = pending
        .receive_timeout(BOUND)
        .expect("answered by the next server");
    assert_eq!(r.data, answer(b"die"));
    next.join()
        .expect("server thread")
        .expect("the next server");
    drop(pending);
    client.set_idempotent(false);

    // A client that dies with a request queued: no server is handed it.
    let view = b.reopen(svc.raw().memory());
    let gone = Other::start(true, move || {
        let Ok(mut c) = Service::attach(view).and_then(|s| s.client()) else {
            return 2;
        };
        let Ok(p) = c.send_request(b"orphan") else {
            return 3;
        };
        std::mem::forget(p);
        // SAFETY: kill on our own pid: the request stays queued, its client dead.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        0
    });
    assert_eq!(gone.join(), -libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(3));
    let mut server = svc.server().expect("server");
    match server.receive_timeout(Duration::from_millis(50)) {
        Err(RecvTimeoutError::Timeout { .. }) => {}
        other => panic!("a dead client's request was handed out: {other:?}"),
    }
    assert!(svc.state().expect("state").requests.is_empty());
}

/// 10,000 calls while a peer is killed every 100: two server processes and a client
/// process that calls without pause, one of the three killed by SIGKILL (and replaced)
/// every 100 of our calls, some of them while our own request is in flight. Every call
/// ends within its bound, with the right answer or `PeerDied`; afterwards no slot is
/// lost: every slot can be taken at once.
pub fn service_kills_across_processes<B: Backend>(b: &mut B)
where
    B::Mem: Sync,
{
    if !b.shared_across_fork() {
        return; // deaths need processes
    }
    const CALLS: u64 = 10_000;
    let opts = ServiceOptions::new()
        .slots(8)
        .max_request(64)
        .max_response(64);
    let mem = b.create(opts.segment_len().expect("fits") as usize);
    let svc = Service::create(mem, &opts).expect("create");
    let start_server = |b: &mut B| {
        let view = b.reopen(svc.raw().memory());
        Other::start(true, move || serve(view, true))
    };
    let start_client = |b: &mut B| {
        let view = b.reopen(svc.raw().memory());
        Other::start(true, move || {
            let Ok(mut c) = Service::attach(view).and_then(|s| s.client()) else {
                return 2;
            };
            for i in 0u64.. {
                let req = i.to_le_bytes();
                match c.call_timeout(&req, BOUND) {
                    Ok(r) if r.data == answer(&req) => {}
                    Err(CallTimeoutError::PeerDied { .. }) => {}
                    _ => return 3,
                }
            }
            0
        })
    };
    let mut peers = [
        Some(start_server(b)),
        Some(start_server(b)),
        Some(start_client(b)),
    ];
    let mut client = svc.client().expect("client");
    let (mut ok, mut died, mut kills, mut retried) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..CALLS {
        let round = i / 100;
        let kill = i % 100 == 99;
        // Kill rounds alternate: an idempotent request, then one that is not.
        client.set_idempotent(round % 2 == 0);
        let req = if kill {
            format!("slow call {i}").into_bytes()
        } else {
            format!("call {i}").into_bytes()
        };
        let mut pending = client.send_request_timeout(&req, BOUND).expect("a slot");
        if kill {
            // Every third round the client process; else the server that holds our
            // request (once one took it).
            let k = if round % 3 == 2 {
                2
            } else {
                let me = std::process::id();
                let holder = crate::wait::poll_until(BOUND, || {
                    svc.state().ok()?.requests.iter().find_map(|r| {
                        (r.client_pid == me && r.phase == "taken").then_some(r.server_pid)
                    })
                })
                .expect("a server takes the request");
                (0..2)
                    .find(|&k| peers[k].as_ref().and_then(|p| p.pid()) == Some(holder))
                    .expect("one of our servers holds it")
            };
            drop(peers[k].take()); // SIGKILL and reap, then replace
            peers[k] = Some(if k == 2 {
                start_client(b)
            } else {
                start_server(b)
            });
            kills += 1;
        }
        match pending.receive_timeout(BOUND) {
            Ok(r) => {
                assert_eq!(r.data, answer(&req), "call {i}");
                ok += 1;
                if kill && round % 3 != 2 {
                    assert_eq!(round % 2, 0, "call {i}: answered by a dead server");
                    retried += 1;
                }
            }
            Err(CallTimeoutError::PeerDied { .. }) => {
                assert!(kill && round % 2 == 1, "call {i}: PeerDied unexpectedly");
                died += 1;
            }
            Err(e) => panic!("call {i}: {e}"),
        }
    }
    drop(peers);
    assert_eq!(ok + died, CALLS);
    assert_eq!(kills, CALLS / 100);
    // Nothing lost: once the dead are swept, every slot can be taken at once.
    svc.sweep();
    let st = svc.state().expect("state");
    assert!(
        st.requests.is_empty(),
        "slots still held: {:?}",
        st.requests
    );
    let held: Vec<_> = (0..svc.slots())
        .map(|_| client.try_call(b"x").expect("every slot free"))
        .collect();
    assert_eq!(held.len(), 8);
    assert!(matches!(
        client.try_call(b"x"),
        Err(crate::format::error::TryCallError::Full)
    ));
    // A server was killed holding our request in every round not a multiple of 3 plus 2:
    // the odd ones PeerDied, the even ones (idempotent) answered after a retry.
    let server_rounds = (0..CALLS / 100).filter(|r| r % 3 != 2);
    let odd = server_rounds.clone().filter(|r| r % 2 == 1).count() as u64;
    let even = server_rounds.count() as u64 - odd;
    assert_eq!(
        (died, retried),
        (odd, even),
        "server deaths under our requests"
    );
    println!(
        "{CALLS} calls: {ok} answered ({retried} after a retry), {died} PeerDied, {kills} kills"
    );
}

/// Fan-out across processes: with two server processes live, `send_request_to_all`
/// sends one copy to each and each answers its own (two distinct pids come back); a
/// plain request goes to one of them; with one of them SIGKILLed, a fan-out copy sent to
/// it before its death ends with `PeerDied` and the other copy is answered.
pub fn service_fan_out_across_processes<B: Backend>(b: &mut B)
where
    B::Mem: Sync,
{
    if !b.shared_across_fork() {
        return; // copies go to server processes
    }
    let opts = ServiceOptions::new()
        .slots(8)
        .max_request(64)
        .max_response(64);
    let mem = b.create(opts.segment_len().expect("fits") as usize);
    let svc = Service::create(mem, &opts).expect("create");
    let start = |b: &mut B| {
        let view = b.reopen(svc.raw().memory());
        Other::start(true, move || serve(view, true))
    };
    let (s1, s2) = (start(b), start(b));
    let pids = [s1.pid().expect("forked"), s2.pid().expect("forked")];
    let mut client = svc.client().expect("client");
    // Both servers hold their lines before the fan-out looks.
    crate::wait::poll_until(BOUND, || {
        (svc.state().ok()?.server_pids.len() == 2).then_some(())
    })
    .expect("two servers");
    for round in 0..50 {
        let copies = client
            .send_request_to_all(b"who", Some(BOUND))
            .expect("fan-out");
        assert_eq!(copies.len(), 2, "round {round}");
        let mut got: Vec<u32> = copies
            .into_iter()
            .map(|mut p| {
                let r = p.receive_timeout(BOUND).expect("an answer");
                u32::from_le_bytes(r.data[..4].try_into().expect("a pid"))
            })
            .collect();
        got.sort_unstable();
        let mut want = pids;
        want.sort_unstable();
        assert_eq!(got, want, "round {round}: each server answers its own copy");
    }
    let one = client.call_timeout(b"who", BOUND).expect("a plain call");
    assert!(pids.contains(&u32::from_le_bytes(one.data[..4].try_into().unwrap())));
    // A copy for a server that dies before taking it: PeerDied with its pid.
    let mut copies = client
        .send_request_to_all(b"slow who", Some(BOUND))
        .expect("fan-out");
    drop(s2); // SIGKILL and reap, perhaps before it took its copy
    let mut ends = Vec::new();
    for p in &mut copies {
        ends.push(p.receive_timeout(BOUND));
    }
    let answered = ends.iter().filter(|r| r.is_ok()).count();
    let died: Vec<_> = ends
        .iter()
        .filter_map(|r| match r {
            Err(CallTimeoutError::PeerDied { pid }) => Some(*pid),
            _ => None,
        })
        .collect();
    assert_eq!(answered + died.len(), 2, "{ends:?}");
    assert!(died.iter().all(|p| *p == pids[1]), "{ends:?}");
    drop(copies);
    drop(s1);
    svc.sweep();
    assert!(svc.state().expect("state").requests.is_empty());
}
