//! 100 export/import start-stop cycles leave no fd, thread or `/dev/shm` entry behind.
//! Its own test binary: the counts are of this process, with nothing else running in it.

use shm_core::testing::numbered;
use std::time::Duration;

use shm_core::testing::fd_count;
use shm_core::{Broadcast, BroadcastOptions};
use shm_posix::ShmOptions;
use shm_zenoh::{BridgeConfig, ExportOptions, Exporter, ImportOptions, Importer};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn a_hundred_start_stop_cycles_leak_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = format!("tcp/127.0.0.1:{port}");
    let a = BridgeConfig::new().listen(&ep).open().unwrap();
    let b = BridgeConfig::new().connect(&ep).open().unwrap();
    let pid = std::process::id();
    let opts = BroadcastOptions::new().slots(4).max_message(64);
    let src_name = format!("/zcycle-src-{pid}");
    let mem = ShmOptions::new(&src_name)
        .size(opts.segment_len().unwrap())
        .create()
        .unwrap();
    let src = Broadcast::create(mem, &opts).unwrap();
    let mut publisher = src.publisher().unwrap();
    let key = format!("shm-test/cycles/{pid}");
    let mut cycle = |i: u32| {
        let exporter = Exporter::start(&a, src.clone(), &ExportOptions::new(&key)).unwrap();
        let dst = format!("/zcycle-dst-{pid}-{i}");
        let d2 = dst.clone();
        let importer = Importer::start(
            &b,
            &ImportOptions::new(&key).wait_exporter(Duration::from_secs(20)),
            move |len| Ok(ShmOptions::new(&d2).size(len).create()?),
        )
        .unwrap();
        let mut sub = Broadcast::attach(ShmOptions::new(&dst).open().unwrap())
            .unwrap()
            .subscriber()
            .unwrap();
        assert!(
            exporter.wait_matched(Duration::from_secs(20)),
            "cycle {i}: never matched"
        );
        // One message through, whole.
        let mut buf = Vec::new();
        let mut got = false;
        for _ in 0..100 {
            publisher.publish(&u64::from(i).to_le_bytes()).unwrap();
            match numbered(&mut sub, |s| {
                s.recv_into_timeout(&mut buf, Duration::from_millis(200))
            }) {
                Ok(_) => {
                    assert_eq!(buf, u64::from(i).to_le_bytes());
                    got = true;
                    break;
                }
                Err(shm_core::Error::Timeout { .. }) => {}
                Err(e) => panic!("cycle {i}: {e:?}"),
            }
        }
        assert!(got, "cycle {i}: nothing arrived");
        drop(sub);
        importer.stop().unwrap();
        exporter.stop().unwrap();
        assert!(
            !std::path::Path::new(&format!("/dev/shm{dst}")).exists(),
            "cycle {i}: {dst} left behind"
        );
    };
    for i in 0..3 {
        cycle(i); // Zenoh starts its runtime threads lazily: count after these
    }
    let (fds, threads) = (fd_count(), count("/proc/self/task"));
    for i in 3..103 {
        cycle(i);
    }
    // Give Zenoh's tasks a moment to close what the last cycle undeclared.
    let mut after = (0, 0);
    for _ in 0..100 {
        after = (fd_count(), count("/proc/self/task"));
        if after.0 <= fds && after.1 <= threads {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        after.0 <= fds,
        "fds: {fds} before 100 cycles, {} after",
        after.0
    );
    assert!(
        after.1 <= threads,
        "threads: {threads} before 100 cycles, {} after",
        after.1
    );
}
