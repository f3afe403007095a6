//! Backend errors turned into what the user reads: what went wrong, and what to do.

use crate::util::Failure;

pub fn posix(e: shm_posix::Error) -> Failure {
    use shm_posix::Error as E;
    let hint = match &e {
        E::NotFound { name } => Some(format!(
            "start a writer first: shm-demo --backend posix write --name {name} --hold"
        )),
        E::AlreadyExists { name } => Some(format!(
            "pick another name, or remove it: shm-demo --backend posix read --name {name} --unlink"
        )),
        E::InvalidName { .. } => {
            Some("a name looks like /my_shm: one leading '/', nothing else".to_owned())
        }
        E::NoSpace { .. } => {
            Some("free space in /dev/shm (df -h /dev/shm) or ask for a smaller --size".to_owned())
        }
        E::Empty { .. } | E::NotRegularFile { .. } => {
            Some("this name is not a segment written by shm-demo".to_owned())
        }
        E::ForeignOwner { .. } | E::UnsafeMode { .. } => {
            Some("only segments of your own user with mode 0600 are opened".to_owned())
        }
        _ => None,
    };
    with_hint(Failure::new(e), hint)
}

pub fn memfd(e: shm_memfd::Error) -> Failure {
    use shm_memfd::Error as E;
    let hint = match &e {
        E::Io { op: "connect", .. } => {
            Some("start a server first: shm-demo --backend memfd serve --socket PATH".to_owned())
        }
        E::Io { op: "bind", .. } => Some("the socket path is taken; pick another".to_owned()),
        E::Unsealed { .. }
        | E::NotMemfd { .. }
        | E::NoFd
        | E::TooManyFds { .. }
        | E::WriteSealed { .. } => {
            Some("the server is not a well-behaved shm-demo; nothing was mapped".to_owned())
        }
        _ => None,
    };
    with_hint(Failure::new(e), hint)
}

pub fn core(e: impl Into<shm_core::Error>) -> Failure {
    use shm_core::Error as E;
    let e: shm_core::Error = e.into();
    let hint = match &e {
        E::BadMagic { .. } => Some(
            "this is not a segment written by shm-demo; if a program without our header made \
             it (the tutorial's writer, Python, C), read it with --raw"
                .to_owned(),
        ),
        E::TooSmall { .. } => Some("this is not a segment written by shm-demo".to_owned()),
        E::Truncated { .. } => Some(
            "someone shrank the segment after it was written; refusing to map past its end"
                .to_owned(),
        ),
        E::SchemaMismatch { .. } => Some(
            "the writer and the reader must declare the same record type and version".to_owned(),
        ),
        E::NotReady { .. } | E::CreatorDied { .. } => {
            Some("the writer did not finish; start it again".to_owned())
        }
        _ => None,
    };
    with_hint(Failure::new(e), hint)
}

fn with_hint(f: Failure, hint: Option<String>) -> Failure {
    match hint {
        Some(h) => f.hint(h),
        None => f,
    }
}

/// `?` on a shm-core call gives the failure with its hint.
impl From<shm_core::Error> for Failure {
    fn from(e: shm_core::Error) -> Self {
        core(e)
    }
}

/// The per-operation errors, through the umbrella error's hint.
macro_rules! from_op_errors {
    ($($t:ident),*) => {$(
        impl From<shm_core::$t> for Failure {
            fn from(e: shm_core::$t) -> Self {
                core(e)
            }
        }
    )*};
}
from_op_errors!(
    TrySendError,
    SendError,
    SendTimeoutError,
    TryRecvError,
    RecvError,
    RecvTimeoutError,
    NotifyError,
    TryWaitError,
    WaitError,
    WaitTimeoutError
);

/// `?` on a posix call gives the failure with its hint.
impl From<shm_posix::Error> for Failure {
    fn from(e: shm_posix::Error) -> Self {
        posix(e)
    }
}

/// `?` on a memfd call gives the failure with its hint.
impl From<shm_memfd::Error> for Failure {
    fn from(e: shm_memfd::Error) -> Self {
        memfd(e)
    }
}
