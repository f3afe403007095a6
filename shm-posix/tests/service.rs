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
