//! A channel carried between two Zenoh sessions on 127.0.0.1 (scouting off) in one
//! process: order, back-pressure end to end, one importer. Cuts are in
//! `shm-demo/tests/netns.rs`.

use std::time::{Duration, Instant};

use shm_core::testing::{free_port, unique_name};
use shm_core::{Channel, ChannelOptions, RecvTimeoutError, TrySendError};
use shm_posix::{PosixShm, ShmOptions};
use shm_zenoh::{
    export_channel, BridgeConfig, BridgeError, ChannelImporter, ExportOptions, ImportOptions,
};

fn pair() -> (zenoh::Session, zenoh::Session) {
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let a = BridgeConfig::new().listen(&ep).open().unwrap();
    let b = BridgeConfig::new().connect(&ep).open().unwrap();
    (a, b)
}

fn posix(len: u64) -> PosixShm {
    let name = format!("/{}", unique_name("zchan"));
    ShmOptions::new(&name).size(len).create().unwrap()
}

#[test]
fn a_full_remote_ring_holds_the_local_sender_and_nothing_is_lost() {
    let (a, b) = pair();
    let opts = ChannelOptions::new().capacity(4096);
    let local = Channel::create(posix(opts.segment_len().unwrap()), &opts).unwrap();
    let mut tx = local.sender(0).unwrap();
    let key = format!("shm/chan/{}", unique_name("k"));
    let exporter = export_channel(&a, &local, 0, &ExportOptions::new(&key)).unwrap();
    let iopts = ImportOptions::new(&key)
        .wait_exporter(Duration::from_secs(10))
        .queue(16);
    let importer =
        ChannelImporter::<PosixShm>::start(&b, &iopts, Some(4096), |len| Ok(posix(len))).unwrap();
    // A second importer would split the stream: refused.
    let second = ChannelImporter::<PosixShm>::start(&b, &iopts, None, |len| Ok(posix(len)));
    assert!(
        matches!(second, Err(BridgeError::Taken { .. })),
        "{second:?}"
    );
    let mut rx = importer.channel().receiver(0).unwrap();

    // Nobody reads on the far side: the sender fills both rings and whatever Zenoh and
    // the sockets buffer, and then is held (`Full` for a whole second).
    let mut sent = 0u64;
    let mut full_since: Option<Instant> = None;
    let bound = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < bound, "never held back ({sent} sent)");
        match tx.try_send(&sent.to_le_bytes()) {
            Ok(()) => {
                sent += 1;
                full_since = None;
            }
            Err(TrySendError::Full) => {
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(1) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(sent > 0);
    drop(tx); // closes: the end travels after the last message
              // Every message, in order, once; then Closed.
    let mut buf = Vec::new();
    for i in 0..sent {
        rx.recv_into_timeout(&mut buf, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("message {i} of {sent}: {e:?}"));
        assert_eq!(buf, i.to_le_bytes(), "message {i}");
    }
    assert!(matches!(
        rx.recv_into_timeout(&mut buf, Duration::from_secs(30)),
        Err(RecvTimeoutError::Closed)
    ));
    let es = exporter.join().unwrap();
    assert_eq!(es.sent, sent + 1, "{es:?}"); // and the end
    let is = importer.join().unwrap();
    assert_eq!(is.delivered, sent, "{is:?}");
    assert_eq!(is.missed, 0, "{is:?}");
    eprintln!("held back after {sent} messages of 8 B");
}
