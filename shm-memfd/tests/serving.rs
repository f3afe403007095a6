//! `Server::serve_background`: one memfd served to many clients.

/// A background server hands the memfd to every client (a read-only look among them)
/// until it is stopped; then its socket file is gone.
#[test]
fn a_background_server_serves_every_client_until_stopped() {
    use std::os::fd::AsFd;
    let mem = shm_memfd::MemfdOptions::new().size(4096).create().unwrap();
    let path = std::env::temp_dir().join(format!(
        "{}.sock",
        shm_core::testing::unique_name("shm-memfd-bg")
    ));
    let fd = mem.as_fd().try_clone_to_owned().unwrap();
    let mut serving = shm_memfd::Server::bind(&path)
        .unwrap()
        .serve_background(fd)
        .unwrap();
    let timeout = std::time::Duration::from_secs(10);
    let look = shm_memfd::connect_read_only(&path, timeout).unwrap();
    let a = shm_memfd::connect_timeout(&path, timeout).unwrap();
    let b = shm_memfd::connect_timeout(&path, timeout).unwrap();
    for m in [&look, &a, &b] {
        assert_eq!(shm_core::SharedMemory::len(m), 4096);
    }
    // The count follows each send, so a client can hold its fd before it is counted:
    // after `stop` (which joins the serving thread) it is final.
    serving.stop();
    assert_eq!(serving.served(), 3);
    assert_eq!(serving.refused(), 0);
    assert!(!path.exists(), "the socket file stayed");
    assert!(shm_memfd::connect_timeout(&path, std::time::Duration::from_millis(100)).is_err());
}
