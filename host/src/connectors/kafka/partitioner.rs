//! Which partition a produced record goes to: the Java client's default for a keyed record
//! (`toPositive(murmur2(key)) % partitions`), so that a key lands where other Kafka producers
//! put it, and a compacted topic or a keyed consumer sees every copy of a key's records in one
//! partition. A deterministic choice: a commit repeated after a crash sends each record to the
//! partition it went to the first time (while the topic's partition count stays the same).

/// The partition of a record with `key` (a record without a key is placed by its id), among
/// `partitions` (at least 1).
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`): seed `0x9747b28c`,
/// little-endian words.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests {
    use super::{murmur2, partition_of};

    /// The Java client's values (librdkafka's `unittest_murmur2` lists them).
    #[test]
    fn murmur2_is_the_java_clients() {
        let unaligned = "PreAmbleWillBeRemoved,ThePrePartThatIs";
        let cases: [(&str, u32); 12] = [
            ("kafka", 0xd067cf64),
            ("giberish123456789", 0x8f552b0c),
            ("1234", 0x9fc97b14),
            ("234", 0xe7c009ca),
            ("34", 0x873930da),
            ("4", 0x5a4b5ca1),
            (unaligned, 0x78424f1c),
            (&unaligned[1..], 0x4a62b377),
            (&unaligned[2..], 0xe0e4e09e),
            (&unaligned[3..], 0x62b8b43f),
            ("", 0x106e08d9),
            ("", 0x106e08d9),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key.as_bytes()), hash, "{key:?}");
        }
    }

    #[test]
    fn a_key_goes_to_one_partition_within_the_topic() {
        for key in ["a", "kafka", "giberish123456789", ""] {
            let p = partition_of(key.as_bytes(), 7);
            assert!((0..7).contains(&p));
            assert_eq!(p, partition_of(key.as_bytes(), 7));
        }
        // 0xd067cf64 & 0x7fffffff = 0x5067cf64 = 1348980580; % 7 = 3.
        assert_eq!(partition_of(b"kafka", 7), 1_348_980_580 % 7);
    }
}
