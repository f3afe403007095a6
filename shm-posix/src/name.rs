//! Segment names: what `shm_open` accepts, read as glibc reads it.

use std::ffi::CString;

use crate::Error;

/// The longest name accepted, in bytes, leading `/` included.
pub const NAME_MAX: usize = 255;

/// The name as `shm_open` understands it: glibc takes `"my_shm"` to mean `"/my_shm"`, and
/// so do we. Names that already start with `/` are returned unchanged.
pub fn normalize_name(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{name}")
    }
}

/// Checks a POSIX shared memory name, after [`normalize_name`]: not empty, no `/` after
/// the leading one, no NUL, at most [`NAME_MAX`] bytes.
pub fn validate_name(name: &str) -> Result<CString, Error> {
    let name = normalize_name(name);
    let bad = |reason| Error::InvalidName {
        name: name.clone(),
        reason,
    };
    if name.len() == 1 {
        return Err(bad("it is empty after the leading '/'"));
    }
    if name[1..].contains('/') {
        return Err(bad("it may contain no '/' after the first character"));
    }
    if name.len() > NAME_MAX {
        return Err(bad("it is longer than 255 bytes"));
    }
    if name == "/." || name == "/.." {
        return Err(bad("'.' and '..' are not names"));
    }
    CString::new(name.as_str()).map_err(|_| bad("it contains a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShmOptions;

    #[test]
    fn names_are_validated_before_any_syscall() {
        for (name, reason) in [
            ("", "it is empty after the leading '/'"),
            ("/", "it is empty after the leading '/'"),
            ("a/b", "it may contain no '/' after the first character"),
            ("/a/b", "it may contain no '/' after the first character"),
            ("/..", "'.' and '..' are not names"),
            ("/a\0b", "it contains a NUL byte"),
        ] {
            match validate_name(name) {
                Err(Error::InvalidName { reason: r, .. }) => assert_eq!(r, reason, "{name:?}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
        let long = format!("/{}", "x".repeat(255));
        assert!(matches!(
            validate_name(&long),
            Err(Error::InvalidName { .. })
        ));
        assert!(validate_name(&long[..255]).is_ok());
        assert!(
            validate_name(&long[1..255]).is_ok(),
            "254 bytes without the slash"
        );
        assert!(matches!(
            validate_name(&long[1..]),
            Err(Error::InvalidName { .. })
        ));
        assert!(validate_name("/my_shm").is_ok());
        // glibc's reading of a name without the leading slash.
        assert_eq!(
            validate_name("my_shm").unwrap().to_str().unwrap(),
            "/my_shm"
        );
        assert_eq!(normalize_name("my_shm"), "/my_shm");
        assert_eq!(ShmOptions::new("my_shm").name, "/my_shm");
        match validate_name("a\0b") {
            Err(Error::InvalidName { name, .. }) => assert_eq!(name, "/a\0b"),
            other => panic!("{other:?}"),
        }
    }
}
