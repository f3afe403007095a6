//! The README's service on a named POSIX segment: the same calls, with the server in a
//! thread and its loop bounded.

use std::time::Duration;

use shm_core::service::{Service, ServiceOptions};
use shm_core::testing::unique_name;
use shm_posix::ShmOptions;

#[test]
fn the_readme_service_squares_numbers() -> Result<(), Box<dyn std::error::Error>> {
    let name = unique_name("/shm-calc");
    let opts = ServiceOptions::new().max_request(64).max_response(64);
    let svc = Service::create(
        ShmOptions::new(&name).size(opts.segment_len()?).create()?,
        &opts,
    )?;
    let mut server = svc.server()?;
    let t = std::thread::spawn(move || -> Result<(), shm_core::Error> {
        for _ in 0..100 {
            let req = server.receive_timeout(Duration::from_secs(10))?;
            let n = u64::from_le_bytes(req.data().try_into().unwrap_or([0; 8]));
            req.respond_last(&(n * n).to_le_bytes())?;
        }
        Ok(())
    });
    let mut client = Service::attach(ShmOptions::new(&name).open()?)?.client()?;
    for n in 0..100u64 {
        let square = client
            .call_timeout(&n.to_le_bytes(), Duration::from_secs(10))?
            .data;
        assert_eq!(square, (n * n).to_le_bytes());
    }
    t.join().unwrap()?;
    Ok(())
}

/// A service seen through a read-only mapping: inspection works, taking an end is
/// `ReadOnly`, and the public sweep frees nothing (it must not write: a SIGSEGV).
#[test]
fn a_read_only_service_mapping_is_refused_writes_never_faults() {
    let name = unique_name("/shm-svc-ro");
    let opts = ServiceOptions::new().slots(4);
    let svc = Service::create(
        ShmOptions::new(&name)
            .size(opts.segment_len().unwrap())
            .create()
            .unwrap(),
        &opts,
    )
    .unwrap();
    let mut client = svc.client().unwrap();
    let _pending = client.send_request(b"held").unwrap();
    // A slot a sweep would free (a stray owner word), so that a sweep that wrote would
    // fault on the read-only mapping. Slot stride: a 128-byte head, 4 KiB requests, four
    // entries of 16 + 4 KiB: 20,672; the slots start at payload 320.
    let held = svc.state().unwrap().requests[0].slot as usize;
    let stray = (held + 1) % 4;
    shm_core::conformance::poke(
        svc.raw().memory(),
        128 + 320 + stray * 20_672,
        &u64::MAX.to_ne_bytes(),
    );
    let ro = Service::attach(ShmOptions::new(&name).read_only(true).open().unwrap()).unwrap();
    assert!(
        ro.state().is_err(),
        "a stray owner word is Corrupt to inspection"
    );
    assert!(matches!(ro.client(), Err(shm_core::Error::ReadOnly { .. })));
    assert!(matches!(ro.server(), Err(shm_core::Error::ReadOnly { .. })));
    assert_eq!(ro.sweep(), 0);
    assert_eq!(svc.sweep(), 1, "the writable mapping frees it");
    assert_eq!(svc.state().unwrap().requests.len(), 1);
}
