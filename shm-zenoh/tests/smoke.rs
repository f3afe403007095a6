//! The bridge's plumbing between two Zenoh sessions on 127.0.0.1 (scouting off) in one
//! process; the cross-process tests (and kills) are in `shm-demo/tests/bridge.rs`.

use std::time::Duration;

use shm_core::testing::{free_port, unique_name};
use shm_core::{Broadcast, BroadcastMode, BroadcastOptions, Error, Record};
use shm_posix::{PosixShm, ShmOptions};
use shm_zenoh::{BridgeConfig, BridgeError, ExportOptions, Exporter, ImportOptions, Importer};
use zenoh::Wait as _;

/// Two peers: one listening, one connected to it.
fn pair() -> (zenoh::Session, zenoh::Session) {
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let a = BridgeConfig::new().listen(&ep).open().unwrap();
    let b = BridgeConfig::new().connect(&ep).open().unwrap();
    (a, b)
}

fn posix(len: u64) -> (String, PosixShm) {
    let name = format!("/{}", unique_name("zsmoke"));
    let m = ShmOptions::new(&name).size(len).create().unwrap();
    (name, m)
}

fn recv(sub: &mut shm_core::Subscriber<PosixShm>, buf: &mut Vec<u8>) -> Result<u64, Error> {
    shm_core::testing::numbered(sub, |s| s.recv_into_timeout(buf, Duration::from_secs(10)))
}

#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Frame {
    n: u64,
    v: u32,
    _pad: u32,
}
impl Record for Frame {
    const NAME: &'static str = "Frame";
    const VERSION: u32 = 1;
}

#[test]
fn reliable_stream_gaps_garbage_and_close() {
    let (a, b) = pair();
    let opts = BroadcastOptions::new().slots(16).max_message(64);
    let (_src_name, mem) = posix(opts.segment_len().unwrap());
    let src = Broadcast::create(mem, &opts).unwrap();
    let mut publisher = src.publisher().unwrap();
    let key = format!("shm/test/{}", unique_name("k"));
    let exporter = Exporter::start(&a, src.clone(), &ExportOptions::new(&key)).unwrap();
    let dst_name = format!("/{}", unique_name("zimport"));
    let n2 = dst_name.clone();
    let importer = Importer::start(
        &b,
        &ImportOptions::new(&key).wait_exporter(Duration::from_secs(10)),
        move |len| Ok(ShmOptions::new(&n2).size(len).create()?),
    )
    .unwrap();
    assert!(importer.broadcast().relayed());
    // An import is never exported again.
    assert!(matches!(
        Exporter::start(
            &b,
            importer.broadcast().clone(),
            &ExportOptions::new("shm/loop")
        ),
        Err(BridgeError::Relayed)
    ));
    let mut sub = Broadcast::attach(ShmOptions::new(&dst_name).open().unwrap())
        .unwrap()
        .subscriber()
        .unwrap();
    // Garbage on the key from a plain Zenoh publisher: dropped, counted.
    let junk = a
        .declare_publisher(key.clone())
        .congestion_control(zenoh::qos::CongestionControl::Block)
        .wait()
        .unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !junk.matching_status().wait().unwrap().matching() {
        assert!(
            std::time::Instant::now() < end,
            "the junk publisher never matched"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    junk.put(vec![1u8; 10]).wait().unwrap(); // no attachment
    junk.put(vec![1u8; 10])
        .attachment(vec![0u8; 5])
        .wait()
        .unwrap(); // short
    junk.put(vec![1u8; 10])
        .attachment(vec![0u8; 32])
        .wait()
        .unwrap(); // bad magic
    let mut forged = shm_zenoh::wire::SampleHeader {
        mode: BroadcastMode::Reliable,
        flags: 0,
        exporter: exporter.id(),
        number: 0,
        schema: 12345,
    };
    junk.put(vec![1u8; 10])
        .attachment(forged.encode().to_vec())
        .wait()
        .unwrap(); // schema
    forged.schema = shm_zenoh::wire::fingerprint(&src.schema());
    forged.exporter = 99;
    junk.put(vec![1u8; 10])
        .attachment(forged.encode().to_vec())
        .wait()
        .unwrap(); // foreign
    forged.exporter = exporter.id();
    junk.put(vec![1u8; 100])
        .attachment(forged.encode().to_vec())
        .wait()
        .unwrap(); // too long

    let mut buf = Vec::new();
    for i in 0..1000u64 {
        publisher.publish(&i.to_le_bytes()).unwrap();
    }
    for i in 0..1000u64 {
        assert_eq!(recv(&mut sub, &mut buf), Ok(i));
        assert_eq!(buf, i.to_le_bytes());
    }
    // A regressing number from the real exporter's identity: dropped, counted.
    forged.number = 5;
    forged.exporter = exporter.id();
    junk.put(vec![1u8; 8])
        .attachment(forged.encode().to_vec())
        .wait()
        .unwrap();
    // A gap in the source is exact for the subscribers of the import: here the source
    // itself reports a gap of 7 (numbers 1000..=1006) and the numbers travel.
    publisher.publish_gap(7).unwrap();
    publisher.publish(b"after").unwrap();
    // The import keeps the source's numbers: the gap is exact, the next number too.
    assert_eq!(recv(&mut sub, &mut buf), Err(Error::Lagged { missed: 7 }));
    assert_eq!(recv(&mut sub, &mut buf), Ok(1007));
    assert_eq!(buf, b"after");
    drop(publisher); // the source closes: the end travels, the import closes
    assert_eq!(recv(&mut sub, &mut buf), Err(Error::Closed));
    let es = exporter.join().unwrap();
    let is = importer.join().unwrap();
    assert_eq!(es.sent, 1002);
    assert_eq!(is.delivered, 1001);
    assert_eq!(is.missed, 7);
    assert_eq!(is.rejected_header, 2, "{is:?}");
    assert_eq!(is.rejected_magic, 1, "{is:?}");
    assert_eq!(is.rejected_schema, 1, "{is:?}");
    assert_eq!(is.rejected_foreign, 1, "{is:?}");
    assert_eq!(is.rejected_too_long, 1, "{is:?}");
    assert_eq!(is.rejected_regressing, 1, "{is:?}");
}

#[test]
fn an_importer_expecting_another_type_creates_nothing() {
    let (a, b) = pair();
    let opts = BroadcastOptions::new().slots(4).record::<Frame>();
    let (_n, mem) = posix(opts.segment_len().unwrap());
    let src = Broadcast::create(mem, &opts).unwrap();
    let key = format!("shm/test/{}", unique_name("k"));
    let _exporter = Exporter::start(&a, src, &ExportOptions::new(&key)).unwrap();
    let made = std::cell::Cell::new(false);
    let r = Importer::<PosixShm>::start(
        &b,
        &ImportOptions::new(&key)
            .record::<u64>()
            .wait_exporter(Duration::from_secs(10)),
        |_| {
            made.set(true);
            Err("must not be called".into())
        },
    );
    assert!(
        matches!(r, Err(BridgeError::Shm(Error::SchemaMismatch { .. }))),
        "{r:?}"
    );
    assert!(!made.get());
    // An announcement above the importer's limit is refused, also before anything is made.
    let r = Importer::<PosixShm>::start(
        &b,
        &ImportOptions::new(&key)
            .max_message(8)
            .wait_exporter(Duration::from_secs(10)),
        |_| {
            made.set(true);
            Err("must not be called".into())
        },
    );
    assert!(
        matches!(
            r,
            Err(BridgeError::TooLarge {
                announced: 16,
                limit: 8
            })
        ),
        "{r:?}"
    );
    assert!(!made.get());
    // The right type imports.
    let dst = format!("/{}", unique_name("zimport"));
    let d2 = dst.clone();
    let imp = Importer::start(
        &b,
        &ImportOptions::new(&key)
            .record::<Frame>()
            .wait_exporter(Duration::from_secs(10)),
        move |len| Ok(ShmOptions::new(&d2).size(len).create()?),
    )
    .unwrap();
    assert_eq!(
        imp.broadcast().schema(),
        shm_core::Schema::of::<Frame>().unwrap()
    );
    // And the listing shows the export with its schema.
    let seen = shm_zenoh::list(&b, Duration::ZERO).unwrap();
    let e = seen.iter().find(|e| e.key == key).expect("listed");
    assert_eq!(e.schema.name(), "Frame");
}

#[test]
fn no_exporter_is_a_typed_error_in_time() {
    let (_a, b) = pair();
    let r = Importer::<PosixShm>::start(
        &b,
        &ImportOptions::new("shm/nobody/here").wait_exporter(Duration::from_millis(300)),
        |_| Err("unreachable".into()),
    );
    assert!(matches!(r, Err(BridgeError::NoExporter { .. })), "{r:?}");
}
