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
    let mut s = Sums::default();
    s.add(bytes);
    s.finish(bytes)
}

/// [`checksum`] over a message fed in pieces: every piece but the last a multiple of 32
/// bytes long, so the four lanes line up as they do over the whole.
#[derive(Default)]
struct Sums {
    lanes: [u64; 4],
    len: u64,
}

impl Sums {
    /// Adds the whole 32-byte chunks of `bytes` (the rest is [`finish`](Self::finish)'s).
    fn add(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        for c in bytes.chunks_exact(32) {
            for (i, s) in self.lanes.iter_mut().enumerate() {
                *s = s.wrapping_add(u64::from_ne_bytes(
                    c[i * 8..i * 8 + 8].try_into().expect("8 bytes"),
                ));
            }
        }
    }
    /// The checksum, given the last piece passed to [`add`](Self::add).
    fn finish(&self, last: &[u8]) -> u64 {
        let mut h = self.lanes.iter().fold(self.len, |h, s| {
            h.rotate_left(17) ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        });
        for &b in last.chunks_exact(32).remainder() {
            h = h.rotate_left(5) ^ u64::from(b);
        }
        h
    }
}

/// How much of a large message's body [`verify_in_place`] copies out at a time: small
/// enough to stay in the L1 cache while it is summed, a multiple of 32.
pub const PIECE: usize = 16 << 10;

/// [`verify`] for a message read where it lies, through `read(offset, buf)` (e.g.
/// `RecvSlot::read`), the header and then [`PIECE`] bytes of body at a time: the message
/// crosses from the ring once, into a buffer that stays in the L1 cache, instead of being
/// copied out whole and then read a second time. `piece` holds `HEADER + PIECE` bytes.
pub fn verify_in_place<E: std::fmt::Display>(
    len: usize,
    piece: &mut [u8; HEADER + PIECE],
    mut read: impl FnMut(usize, &mut [u8]) -> std::result::Result<(), E>,
    expected_seq: u64,
    size: usize,
) -> std::result::Result<(), String> {
    if len != size {
        return Err(format!(
            "message {expected_seq} is {len} bytes, expected {size}"
        ));
    }
    let first = len.min(HEADER + PIECE);
    read(0, &mut piece[..first]).map_err(|e| e.to_string())?;
    if len <= HEADER + PIECE {
        return verify(&piece[..len], expected_seq, size);
    }
    let seq = u64::from_ne_bytes(piece[..8].try_into().expect("8 bytes"));
    if seq != expected_seq {
        return Err(format!(
            "message {seq} arrived where {expected_seq} was expected"
        ));
    }
    let sum = u64::from_ne_bytes(piece[8..16].try_into().expect("8 bytes"));
    let mut sums = Sums::default();
    sums.add(&piece[HEADER..]);
    let mut off = HEADER + PIECE;
    loop {
        let n = PIECE.min(len - off);
        let body = &mut piece[..n];
        read(off, body).map_err(|e| e.to_string())?;
        sums.add(body);
        off += n;
        if off == len {
            return match sums.finish(body) {
                s if s ^ seq == sum => Ok(()),
                _ => Err(format!("message {seq} failed its checksum")),
            };
        }
    }
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
        // In place, in pieces, at sizes around the piece boundaries: the same verdicts.
        for size in [24, 100, PIECE + 16, PIECE + 17, 3 * PIECE + 40, 1 << 20] {
            let mut m = Maker::new(size);
            let msg = m.make(9).to_vec();
            let mut piece = Box::new([0u8; HEADER + PIECE]);
            let read = |msg: &[u8]| {
                let msg = msg.to_vec();
                move |off: usize, b: &mut [u8]| -> std::result::Result<(), String> {
                    b.copy_from_slice(&msg[off..off + b.len()]);
                    Ok(())
                }
            };
            assert_eq!(
                verify_in_place(size, &mut piece, read(&msg), 9, size),
                Ok(())
            );
            assert!(verify_in_place(size, &mut piece, read(&msg), 8, size).is_err());
            for i in [16, size / 2, size - 1] {
                let mut bad = msg.clone();
                bad[i] ^= 1;
                assert!(
                    verify_in_place(size, &mut piece, read(&bad), 9, size).is_err(),
                    "{size}: flip at {i}"
                );
                assert!(verify(&bad, 9, size).is_err());
            }
        }
        let a = m.make(1).to_vec();
        let b = m.make(2).to_vec();
        assert_ne!(a[16..], b[16..]);
    }
}
