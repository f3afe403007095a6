//! A service carried between two Zenoh sessions on 127.0.0.1 (scouting off) in one
//! process: the local servers of one side answer the clients of the other. Links cut and
//! hosts dying are in `shm-demo/tests/netns.rs`.

use std::time::Duration;

use shm_core::service::{Service, ServiceOptions};
use shm_core::testing::{free_port, unique_name};
use shm_core::{CallTimeoutError, RecvTimeoutError, Schema};
use shm_posix::{PosixShm, ShmOptions};
use shm_zenoh::{
    BridgeConfig, BridgeError, ServiceExportOptions, ServiceExporter, ServiceImportOptions,
    ServiceImporter,
};

/// Two peers: one listening, one connected to it.
fn pair() -> (zenoh::Session, zenoh::Session) {
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let a = BridgeConfig::new().listen(&ep).open().unwrap();
    let b = BridgeConfig::new().connect(&ep).open().unwrap();
    (a, b)
}

/// A named posix memory for `len` bytes, unlinked when the test's service drops it.
fn posix(len: u64) -> PosixShm {
    let name = format!("/{}", unique_name("zsvc"));
    ShmOptions::new(&name).size(len).create().unwrap()
}

/// Answers requests on `svc` until told `stop`: `echo:X` → X (last); `stream:N` → N
/// responses then a last `end`; `err:C` → error code C; `left` → the milliseconds left to
/// the request's deadline as it arrived; `ignore` → nothing, held until cancelled;
/// `drop` → dropped unanswered.
fn serve(svc: Service<PosixShm>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut server = svc.server().unwrap();
        let mut held = Vec::new();
        loop {
            let mut req = match server.receive_timeout(Duration::from_millis(50)) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout { .. }) => continue,
                Err(e) => panic!("{e:?}"),
            };
            let data = String::from_utf8(req.data().to_vec()).unwrap();
            let (verb, arg) = data.split_once(':').unwrap_or((&data, ""));
            match verb {
                "echo" => req.respond_last(arg.as_bytes()).unwrap(),
                "stream" => {
                    for i in 0..arg.parse::<u32>().unwrap() {
                        req.respond(&i.to_le_bytes()).unwrap();
                    }
                    req.respond_last(b"end").unwrap();
                }
                "err" => req.respond_error(arg.parse().unwrap()).unwrap(),
                "left" => {
                    let ms = req.remaining().unwrap().as_millis() as u64;
                    req.respond_last(&ms.to_le_bytes()).unwrap();
                }
                "ignore" => held.push(req),
                "drop" => drop(req),
                "stop" => return,
                v => panic!("{v}"),
            }
        }
    })
}

#[test]
fn calls_streams_errors_deadlines_and_closes_cross_the_bridge() {
    let (a, b) = pair();
    let opts = ServiceOptions::new().max_request(64).max_response(128);
    let local = Service::create(posix(opts.segment_len().unwrap()), &opts).unwrap();
    let server = serve(local.clone());
    let key = format!("shm/svc/{}", unique_name("k"));
    let exporter =
        ServiceExporter::start(&a, local.clone(), &ServiceExportOptions::new(&key)).unwrap();
    let importer = ServiceImporter::<PosixShm>::start(
        &b,
        &ServiceImportOptions::new(&key).wait_exporter(Duration::from_secs(10)),
        |len| Ok(posix(len)),
    )
    .unwrap();
    let remote = importer.service().clone();
    assert_eq!(remote.max_request(), 64);
    assert_eq!(remote.max_response(), 128);
    let mut c = remote.client().unwrap();
    let t = Duration::from_secs(10);

    // A unary call (the first may wait for the query route to settle).
    let r = c.call_timeout(b"echo:hello", t).unwrap();
    assert_eq!((r.data.as_slice(), r.last), (&b"hello"[..], true));
    for i in 0..100 {
        let msg = format!("echo:{i}");
        let r = c.call_timeout(msg.as_bytes(), t).unwrap();
        assert_eq!(r.data, i.to_string().into_bytes());
    }

    // A stream: every response in order, the last marked.
    let mut p = c.send_request_timeout(b"stream:10", t).unwrap();
    for i in 0..10u32 {
        let r = p.receive_timeout(t).unwrap();
        assert_eq!((r.data, r.last), (i.to_le_bytes().to_vec(), false));
    }
    let r = p.receive_timeout(t).unwrap();
    assert_eq!((r.data.as_slice(), r.last), (&b"end"[..], true));
    assert!(matches!(
        p.receive_timeout(t),
        Err(CallTimeoutError::Closed)
    ));
    drop(p);

    // The remote server's error code.
    assert!(matches!(
        c.call_timeout(b"err:42", t),
        Err(CallTimeoutError::ServerError { code: 42 })
    ));
    // The deadline travels: the remote server sees what is left of 5 s, not more.
    let r = c.call_timeout(b"left", Duration::from_secs(5)).unwrap();
    let left = u64::from_le_bytes(r.data.try_into().unwrap());
    assert!(left <= 5000 && left > 0, "{left} ms left");
    // A remote server that does not answer: the call ends at its deadline with Timeout.
    assert!(matches!(
        c.call_timeout(b"ignore", Duration::from_millis(500)),
        Err(CallTimeoutError::Timeout { .. })
    ));
    // A remote server that drops the request: Closed.
    assert!(matches!(
        c.call_timeout(b"drop", t),
        Err(CallTimeoutError::Closed)
    ));
    // Too large for the service: refused here, before anything is sent.
    assert!(matches!(
        c.call_timeout(&[0u8; 65], t),
        Err(CallTimeoutError::MessageTooLarge { .. })
    ));
    // And calls go on.
    let r = c.call_timeout(b"echo:again", t).unwrap();
    assert_eq!(r.data, b"again");

    let s = importer.stats();
    assert!(s.calls >= 107, "{s:?}");
    assert_eq!(s.rejected, 0, "{s:?}");
    let es = exporter.stats();
    assert!(es.responses >= 113, "{es:?}");
    drop(c);
    drop(importer);
    drop(exporter);
    let mut stopper = local.client().unwrap();
    let _pending = stopper.try_call(b"stop").unwrap(); // (dropped: cancelled unseen)
    server.join().unwrap();
}

#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Req {
    a: u64,
    b: u64,
}
impl shm_core::Record for Req {
    const NAME: &'static str = "Req";
    const VERSION: u32 = 2;
}

#[test]
fn the_import_has_the_exporters_record_types_and_no_exporter_is_an_error() {
    let (a, b) = pair();
    let opts = ServiceOptions::new()
        .record::<Req>()
        .response_record::<u64>();
    let local = Service::create(posix(opts.segment_len().unwrap()), &opts).unwrap();
    let key = format!("shm/svc/{}", unique_name("k"));
    let _exporter = ServiceExporter::start(&a, local, &ServiceExportOptions::new(&key)).unwrap();
    let importer = ServiceImporter::<PosixShm>::start(
        &b,
        &ServiceImportOptions::new(&key).wait_exporter(Duration::from_secs(10)),
        |len| Ok(posix(len)),
    )
    .unwrap();
    assert_eq!(
        importer.service().records(),
        (
            Some(Schema::of::<Req>().unwrap()),
            Some(Schema::of::<u64>().unwrap())
        )
    );
    let none = ServiceImporter::<PosixShm>::start(
        &b,
        &ServiceImportOptions::new("shm/svc/nobody").wait_exporter(Duration::from_millis(300)),
        |_| Err("must not be called".into()),
    );
    assert!(
        matches!(none, Err(BridgeError::NoExporter { .. })),
        "{none:?}"
    );
}

/// A peer's numbers are not trusted: an exporter announcing messages past the import's
/// limit is refused before anything is made, and a query with the largest deadline the
/// wire can say (`u64::MAX` nanoseconds, 584 years) is served.
#[test]
fn hostile_announcements_and_deadlines_are_refused_or_bounded() {
    let (a, b) = pair();
    let opts = ServiceOptions::new().max_request(64).max_response(2 << 20);
    let local = Service::create(posix(opts.segment_len().unwrap()), &opts).unwrap();
    let server = serve(local.clone());
    let key = format!("shm/svc/{}", unique_name("k"));
    let _exporter =
        ServiceExporter::start(&a, local.clone(), &ServiceExportOptions::new(&key)).unwrap();
    let small = ServiceImporter::<PosixShm>::start(
        &b,
        &ServiceImportOptions::new(&key)
            .wait_exporter(Duration::from_secs(10))
            .max_message(1 << 20),
        |_| Err("must not be called".into()),
    );
    assert!(
        matches!(small, Err(BridgeError::TooLarge { announced, limit: 1048576 }) if announced == 2 << 20),
        "{small:?}"
    );
    // A raw query with the largest deadline the wire can say.
    use zenoh::Wait as _;
    let end = std::time::Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let replies = b
            .get(&key)
            .payload(b"echo:far".to_vec())
            .attachment(shm_zenoh::wire::encode_query(u64::MAX, false).to_vec())
            .timeout(Duration::from_secs(5))
            .wait()
            .unwrap();
        if let Ok(reply) = replies.recv() {
            break reply;
        }
        assert!(std::time::Instant::now() < end, "never answered");
    };
    let sample = answer.result().expect("an answer, not an error");
    assert_eq!(sample.payload().to_bytes().as_ref(), b"far");
    let mut stopper = local.client().unwrap();
    let _pending = stopper.try_call(b"stop").unwrap(); // (dropped: cancelled unseen)
    server.join().unwrap();
}
