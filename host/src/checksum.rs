//! The checksum of state files, segments, pieces and metadata: XXH3-128.
//!
//! It guards against corruption (bit flips, truncation, a file from elsewhere), which is its job
//! here; it is no signature, and neither would an unkeyed SHA-256 be. It runs at memory speed,
//! where SHA-256 held restores to a third of the disk's bandwidth (see the benchmarks).
//!
//! A leaf: the snapshot (`snapshot.rs`) sums the pieces it merges and the store the files it
//! writes and reads, and neither has to reach into the other for it.

use xxhash_rust::xxh3::{Xxh3, xxh3_128};

/// The checksum of `bytes`.
pub fn checksum(bytes: &[u8]) -> [u8; 16] {
    xxh3_128(bytes).to_le_bytes()
}

/// [`checksum`] of `parts` one after another, without joining them.
pub fn checksum_of_parts(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = Xxh3::new();
    parts.iter().for_each(|part| hasher.update(part));
    hasher.digest128().to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_sum_as_the_whole() {
        let whole = b"a segment, its table, its length";
        for cut in [0, 1, 10, whole.len()] {
            let (a, b) = whole.split_at(cut);
            assert_eq!(checksum_of_parts(&[a, b]), checksum(whole));
        }
        assert_ne!(checksum(b"a"), checksum(b"b"));
    }
}
