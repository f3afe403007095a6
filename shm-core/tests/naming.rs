//! The one naming scheme, held to its word on both families: every operation has the
//! four forms `try_op` / `op` / `op_timeout` / `op_async`, each returning its own error
//! type with only the variants that form can produce, and each converting into the
//! umbrella `Error` with the same text. The types are written out on purpose: a form
//! that returned another error type would not compile.
#![cfg(not(loom))]

use shm_core::testing::block_on;

use std::time::Duration;

use shm_core::{
    bytemuck, Broadcast, BroadcastMode, BroadcastOptions, Channel, ChannelOptions, Error,
    HeapMemory, Publisher, Receiver, Record, RecvError, RecvTimeoutError, SendError,
    SendTimeoutError, Sender, Subscriber, TryRecvError, TrySendError,
};

const SHORT: Duration = Duration::from_millis(20);

fn channel(capacity: u64) -> (Sender<HeapMemory>, Receiver<HeapMemory>) {
    let opts = ChannelOptions::new().capacity(capacity);
    let mem = HeapMemory::new(opts.segment_len().unwrap() as usize);
    let view = mem.share();
    let tx = Channel::create(mem, &opts).unwrap().sender(0).unwrap();
    let rx = Channel::attach(view).unwrap().receiver(0).unwrap();
    (tx, rx)
}

fn broadcast(opts: BroadcastOptions) -> (Publisher<HeapMemory>, Broadcast<HeapMemory>) {
    let mem = HeapMemory::new(opts.segment_len().unwrap() as usize);
    let view = mem.share();
    let p = Broadcast::create(mem, &opts).unwrap().publisher().unwrap();
    (p, Broadcast::attach(view).unwrap())
}

/// The umbrella error a per-operation error converts into, and that its text is the
/// umbrella's text.
fn umbrella<E: Into<Error> + std::fmt::Display + Copy>(e: E) -> Error {
    let u: Error = e.into();
    assert_eq!(e.to_string(), u.to_string());
    u
}

#[test]
fn channel_empty_and_timeout_are_only_in_their_forms() {
    let (_tx, mut rx) = channel(256);
    let mut v = Vec::new();
    let mut s = [0u8; 16];
    let e: TryRecvError = rx.try_recv().err().unwrap();
    assert_eq!(e, TryRecvError::Empty);
    let e: TryRecvError = rx.try_recv_into(&mut v).unwrap_err();
    assert_eq!(e, TryRecvError::Empty);
    let e: TryRecvError = rx.try_recv_into_slice(&mut s).unwrap_err();
    assert_eq!(e, TryRecvError::Empty);
    assert_eq!(umbrella(e), Error::Empty);

    let e: RecvTimeoutError = rx.recv_timeout(SHORT).err().unwrap();
    assert!(
        matches!(e, RecvTimeoutError::Timeout { waited } if waited >= SHORT),
        "{e:?}"
    );
    let e: RecvTimeoutError = rx.recv_into_timeout(&mut v, SHORT).unwrap_err();
    assert!(matches!(e, RecvTimeoutError::Timeout { .. }), "{e:?}");
    let e: RecvTimeoutError = rx.recv_into_slice_timeout(&mut s, SHORT).unwrap_err();
    assert!(matches!(umbrella(e), Error::Timeout { .. }), "{e:?}");
}

#[test]
fn channel_full_too_large_and_timeout_on_the_sending_side() {
    let (mut tx, mut rx) = channel(128);
    let max = tx.max_message();
    let big = vec![1u8; max as usize + 1];
    let e: TrySendError = tx.try_send(&big).unwrap_err();
    assert_eq!(e, TrySendError::MessageTooLarge { len: max + 1, max });
    let e: SendError = tx.send(&big).unwrap_err();
    assert_eq!(e, SendError::MessageTooLarge { len: max + 1, max });
    let e: SendTimeoutError = tx.send_timeout(&big, SHORT).unwrap_err();
    assert_eq!(e, SendTimeoutError::MessageTooLarge { len: max + 1, max });
    let e: SendError = block_on(tx.send_async(&big)).unwrap_err();
    assert_eq!(umbrella(e), Error::MessageTooLarge { len: max + 1, max });

    let mut sent = 0;
    let full: TrySendError = loop {
        match tx.try_send(&[sent as u8; 24]) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(full, TrySendError::Full);
    assert!(sent >= 2, "{sent}");
    assert_eq!(tx.try_reserve(24).err(), Some(TrySendError::Full));
    let e: SendTimeoutError = tx.send_timeout(&[9; 24], SHORT).unwrap_err();
    assert!(matches!(e, SendTimeoutError::Timeout { .. }), "{e:?}");
    let e: SendTimeoutError = tx.reserve_timeout(24, SHORT).err().unwrap();
    assert!(matches!(e, SendTimeoutError::Timeout { .. }), "{e:?}");
    assert_eq!(umbrella(full), Error::Full);

    // What was sent is all there, in order.
    for i in 0..sent {
        assert_eq!(rx.try_recv().unwrap().to_vec(), vec![i as u8; 24]);
    }
}

#[test]
fn channel_slice_forms_keep_a_message_too_large_for_the_slice() {
    let (mut tx, mut rx) = channel(256);
    tx.send(&[5u8; 40]).unwrap();
    let mut small = [0u8; 8];
    let e: TryRecvError = rx.try_recv_into_slice(&mut small).unwrap_err();
    assert_eq!(e, TryRecvError::MessageTooLarge { len: 40, max: 8 });
    let e: RecvError = rx.recv_into_slice(&mut small).unwrap_err();
    assert_eq!(e, RecvError::MessageTooLarge { len: 40, max: 8 });
    let e: RecvTimeoutError = rx.recv_into_slice_timeout(&mut small, SHORT).unwrap_err();
    assert_eq!(e, RecvTimeoutError::MessageTooLarge { len: 40, max: 8 });
    let e: RecvError = block_on(rx.recv_into_slice_async(&mut small)).unwrap_err();
    assert_eq!(e, RecvError::MessageTooLarge { len: 40, max: 8 });
    // Still there, whole: the Vec form grows to fit.
    let mut v = Vec::new();
    assert_eq!(rx.recv_into(&mut v), Ok(40));
    assert_eq!(v, [5u8; 40]);
}

#[test]
fn channel_closed_reaches_every_form_on_both_sides() {
    let (mut tx, mut rx) = channel(256);
    tx.send(b"last").unwrap();
    drop(tx);
    // Pending messages come first.
    let mut v = Vec::new();
    assert_eq!(block_on(rx.recv_into_async(&mut v)), Ok(4));
    assert_eq!(rx.try_recv().err(), Some(TryRecvError::Closed));
    assert_eq!(rx.recv().err(), Some(RecvError::Closed));
    assert_eq!(rx.recv_timeout(SHORT).err(), Some(RecvTimeoutError::Closed));
    assert_eq!(block_on(rx.recv_async()).err(), Some(RecvError::Closed));
    assert_eq!(rx.recv_into(&mut v), Err(RecvError::Closed));

    let (mut tx, rx) = channel(256);
    drop(rx);
    assert_eq!(tx.try_send(b"x"), Err(TrySendError::Closed));
    assert_eq!(tx.send(b"x"), Err(SendError::Closed));
    assert_eq!(tx.send_timeout(b"x", SHORT), Err(SendTimeoutError::Closed));
    assert_eq!(block_on(tx.send_async(b"x")), Err(SendError::Closed));
    assert_eq!(block_on(tx.reserve_async(1)).err(), Some(SendError::Closed));
}

/// `?` works with the umbrella error in a caller's function.
fn roundtrip_with_question_mark() -> Result<Vec<u8>, Error> {
    let (mut tx, mut rx) = channel(256);
    tx.try_send(b"a")?;
    tx.send(b"b")?;
    tx.send_timeout(b"c", SHORT)?;
    let mut out = rx.try_recv()?.to_vec();
    out.extend(rx.recv()?.to_vec());
    out.extend(rx.recv_timeout(SHORT)?.to_vec());
    rx.try_recv()?; // Empty, through `?`
    Ok(out)
}

#[test]
fn per_operation_errors_convert_for_question_mark_users() {
    assert_eq!(roundtrip_with_question_mark(), Err(Error::Empty));
    // And back: an umbrella error that a form can return converts into its type.
    assert_eq!(TryRecvError::from(Error::Empty), TryRecvError::Empty);
    assert_eq!(SendError::from(Error::Closed), SendError::Closed);
    // One that it cannot name is carried whole in `Failed`.
    let odd = Error::Corrupt {
        what: "x",
        found: 3,
    };
    assert_eq!(SendError::from(odd), SendError::Failed(odd));
    assert_eq!(Error::from(SendError::Failed(odd)), odd);
}

#[test]
fn broadcast_empty_timeout_closed_on_every_form() {
    let (mut p, b) = broadcast(BroadcastOptions::new().slots(4).max_message(16));
    let mut s = b.subscriber().unwrap();
    let mut v = Vec::new();
    let mut slice = [0u8; 16];
    assert_eq!(s.try_recv_into(&mut v), Err(TryRecvError::Empty));
    assert_eq!(s.try_recv_into_slice(&mut slice), Err(TryRecvError::Empty));
    let e: RecvTimeoutError = s.recv_into_timeout(&mut v, SHORT).unwrap_err();
    assert!(matches!(e, RecvTimeoutError::Timeout { .. }), "{e:?}");
    let e: RecvTimeoutError = s.recv_into_slice_timeout(&mut slice, SHORT).unwrap_err();
    assert!(matches!(e, RecvTimeoutError::Timeout { .. }), "{e:?}");

    p.publish(b"one").unwrap();
    p.try_publish(b"two").unwrap();
    p.publish_timeout(b"three", SHORT).unwrap();
    block_on(p.publish_async(b"four")).unwrap();
    drop(p);
    assert_eq!(s.try_recv_into(&mut v), Ok(3));
    assert_eq!((s.last_number(), v.as_slice()), (Some(0), &b"one"[..]));
    assert_eq!(s.recv_into(&mut v), Ok(3));
    assert_eq!(s.recv_into_timeout(&mut v, SHORT), Ok(5));
    assert_eq!(block_on(s.recv_into_async(&mut v)), Ok(4));
    assert_eq!((s.last_number(), v.as_slice()), (Some(3), &b"four"[..]));
    assert_eq!(s.try_recv_into(&mut v), Err(TryRecvError::Closed));
    assert_eq!(s.recv_into(&mut v), Err(RecvError::Closed));
    assert_eq!(
        s.recv_into_timeout(&mut v, SHORT),
        Err(RecvTimeoutError::Closed)
    );
    assert_eq!(block_on(s.recv_into_async(&mut v)), Err(RecvError::Closed));
}

#[test]
fn broadcast_full_too_large_and_lagged() {
    // Reliable, two slots, a subscriber that reads nothing: the third message has no room.
    let (mut p, b) = broadcast(BroadcastOptions::new().slots(2).max_message(16));
    let mut s = b.subscriber().unwrap();
    p.try_publish(b"a").unwrap();
    p.try_publish(b"b").unwrap();
    let e: TrySendError = p.try_publish(b"c").unwrap_err();
    assert_eq!(e, TrySendError::Full);
    let e: SendTimeoutError = p.publish_timeout(b"c", SHORT).unwrap_err();
    assert!(matches!(e, SendTimeoutError::Timeout { .. }), "{e:?}");
    let big = [0u8; 17];
    assert_eq!(
        p.try_publish(&big),
        Err(TrySendError::MessageTooLarge { len: 17, max: 16 })
    );
    assert_eq!(
        p.publish(&big),
        Err(SendError::MessageTooLarge { len: 17, max: 16 })
    );
    assert_eq!(
        block_on(p.publish_async(&big)),
        Err(SendError::MessageTooLarge { len: 17, max: 16 })
    );
    // Zero-copy publish: the same four forms and the same errors as publish.
    let e: TrySendError = p.try_reserve(1).unwrap_err();
    assert_eq!(e, TrySendError::Full);
    let e: SendTimeoutError = p.reserve_timeout(1, SHORT).unwrap_err();
    assert!(matches!(e, SendTimeoutError::Timeout { .. }), "{e:?}");
    let e: TrySendError = p.try_reserve(17).unwrap_err();
    assert_eq!(e, TrySendError::MessageTooLarge { len: 17, max: 16 });
    let e: SendError = p.reserve(17).unwrap_err();
    assert_eq!(e, SendError::MessageTooLarge { len: 17, max: 16 });
    let e: SendError = block_on(p.reserve_async(17)).unwrap_err();
    assert_eq!(e, SendError::MessageTooLarge { len: 17, max: 16 });
    // The slice forms keep what does not fit.
    let mut one = [0u8; 0];
    assert_eq!(
        s.recv_into_slice(&mut one),
        Err(RecvError::MessageTooLarge { len: 1, max: 0 })
    );
    let mut v = Vec::new();
    assert_eq!(s.recv_into(&mut v), Ok(1));
    assert_eq!(v, b"a");

    // Lossy, two slots, five published before the subscriber looks: it resumes at the
    // oldest message no publisher can be overwriting (the last one), so four missed.
    let (mut p, b) = broadcast(
        BroadcastOptions::new()
            .mode(BroadcastMode::Lossy)
            .slots(2)
            .max_message(16),
    );
    let mut s = b.subscriber().unwrap();
    for i in 0..5u8 {
        p.try_publish(&[i]).unwrap();
    }
    assert_eq!(
        s.try_recv_into(&mut v),
        Err(TryRecvError::Lagged { missed: 4 })
    );
    assert_eq!(s.recv_into(&mut v), Ok(1));
    assert_eq!((s.last_number(), v.as_slice()), (Some(4), &[4u8][..]));
    assert_eq!(s.try_recv_into(&mut v), Err(TryRecvError::Empty));
}

#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "shm_core::bytemuck")]
#[repr(C)]
struct Tick {
    n: u64,
    v: u64,
}
impl Record for Tick {
    const NAME: &'static str = "Tick";
}

#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "shm_core::bytemuck")]
#[repr(C)]
struct Other {
    a: u64,
    b: u64,
}
impl Record for Other {
    const NAME: &'static str = "Other";
}

#[test]
fn records_have_the_four_forms_and_another_type_is_failed() {
    let opts = BroadcastOptions::new().record::<Tick>().slots(4);
    let mem = HeapMemory::new(opts.segment_len().unwrap() as usize);
    let view = mem.share();
    let mut p = Broadcast::create(mem, &opts).unwrap().publisher().unwrap();
    let b = Broadcast::attach_record::<Tick>(view.share()).unwrap();
    assert!(matches!(
        Broadcast::attach_record::<Other>(view),
        Err(Error::SchemaMismatch { .. })
    ));
    let mut s = b.subscriber().unwrap();
    assert_eq!(s.try_recv_record::<Tick>(), Err(TryRecvError::Empty));
    assert!(matches!(
        s.recv_record_timeout::<Tick>(SHORT),
        Err(RecvTimeoutError::Timeout { .. })
    ));
    let t = |n| Tick { n, v: n * 10 };
    p.try_publish_record(&t(0)).unwrap();
    p.publish_record(&t(1)).unwrap();
    p.publish_record_timeout(&t(2), SHORT).unwrap();
    block_on(p.publish_record_async(&t(3))).unwrap();
    assert!(matches!(
        p.try_publish_record(&Other { a: 1, b: 2 }),
        Err(TrySendError::Failed(Error::SchemaMismatch { .. }))
    ));
    assert!(matches!(
        s.recv_record::<Other>(),
        Err(RecvError::Failed(Error::SchemaMismatch { .. }))
    ));
    assert_eq!(s.try_recv_record::<Tick>(), Ok(t(0)));
    assert_eq!(s.recv_record::<Tick>(), Ok(t(1)));
    assert_eq!(s.recv_record_timeout::<Tick>(SHORT), Ok(t(2)));
    assert_eq!(block_on(s.recv_record_async::<Tick>()), Ok(t(3)));
    assert_eq!(s.last_number(), Some(3));
}

/// The previous release's names still work, as deprecated aliases, for one release.
#[test]
#[allow(deprecated)]
fn old_names_are_deprecated_aliases() {
    let opts = BroadcastOptions::new().record::<Tick>().slots(4);
    let mem = HeapMemory::new(opts.segment_len().unwrap() as usize);
    let view = mem.share();
    let mut p = Broadcast::create(mem, &opts).unwrap().publisher().unwrap();
    let b = Broadcast::attach_pod::<Tick>(view).unwrap();
    let mut s: Subscriber<HeapMemory> = b.subscribe().unwrap();
    p.publish_pod(&Tick { n: 7, v: 8 }).unwrap();
    p.publish_pod(&Tick { n: 9, v: 10 }).unwrap();
    assert_eq!(s.recv_pod::<Tick>(), Ok(Tick { n: 7, v: 8 }));
    let mut v = Vec::new();
    assert_eq!(s.recv(&mut v), Ok(1)); // the old form returned the number
    assert_eq!(s.try_recv(&mut v), Err(Error::Empty));
    assert_eq!(
        ChannelOptions::new().segment_len_for(4096),
        ChannelOptions::new().capacity(4096).segment_len()
    );
}

#[test]
fn channel_records_have_the_four_forms_and_are_checked() {
    let opts = ChannelOptions::new().capacity(256).record::<Tick>();
    let mem = HeapMemory::new(opts.segment_len().unwrap() as usize);
    let (view, raw) = (mem.share(), mem.share());
    let chan = Channel::create(mem, &opts).unwrap();
    assert_eq!(chan.schema(), shm_core::Schema::of::<Tick>().unwrap());
    let mut tx = chan.sender(0).unwrap();
    assert!(matches!(
        Channel::attach_record::<Other>(view.share()),
        Err(Error::SchemaMismatch { .. })
    ));
    let typed = Channel::attach_record::<Tick>(view).unwrap();
    let mut rx = typed.receiver(0).unwrap();
    assert_eq!(rx.try_recv_record::<Tick>(), Err(TryRecvError::Empty));
    assert!(matches!(
        rx.recv_record_timeout::<Tick>(SHORT),
        Err(RecvTimeoutError::Timeout { .. })
    ));
    let t = |n| Tick { n, v: n * 10 };
    tx.try_send_record(&t(0)).unwrap();
    tx.send_record(&t(1)).unwrap();
    tx.send_record_timeout(&t(2), SHORT).unwrap();
    block_on(tx.send_record_async(&t(3))).unwrap();
    assert!(matches!(
        tx.try_send_record(&Other { a: 1, b: 2 }),
        Err(TrySendError::Failed(Error::SchemaMismatch { .. }))
    ));
    assert!(matches!(
        rx.recv_record::<Other>(),
        Err(RecvError::Failed(Error::SchemaMismatch { .. }))
    ));
    assert_eq!(rx.try_recv_record::<Tick>(), Ok(t(0)));
    assert_eq!(rx.recv_record::<Tick>(), Ok(t(1)));
    assert_eq!(rx.recv_record_timeout::<Tick>(SHORT), Ok(t(2)));
    assert_eq!(block_on(rx.recv_record_async::<Tick>()), Ok(t(3)));
    // A message of another length (bytes sent through the untyped path) is Corrupt and
    // passed over; the next record comes through.
    tx.send(&[1, 2, 3]).unwrap();
    tx.send_record(&t(4)).unwrap();
    assert_eq!(
        rx.recv_record::<Tick>(),
        Err(RecvError::Failed(Error::Corrupt {
            what: "a record message's length",
            found: 3
        }))
    );
    assert_eq!(rx.recv_record::<Tick>(), Ok(t(4)));
    // An untyped attach reads a channel of records as bytes.
    drop(rx);
    let mut bytes = Channel::attach(raw).unwrap().receiver(0).unwrap();
    tx.send_record(&t(5)).unwrap();
    let mut v = Vec::new();
    assert_eq!(bytes.recv_into(&mut v), Ok(16));
    assert_eq!(v, shm_core::bytemuck::bytes_of(&t(5)));
    // A channel of plain bytes carries no records.
    let (mut plain_tx, _rx) = channel(256);
    assert!(matches!(
        plain_tx.try_send_record(&t(6)),
        Err(TrySendError::Failed(Error::SchemaMismatch { .. }))
    ));
}
