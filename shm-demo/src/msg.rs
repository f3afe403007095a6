//! The messages `stream` and `broadcast` send: numbered, checksummed, verified in order by
//! the receiving process.

/// Bytes of the per-message header: sequence number, checksum. Messages of 8 to 15 bytes
/// carry the sequence number only.
pub const HEADER: usize = 16;
/// The smallest message: a sequence number.
pub const MIN_SIZE: u64 = 8;

/// A checksum the compiler vectorises: a wrapping sum of the 8-byte words, mixed with the
/// length. It catches torn, stale, shifted and corrupted payloads, which is its job here.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut sums = [0u64; 4];
    let mut chunks = bytes.chunks_exact(32);
    for c in &mut chunks {
        for (i, s) in sums.iter_mut().enumerate() {
            *s = s.wrapping_add(u64::from_ne_bytes(
                c[i * 8..i * 8 + 8].try_into().expect("8 bytes"),
            ));
        }
    }
    let mut h = sums.iter().fold(bytes.len() as u64, |h, s| {
        h.rotate_left(17) ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    });
    for &b in chunks.remainder() {
        h = h.rotate_left(5) ^ u64::from(b);
    }
    h
}

/// The producer's message buffer: header + payload; the first payload word varies with
/// the sequence number so no two messages are alike.
pub struct Maker {
    buf: Vec<u8>,
}

impl Maker {
    pub fn new(size: usize) -> Self {
        let buf = (0..size)
            .map(|i| (i as u8).wrapping_mul(151).wrapping_add(7))
            .collect();
        Maker { buf }
    }
    pub fn make(&mut self, seq: u64) -> &[u8] {
        let n = self.buf.len();
        if n < HEADER {
            self.buf[..8].copy_from_slice(&seq.to_ne_bytes());
            return &self.buf;
        }
        if n >= HEADER + 8 {
            self.buf[HEADER..HEADER + 8]
                .copy_from_slice(&seq.wrapping_mul(0x2545_F491_4F6C_DD1D).to_ne_bytes());
        }
        let sum = checksum(&self.buf[HEADER..]) ^ seq;
        self.buf[..8].copy_from_slice(&seq.to_ne_bytes());
        self.buf[8..16].copy_from_slice(&sum.to_ne_bytes());
        &self.buf
    }
}

/// Checks one received message; `Err` says what is wrong.
pub fn verify(msg: &[u8], expected_seq: u64, size: usize) -> std::result::Result<(), String> {
    if msg.len() != size {
        return Err(format!(
            "message {expected_seq} is {} bytes, expected {size}",
            msg.len()
        ));
    }
    let seq = u64::from_ne_bytes(msg[..8].try_into().expect("8 bytes"));
    if seq != expected_seq {
        return Err(format!(
            "message {seq} arrived where {expected_seq} was expected"
        ));
    }
    if size < HEADER {
        return Ok(());
    }
    let sum = u64::from_ne_bytes(msg[8..16].try_into().expect("8 bytes"));
    if checksum(&msg[HEADER..]) ^ seq != sum {
        return Err(format!("message {seq} failed its checksum"));
    }
    Ok(())
}

/// Follows a stream by the numbers its messages carry: each message must carry the number
/// after the previous one plus what `Lagged` said was missed since. The same check holds
/// for a local broadcast and for an import (which keeps its source's numbers).
#[derive(Debug, Default)]
pub struct Follow {
    expected: Option<u64>,
    /// The number the first message carried.
    pub first: Option<u64>,
}

impl Follow {
    /// Checks one message (number and checksum); returns the number it carries.
    pub fn message(&mut self, msg: &[u8], size: usize) -> std::result::Result<u64, String> {
        if msg.len() < 8 {
            return Err(format!("a message of {} bytes, expected {size}", msg.len()));
        }
        let seq = u64::from_ne_bytes(msg[..8].try_into().expect("8 bytes"));
        let want = self.expected.unwrap_or(seq);
        verify(msg, want, size)?;
        self.first.get_or_insert(seq);
        self.expected = Some(seq.wrapping_add(1));
        Ok(seq)
    }
    /// [`message`](Self::message) for a message the broadcast delivered as number `n`:
    /// the number it carries must be `n` too.
    pub fn numbered(&mut self, msg: &[u8], n: u64, size: usize) -> std::result::Result<(), String> {
        match self.message(msg, size)? {
            seq if seq == n => Ok(()),
            seq => Err(format!("message {seq} was delivered as number {n}")),
        }
    }
    /// `Lagged { missed }`: the next message carries a number that much further on.
    pub fn missed(&mut self, missed: u64) {
        if let Some(e) = &mut self.expected {
            *e = e.wrapping_add(missed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_catches_changes() {
        let mut m = Maker::new(4096);
        let msg = m.make(7).to_vec();
        assert_eq!(verify(&msg, 7, 4096), Ok(()));
        assert!(verify(&msg, 8, 4096).is_err());
        for i in [16, 100, 4095] {
            let mut bad = msg.clone();
            bad[i] ^= 1;
            assert!(verify(&bad, 7, 4096).is_err(), "flip at {i}");
        }
        let mut f = Follow::default();
        assert_eq!(f.message(m.make(5), 4096), Ok(5));
        f.missed(2);
        assert!(
            f.message(m.make(7), 4096).is_err(),
            "7 after 5 + 2 missed is 8"
        );
        assert_eq!(f.message(m.make(8), 4096), Ok(8));
        assert_eq!(f.first, Some(5));
        let a = m.make(1).to_vec();
        let b = m.make(2).to_vec();
        assert_ne!(a[16..], b[16..]);
    }
}
