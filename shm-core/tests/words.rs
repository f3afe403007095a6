//! The word tables (`shm_core::format::words`): the docs print exactly the tables, and
//! every control byte an honest run of each layout changes lies in a word of its table
//! (a word added to a layout without a row fails here).
#![cfg(not(loom))]

use shm_core::testing::numbered;
use std::time::Duration;

use shm_core::broadcast::{self, Broadcast, BroadcastMode, BroadcastOptions};
use shm_core::channel::{self, Channel, ChannelOptions};
use shm_core::event::{self, Event, EventOptions};
use shm_core::format::layout::HEADER_WORDS;
use shm_core::format::memory::SharedMemory;
use shm_core::format::words::{self, Region, Word};
use shm_core::seqlock::{self, SeqLock};
use shm_core::HeapMemory;

#[test]
fn the_docs_print_the_tables() {
    let dir = env!("CARGO_MANIFEST_DIR");
    for (table, file) in [
        (broadcast::WORDS, "src/broadcast/words.md"),
        (channel::WORDS, "src/channel/words.md"),
        (seqlock::WORDS, "src/seqlock/words.md"),
        (event::WORDS, "src/event/words.md"),
        (shm_core::service::WORDS, "src/service/words.md"),
        (HEADER_WORDS, "src/format/header_words.md"),
    ] {
        let path = format!("{dir}/{file}");
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        words::assert_docs_match(table, &doc, &path);
    }
}

fn snapshot(mem: &HeapMemory) -> Vec<u8> {
    let mut v = vec![0u8; mem.len()];
    shm_core::conformance::peek(mem, 0, &mut v);
    v
}

/// Every byte that differs between `before` and `after` inside `[from, to)` (offsets in
/// the segment) must be covered by a row of `table` once placed by `place`, which maps a
/// segment offset to the region and offset the rows use (or `None`: data, not a word).
fn assert_covered(
    what: &str,
    table: &[Word],
    before: &[u8],
    after: &[u8],
    place: impl Fn(u64) -> Option<(Region, u64)>,
) {
    let mut changed = 0;
    for (i, (a, b)) in before.iter().zip(after).enumerate() {
        if a == b {
            continue;
        }
        changed += 1;
        let Some((region, off)) = place(i as u64) else {
            continue;
        };
        let covered = words::covers(table, region, off) || words::covers(HEADER_WORDS, region, off);
        assert!(
            covered,
            "{what}: byte {i} ({region:?} +{off}) changed in an honest run but lies in no word of the table"
        );
    }
    assert!(changed > 0, "{what}: the honest run changed nothing");
}

const P: u64 = 128; // the payload offset

#[test]
fn every_broadcast_word_an_honest_run_writes_has_a_row() {
    for mode in [BroadcastMode::Reliable, BroadcastMode::Lossy] {
        let opts = BroadcastOptions::new()
            .mode(mode)
            .slots(4)
            .max_message(8)
            .max_subscribers(3)
            .evict_timeout(Duration::from_millis(50));
        let len = opts.segment_len().unwrap() as usize;
        let mem = HeapMemory::new(len);
        let spy = mem.share();
        let before = snapshot(&spy);
        let b = Broadcast::create(mem, &opts).unwrap();
        {
            let mut p = b.publisher().unwrap();
            p.start_at(5).unwrap();
            let mut s1 = b.subscriber().unwrap();
            let mut stuck = b.subscriber().unwrap();
            let mut buf = Vec::new();
            // A sleeping subscriber, woken by a publish (sleepers, data_seq).
            let mut s2 = b.subscriber().unwrap();
            let t = std::thread::spawn(move || {
                let mut buf = Vec::new();
                // Lossy: the publisher may lap it before it runs.
                match numbered(&mut s2, |s| {
                    s.recv_into_timeout(&mut buf, Duration::from_secs(10))
                }) {
                    Ok(_) | Err(shm_core::Error::Lagged { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                s2
            });
            std::thread::sleep(Duration::from_millis(100));
            for i in 0..12u64 {
                p.publish(&i.to_ne_bytes()).unwrap();
                let _ = numbered(&mut s1, |s| s.try_recv_into(&mut buf));
            }
            p.publish_gap(3).unwrap();
            p.publish_upstream_lost().unwrap();
            p.upstream_restored().unwrap();
            let _ = numbered(&mut stuck, |s| s.try_recv_into(&mut buf));
            drop(t.join().unwrap());
        }
        let after = snapshot(&spy);
        let slots_at = 640 + 128 * 3;
        let slot_size = 64;
        assert_covered(
            &format!("broadcast {mode:?}"),
            broadcast::WORDS,
            &before,
            &after,
            |i| {
                if i < P {
                    return Some((Region::Header, i));
                }
                let o = i - P;
                if o < 640 {
                    Some((Region::Payload, o))
                } else if o < slots_at {
                    Some((Region::Line, (o - 640) % 128))
                } else {
                    let in_slot = (o - slots_at) % slot_size;
                    // The payload after the 16-byte slot header is data.
                    (in_slot < 16).then_some((Region::Slot, in_slot))
                }
            },
        );
    }
}

#[test]
fn every_channel_word_an_honest_run_writes_has_a_row() {
    let opts = ChannelOptions::new().rings(2).capacity(256);
    let len = opts.segment_len().unwrap() as usize;
    let mem = HeapMemory::new(len);
    let spy = mem.share();
    let before = snapshot(&spy);
    let c = Channel::create(mem, &opts).unwrap();
    for ring in 0..2 {
        let mut tx = c.sender(ring).unwrap();
        let mut rx = c.receiver(ring).unwrap();
        // A sleeping receiver woken by a send; a sender that fills the ring and waits.
        let t = std::thread::spawn(move || {
            let m = rx.recv_timeout(Duration::from_secs(10)).unwrap().to_vec();
            assert_eq!(m, b"wake");
            std::thread::sleep(Duration::from_millis(100));
            while rx.recv_timeout(Duration::from_millis(200)).is_ok() {}
            rx
        });
        std::thread::sleep(Duration::from_millis(100));
        tx.send(b"wake").unwrap();
        for i in 0..40u64 {
            tx.send_timeout(&[i as u8; 24], Duration::from_secs(10))
                .unwrap();
        }
        let rx = t.join().unwrap();
        drop(tx);
        drop(rx);
    }
    let after = snapshot(&spy);
    let ring_len = 384 + 256;
    assert_covered("channel", channel::WORDS, &before, &after, |i| {
        if i < P {
            return Some((Region::Header, i));
        }
        let o = i - P;
        if o < 128 {
            return Some((Region::Payload, o));
        }
        let in_ring = (o - 128) % ring_len;
        // Message headers and payloads in the ring's data are framed by the ring
        // protocol (the `message header` row); the coverage looks at control lines.
        (in_ring < 384).then_some((Region::Ring, in_ring))
    });
}

#[test]
fn every_seqlock_word_an_honest_run_writes_has_a_row() {
    let mem = HeapMemory::new(4096);
    let spy = mem.share();
    let before = snapshot(&spy);
    let w = SeqLock::create(mem, &[0u64; 4]).unwrap();
    for i in 0..10 {
        w.store(&[i; 4]).unwrap();
    }
    w.update(|v| v[1] = 7).unwrap();
    let after = snapshot(&spy);
    assert_covered("seqlock", seqlock::WORDS, &before, &after, |i| {
        if i < P {
            return Some((Region::Header, i));
        }
        let o = i - P;
        // The record itself (from DATA_OFFSET) is data: any bit pattern is valid.
        (o < seqlock::DATA_OFFSET as u64).then_some((Region::Payload, o))
    });
}

#[test]
fn every_event_word_an_honest_run_writes_has_a_row() {
    // 100 ids: two bitmap words; the notifier lines start at 128 + 16 rounded up to 64.
    let opts = EventOptions::new().max_ids(100).max_notifiers(3);
    let mem = HeapMemory::new(opts.segment_len().unwrap() as usize);
    let spy = mem.share();
    let before = snapshot(&spy);
    let ev = Event::create(mem, &opts).unwrap();
    let mut listener = ev.listener().unwrap();
    let mut a = ev.notifier().unwrap();
    let mut b = ev.notifier().unwrap();
    // A sleeping listener (woken by a notify) changes its sleeping and futex words.
    let t = {
        let ev2 = Event::attach(spy.share()).unwrap();
        std::thread::spawn(move || {
            let mut n = ev2.notifier().unwrap();
            std::thread::sleep(Duration::from_millis(30));
            n.notify(99).unwrap();
        })
    };
    assert!(listener.wait().unwrap().contains(99));
    t.join().unwrap();
    a.notify(1).unwrap();
    b.notify(70).unwrap();
    let after = snapshot(&spy);
    drop((a, b, listener));
    let dropped = snapshot(&spy);
    for after in [after, dropped] {
        assert_covered("event", event::WORDS, &before, &after, |i| {
            if i < P {
                return Some((Region::Header, i));
            }
            let o = i - P;
            Some(match o {
                0..128 => (Region::Payload, o),
                128..144 => (Region::Bitmap, (o - 128) % 8),
                _ => (Region::Line, (o - 192) % 4),
            })
        });
    }
}

#[test]
fn every_service_word_an_honest_run_writes_has_a_row() {
    use shm_core::service::{Service, ServiceOptions};
    // 4 client and 4 server lines: the server lines at 256, the slots at 320; a
    // 128-byte head, requests of 16 bytes (entries at 144 in a slot), entries of 16 + 16
    // bytes, 2 of them: a stride of 208 rounded to 256.
    let opts = ServiceOptions::new()
        .max_clients(4)
        .max_servers(4)
        .max_request(16)
        .max_response(16)
        .response_depth(2)
        .slots(3);
    let mem = HeapMemory::new(opts.segment_len().unwrap() as usize);
    let spy = mem.share();
    let before = snapshot(&spy);
    let svc = Service::create(mem, &opts).unwrap();
    let mut client = svc.client().unwrap();
    let mut server = svc.server().unwrap();
    // A sleeping client woken by a stream; a sleeping server woken by a request.
    client.set_wait(shm_core::WaitMode::Block {
        spin: Duration::ZERO,
    });
    let t = {
        let svc = Service::attach(spy.share()).unwrap();
        let spy = spy.share();
        std::thread::spawn(move || {
            let mut s = svc.server().unwrap();
            s.set_wait(shm_core::WaitMode::Block {
                spin: Duration::ZERO,
            });
            let mut req = s.receive_timeout(Duration::from_secs(20)).unwrap();
            // Snapshots all along the client's sleep (it wakes at each 20 ms slice).
            let client_asleep: Vec<Vec<u8>> = (0..30)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(1));
                    snapshot(&spy)
                })
                .collect();
            for i in 0..5u8 {
                req.respond(&[i; 16]).unwrap();
            }
            req.respond_last(b"end").unwrap();
            client_asleep
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let server_asleep = snapshot(&spy);
    let mut p = client
        .send_request_timeout(b"stream", Duration::from_secs(20))
        .unwrap();
    while !p.receive().unwrap().last {}
    let client_asleep = t.join().unwrap();
    drop(p);
    // An error, a cancel while taken, an unanswered request, an idempotent one.
    client.set_idempotent(true);
    let mut p = client.send_request(b"e").unwrap();
    server.try_receive().unwrap().respond_error(3).unwrap();
    assert!(p.receive().is_err());
    let p2 = client.send_request(b"c").unwrap();
    let req = server.try_receive().unwrap();
    drop(p2);
    assert!(req.is_cancelled());
    drop(req);
    let after = snapshot(&spy);
    drop((client, server, p));
    let dropped = snapshot(&spy);
    let mut all = client_asleep;
    all.extend([server_asleep, after, dropped]);
    for after in all {
        assert_covered("service", shm_core::service::WORDS, &before, &after, |i| {
            if i < P {
                return Some((Region::Header, i));
            }
            let o = i - P;
            match o {
                0..192 => Some((Region::Payload, o)),
                192..320 => Some((Region::Line, (o - 192) % 4)),
                _ => {
                    let s = (o - 320) % 256;
                    match s {
                        0..128 => Some((Region::Slot, s)),
                        128..144 => None, // request bytes: data
                        _ => {
                            let e = (s - 144) % 32;
                            (e < 16).then_some((Region::Entry, e))
                        }
                    }
                }
            }
        });
    }
}
