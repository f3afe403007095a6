//! The README's wait set over two cameras, on named POSIX segments: the same calls, with
//! the publishers in threads and the loop bounded.

use std::time::Duration;

use shm_core::testing::unique_name;
use shm_core::{waitset::WaitSet, Broadcast, BroadcastOptions};
use shm_posix::ShmOptions;

#[test]
fn the_readme_wait_set_over_two_cameras() -> Result<(), Box<dyn std::error::Error>> {
    let opts = BroadcastOptions::new().slots(16).max_message(64);
    let len = opts.segment_len()?;
    let (nl, nr) = (unique_name("/shm-ws-left"), unique_name("/shm-ws-right"));
    let bl = Broadcast::create(ShmOptions::new(&nl).size(len).create()?, &opts)?;
    let br = Broadcast::create(ShmOptions::new(&nr).size(len).create()?, &opts)?;

    let mut left = Broadcast::attach(ShmOptions::new(&nl).open()?)?.subscriber()?;
    let mut right = Broadcast::attach(ShmOptions::new(&nr).open()?)?.subscriber()?;
    let mut set = WaitSet::new();
    let (l, r) = (set.attach(&left)?, set.attach(&right)?);

    let feed = |b: Broadcast<shm_posix::PosixShm>, tag: u8| {
        std::thread::spawn(move || {
            let mut p = b.publisher().unwrap();
            for i in 0..200u8 {
                p.publish(&[tag, i]).unwrap();
                if i % 16 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let (tl, tr) = (feed(bl, b'L'), feed(br, b'R'));
    let mut frame = Vec::new();
    let (mut got_l, mut got_r) = (0u8, 0u8);
    while got_l < 200 || got_r < 200 {
        for ready in set.wait_timeout(Duration::from_secs(10))? {
            let (cam, tag, got) = if ready.key == l {
                (&mut left, b'L', &mut got_l)
            } else {
                assert_eq!(ready.key, r);
                (&mut right, b'R', &mut got_r)
            };
            while let Ok(len) = cam.try_recv_into(&mut frame) {
                assert_eq!(&frame[..len], &[tag, *got]);
                *got += 1;
            }
        }
    }
    tl.join().unwrap();
    tr.join().unwrap();
    Ok(())
}
