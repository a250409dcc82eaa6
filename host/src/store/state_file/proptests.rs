//! Property tests of the state file and segment decoders ([`decode`], [`decode_grouped`],
//! [`open_segment`], [`Decoded::load`]): their bytes come from disk or an object store.

use proptest::prelude::*;

use super::tests::InMemory;
use super::*;
use crate::fuzz::{bytes, explained, huge_len, mutated, varint};
use crate::snapshot::proptests::held;

/// `held` written: its state file and its segments.
fn written(held: &Held) -> (Vec<u8>, InMemory) {
    let encoded = encode(held);
    (encoded.state_file.to_vec(), InMemory::of(&encoded))
}

/// A state generated (a key group added if it had none), written, and one of its segments (by
/// `pick`).
fn with_a_segment() -> impl Strategy<Value = (Vec<u8>, InMemory, String)> {
    (held(), any::<usize>()).prop_map(|(mut held, pick)| {
        if held.key_groups.is_empty() {
            let group = vec![(0, false, b"state".to_vec())];
            held.merge(0..1, Vec::new(), group, false)
                .expect("a whole group");
            held.home_new_pieces("last.seg", u64::MAX);
        }
        let (file, segments) = written(&held);
        let names = segments.0.keys();
        let name = names
            .clone()
            .nth(pick % names.len())
            .expect("a segment")
            .clone();
        (file, segments, name)
    })
}

/// `bytes` with the checksum a segment ends with recomputed.
fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.extend_from_slice(&checksum(&bytes));
    bytes
}

/// Decodes a state file and loads it from `segments`, neither of which may panic; a refusal
/// must say why.
fn loads_or_explains(file: &[u8], segments: &mut InMemory) -> Result<(), TestCaseError> {
    match decode(&Bytes::copy_from_slice(file)) {
        Err(refusal) => explained(&refusal),
        Ok(decoded) => match decoded.load(segments) {
            Err(refusal) => explained(&refusal),
            Ok(_) => Ok(()),
        },
    }
}

proptest! {
    #[test]
    fn arbitrary_state_files_are_refused_with_a_reason(bytes in bytes()) {
        loads_or_explains(&bytes, &mut InMemory(BTreeMap::new()))?;
        if let Err(refusal) = decode_grouped(&Bytes::from(bytes)) {
            explained(&refusal)?;
        }
    }

    #[test]
    fn arbitrary_segments_are_refused_with_a_reason(
        bytes in bytes(),
        sealed in any::<bool>(),
    ) {
        let bytes = if sealed { resealed(bytes) } else { bytes };
        match open_segment(&bytes) {
            Err(refusal) => explained(&refusal)?,
            Ok(table) => {
                let end = (bytes.len() - TRAILER_LEN) as u64;
                prop_assert!(table.iter().all(|e| e.offset + e.len <= end));
            }
        }
        // A state file that holds every entry of it: every other one as a timer.
        let decoded = Decoded {
            operator_state: Bytes::new(),
            watermark: None,
            segments: vec![("s.seg".to_owned(), 1, vec![0x55; 64], vec![0xaa; 64])],
        };
        let mut segments = InMemory(BTreeMap::from([("s.seg".to_owned(), bytes.into())]));
        if let Err(refusal) = decoded.load(&mut segments) {
            explained(&refusal)?;
        }
    }

    #[test]
    fn mutated_state_files_are_refused_with_a_reason(
        (file, mut segments) in held().prop_flat_map(|held| {
            let (file, segments) = written(&held);
            (mutated(file), Just(segments))
        }),
    ) {
        loads_or_explains(&file, &mut segments)?;
    }

    /// The segment's checksum recomputed after the change: its table and entries meet the
    /// damage.
    #[test]
    fn mutated_segments_under_a_valid_checksum_are_refused_with_a_reason(
        (file, mut segments, name, damaged) in with_a_segment().prop_flat_map(
            |(file, segments, name)| {
                let valid = &segments.0[&name];
                let unsealed = valid[..valid.len() - 16].to_vec();
                (Just(file), Just(segments), Just(name), mutated(unsealed))
            },
        ),
    ) {
        segments.0.insert(name, resealed(damaged).into());
        loads_or_explains(&file, &mut segments)?;
    }

    #[test]
    fn states_round_trip_through_their_state_file_and_segments(held in held()) {
        let (file, mut segments) = written(&held);
        let back = decode(&Bytes::from(file)).unwrap().load(&mut segments).unwrap();
        prop_assert_eq!(back, held);
    }

    /// A length far beyond the input is refused at the end of the input, not allocated: the
    /// operator state's, a segment name's, a segment table's, or the count of its entries.
    #[test]
    fn a_huge_length_is_refused_without_being_allocated(len in huge_len()) {
        let started = std::time::Instant::now();
        let state_files = [varint(len), [&[0u8][..], &varint(len)].concat(), b"\0\x01".iter().copied().chain(varint(len)).collect()];
        for file in state_files {
            prop_assert!(decode(&Bytes::from(file)).is_err());
        }
        let table_len = u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
        let error = open_segment(&resealed(table_len.to_vec())).unwrap_err();
        prop_assert!(matches!(error, SegmentFault::ShorterThanItsTable), "{error}");
        let table = varint(len);
        let table_len = (table.len() as u32).to_le_bytes();
        let error = open_segment(&resealed([&table[..], &table_len].concat())).unwrap_err();
        prop_assert!(matches!(error, SegmentFault::Table(_)), "{error}");
        prop_assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
