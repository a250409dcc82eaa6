//! What the property tests of the decoders share (tests only).
//!
//! Every decoder of input the host does not control (job files, `_metadata`, state files and
//! segments, leases, control requests, HTTP requests, guests' batches and snapshots) has a
//! `proptests` module beside it that feeds it arbitrary bytes and mutations of valid
//! encodings, and round-trips valid values where there is an encoder. The decoder must never
//! panic, and must explain every input it refuses ([`explained`]).
//!
//! How many cases each property runs is proptest's `PROPTEST_CASES` (256 when unset: the
//! whole set takes seconds in the test build); `just fuzz` runs many more.

use std::fmt::Display;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Largest input of arbitrary bytes: decoders fail within their first bytes or read through,
/// and a longer input only slows the run down.
const ARBITRARY_BYTES_MAX: usize = 512;

/// Arbitrary bytes, up to [`ARBITRARY_BYTES_MAX`].
pub fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=ARBITRARY_BYTES_MAX)
}

/// One change to an encoding. Positions are taken modulo the input's length.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Flips one bit of the byte at this position.
    Flip(usize, u8),
    /// Sets the byte at this position.
    Set(usize, u8),
    /// Inserts a byte before this position.
    Insert(usize, u8),
    /// Removes the byte at this position.
    Delete(usize),
    /// Cuts the input off at this position.
    Truncate(usize),
    /// Copies up to 16 bytes from one position over another.
    Splice(usize, usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>(), 1..=16u8)
            .prop_map(|(from, to, len)| Mutation::Splice(from, to, len)),
    ]
}

/// Applies `mutation` to `bytes` (an empty input only grows).
pub fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        if let Mutation::Insert(_, byte) | Mutation::Set(_, byte) = mutation {
            bytes.push(*byte);
        }
        return;
    }
    let len = bytes.len();
    match *mutation {
        Mutation::Flip(at, bit) => bytes[at % len] ^= 1 << bit,
        Mutation::Set(at, byte) => bytes[at % len] = byte,
        Mutation::Insert(at, byte) => bytes.insert(at % (len + 1), byte),
        Mutation::Delete(at) => drop(bytes.remove(at % len)),
        Mutation::Truncate(at) => bytes.truncate(at % len),
        Mutation::Splice(from, to, n) => {
            let (from, to) = (from % len, to % len);
            let n = usize::from(n).min(len - from).min(len - to);
            bytes.copy_within(from..from + n, to);
        }
    }
}

/// `valid`, changed by 1 to 8 [`Mutation`]s.
pub fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(mutation(), 1..=8).prop_map(move |mutations| {
        let mut bytes = valid.clone();
        mutations.iter().for_each(|m| apply(&mut bytes, m));
        bytes
    })
}

/// Fails the case unless `refusal` says something: every refused input gets a reason.
pub fn explained(refusal: &impl Display) -> Result<(), TestCaseError> {
    let message = refusal.to_string();
    prop_assert!(!message.trim().is_empty(), "a refusal without a reason");
    Ok(())
}

/// An id as [`crate::ids::check_id`] accepts it.
pub fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

/// Text of any characters, short.
pub fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

/// A varint as postcard writes lengths: 7 bits a byte, least significant first.
pub fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Lengths an input may claim, far beyond what it holds: from 1 MiB to the largest a varint
/// holds.
pub fn huge_len() -> impl Strategy<Value = u64> {
    prop_oneof![Just(u64::MAX), Just(u64::from(u32::MAX)), (1u64 << 20)..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_within_the_input() {
        let mut bytes = b"abcdef".to_vec();
        apply(&mut bytes, &Mutation::Splice(4, 6, 16));
        assert_eq!(bytes, b"efcdef");
        apply(&mut bytes, &Mutation::Truncate(6));
        assert!(bytes.is_empty());
        apply(&mut bytes, &Mutation::Delete(0));
        apply(&mut bytes, &Mutation::Insert(3, b'x'));
        assert_eq!(bytes, b"x");
        assert_eq!(varint(300), [0xac, 0x02]);
    }
}
