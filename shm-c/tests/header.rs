//! The checked-in C header is what this crate generates: cbindgen runs over the crate
//! and the result must equal `include/shm.h` byte for byte (`SHM_BLESS_HEADER=1`
//! rewrites it after a change to the API).

use std::path::Path;

#[test]
fn the_checked_in_header_is_the_generated_one() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = dir.join("include/shm.h");
    if std::env::var_os("SHM_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write include/shm.h");
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "shm-c/include/shm.h differs from what cbindgen generates from shm-c: run \
         SHM_BLESS_HEADER=1 cargo test -p shm-c --test header, and commit the header"
    );
    let text = String::from_utf8(generated).expect("UTF-8");
    // Every exported function is declared, with its documentation.
    for f in [
        "shm_channel_create",
        "shm_sender_send_timeout",
        "shm_receiver_recv_timeout",
        "shm_broadcast_create",
        "shm_subscriber_recv_timeout",
        "shm_last_error_message",
    ] {
        assert!(
            text.contains(&format!("{f}(")),
            "{f} missing from the header"
        );
    }
    assert!(!text.contains("shm_test_panic"), "the test hook is not API");
}
