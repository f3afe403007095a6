//! The C ABI of shm: channels, broadcasts, seqlock records, services, events and the
//! wait set over named POSIX shared memory, for C and
//! C++ programs (`include/shm.h`, generated from this crate by cbindgen; `include/shm.hpp`,
//! a header-only C++17 wrapper over it).
//!
//! The promises are the Rust API's: every function returns a [`ShmStatus`] (the thread's
//! message in `shm_last_error_message()`), no input a caller or a peer gives can crash
//! the process (null pointers, sizes, names, handles freed twice are
//! `SHM_STATUS_INVALID_ARGUMENT`; a panic is caught at the boundary and returned as
//! `SHM_STATUS_PANIC`), every wait has a `_timeout` form, and handles are opaque with an
//! explicit `_free`. Using a handle after its `_free` is undefined behaviour, as in C;
//! a second `_free` of the same handle is detected and refused.

mod broadcast;
mod channel;
mod handles;
mod memory;
mod record;
mod service;
mod status;
mod waiting;

pub use broadcast::{
    shm_broadcast_attach_in, shm_broadcast_create, shm_broadcast_create_in, shm_broadcast_free,
    shm_broadcast_open, shm_broadcast_publisher, shm_broadcast_segment_len,
    shm_broadcast_subscriber, shm_broadcast_subscriber_count, shm_publisher_abandon,
    shm_publisher_commit, shm_publisher_free, shm_publisher_publish, shm_publisher_publish_timeout,
    shm_publisher_reserve_timeout, shm_publisher_try_publish, shm_subscriber_free,
    shm_subscriber_recv, shm_subscriber_recv_timeout, shm_subscriber_try_recv, ShmBroadcast,
    ShmPublisher, ShmSubscriber,
};
pub use channel::{
    shm_channel_attach_in, shm_channel_create, shm_channel_create_in, shm_channel_free,
    shm_channel_open, shm_channel_receiver, shm_channel_segment_len, shm_channel_sender,
    shm_receiver_free, shm_receiver_recv, shm_receiver_recv_timeout, shm_receiver_try_recv,
    shm_sender_abandon, shm_sender_commit, shm_sender_free, shm_sender_reserve_timeout,
    shm_sender_send, shm_sender_send_timeout, shm_sender_try_send, ShmChannel, ShmReceiver,
    ShmSender,
};
pub use handles::{ShmReceived, SHM_FOREVER};
pub use memory::{
    shm_memory_anon_create, shm_memory_free, shm_memory_memfd_connect, shm_memory_memfd_create,
    shm_memory_memfd_serve, shm_memory_posix_create, shm_memory_posix_open, ShmMemory,
};
pub use record::{
    shm_segment_create, shm_segment_free, shm_segment_open, shm_segment_open_foreign,
    shm_segment_read, shm_segment_write, shm_seqlock_create, shm_seqlock_free, shm_seqlock_load,
    shm_seqlock_open, shm_seqlock_store, ShmSchema, ShmSegment, ShmSeqLock,
};
pub use service::{
    shm_client_call, shm_client_call_timeout, shm_client_free, shm_request_data, shm_request_free,
    shm_request_respond, shm_request_respond_error, shm_request_respond_last, shm_server_free,
    shm_server_receive_timeout, shm_service_client, shm_service_create, shm_service_free,
    shm_service_open, shm_service_server, ShmClient, ShmRequest, ShmServer, ShmService,
};
pub use status::{shm_last_error_message, shm_status_name, ShmStatus};
pub use waiting::{
    shm_event_create, shm_event_free, shm_event_listener, shm_event_notifier, shm_event_open,
    shm_listener_free, shm_listener_try_wait, shm_listener_wait_timeout, shm_notifier_free,
    shm_notifier_notify, shm_waitset_attach_interval, shm_waitset_attach_listener,
    shm_waitset_attach_receiver, shm_waitset_attach_server, shm_waitset_attach_subscriber,
    shm_waitset_create, shm_waitset_detach, shm_waitset_fd, shm_waitset_free,
    shm_waitset_wait_timeout, ShmEvent, ShmListener, ShmNotifier, ShmReady, ShmWaitSet,
};

/// For the tests of the boundary itself: panics inside the guard every entry point runs
/// in, and returns what the guard made of it (`SHM_STATUS_PANIC`, with the panic's text
/// as the thread's message). Not in the header.
#[doc(hidden)]
#[no_mangle]
pub extern "C" fn shm_test_panic() -> ShmStatus {
    status::guard(|| panic!("shm_test_panic: the boundary's own test"))
}
