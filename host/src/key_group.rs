//! Key groups: where a key's state lives.
//!
//! A `key-by` edge hashes each record's key into one of `max_parallelism` key groups, and key
//! groups map to subtasks in contiguous ranges (as in Flink). Both functions are part of the
//! contract between a savepoint and every job that resumes from it: a key whose group moved
//! would land on a subtask that does not hold its state. So the function has a name,
//! [`KEY_GROUP_FUNCTION`], recorded in every `_metadata` with `max_parallelism`, and the tests
//! below pin it by literal values (computed by an independent implementation of XXH3, Python's
//! `xxhash`), so that every language can check its own implementation against them.
//! Performs no I/O.

use xxhash_rust::xxh3::xxh3_64;

/// The name of [`key_group`] as `_metadata` records it. A host that ever changes the function
/// must give it a new name, so that points written under the old one are refused or remapped.
pub const KEY_GROUP_FUNCTION: &str = "xxh3-64-mod";

/// Largest `max_parallelism` a job may set: the number of key groups.
pub const MAX_PARALLELISM_LIMIT: u32 = 32_768;

/// The key group of a key: XXH3-64 (seed 0) of its bytes, modulo `max_parallelism`. Stable
/// across processes, versions, machines and languages.
pub fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    (xxh3_64(key) % u64::from(max_parallelism)) as u32
}

/// The subtask that owns a key group at `parallelism`: contiguous ranges of groups.
pub fn subtask_of_key_group(key_group: u32, max_parallelism: u32, parallelism: u32) -> u32 {
    (u64::from(key_group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

/// The key groups subtask `subtask` of `parallelism` owns: the groups `g` with
/// `subtask_of_key_group(g) == subtask`, which are contiguous.
pub fn key_group_range(
    subtask: u32,
    parallelism: u32,
    max_parallelism: u32,
) -> std::ops::Range<u32> {
    // The first group g with g * parallelism / max_parallelism >= subtask.
    let first = |s: u32| {
        (u64::from(s) * u64::from(max_parallelism)).div_ceil(u64::from(parallelism)) as u32
    };
    first(subtask)..first(subtask + 1).min(max_parallelism)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (key, XXH3-64 of the key, its group at max parallelism 128, 7 and 32 768).
    const VECTORS: &[(&[u8], u64, [u32; 3])] = &[
        (b"", 3_244_421_341_483_603_138, [66, 4, 5_314]),
        (b"apple", 5_871_078_790_819_449_344, [0, 4, 2_560]),
        (b"the", 14_632_902_600_990_866_813, [125, 5, 15_741]),
        (b"barrier", 10_602_291_911_624_540_275, [115, 1, 16_499]),
        (b"\xff\x00", 794_437_103_675_513_319, [103, 0, 6_631]),
    ];

    #[test]
    fn key_groups_match_the_pinned_vectors() {
        for &(key, hash, groups) in VECTORS {
            assert_eq!(xxh3_64(key), hash, "hash of {key:?}");
            for (max_parallelism, group) in [128, 7, MAX_PARALLELISM_LIMIT].into_iter().zip(groups)
            {
                assert_eq!(
                    key_group(key, max_parallelism),
                    group,
                    "group of {key:?} at max parallelism {max_parallelism}"
                );
            }
        }
    }

    #[test]
    fn key_groups_map_to_subtasks_in_contiguous_ranges() {
        // 128 groups over 3 subtasks: 0..=42 -> 0, 43..=85 -> 1, 86..=127 -> 2.
        let owners: Vec<u32> = (0..128).map(|g| subtask_of_key_group(g, 128, 3)).collect();
        assert_eq!(owners.iter().filter(|&&s| s == 0).count(), 43);
        assert_eq!(owners.iter().filter(|&&s| s == 1).count(), 43);
        assert_eq!(owners.iter().filter(|&&s| s == 2).count(), 42);
        assert!(owners.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            (owners[42], owners[43], owners[85], owners[86]),
            (0, 1, 1, 2)
        );
        assert_eq!(subtask_of_key_group(6, 7, 2), 1);
        for (parallelism, max_parallelism) in [(3, 128), (2, 7), (7, 7), (1, 1), (5, 32_768)] {
            for subtask in 0..parallelism {
                let range = key_group_range(subtask, parallelism, max_parallelism);
                let owned: Vec<u32> = (0..max_parallelism)
                    .filter(|&g| subtask_of_key_group(g, max_parallelism, parallelism) == subtask)
                    .collect();
                assert_eq!(
                    range.collect::<Vec<_>>(),
                    owned,
                    "{subtask} of {parallelism}"
                );
            }
        }
        assert_eq!(key_group_range(1, 3, 128), 43..86);
        assert_eq!(subtask_of_key_group(3, 7, 2), 0);
    }
}
