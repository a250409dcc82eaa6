use super::*;

/// State with these changes (`(group, delta, bytes)`) taken in, one snapshot each, its new
/// pieces homed in `segment` (written `sequence`-th).
fn held(changed: &[(u32, bool, &[u8])], segment: &str, sequence: u64) -> Held {
    let mut held = Held::default();
    take(&mut held, changed, segment, sequence);
    held
}

fn take(held: &mut Held, changed: &[(u32, bool, &[u8])], segment: &str, sequence: u64) {
    for &(g, d, b) in changed {
        held.merge(b"position".to_vec(), vec![(g, d, b.to_vec())], false)
            .unwrap();
    }
    held.home_new_pieces(segment, sequence);
}

/// Segments in memory, by name.
struct InMemory(BTreeMap<String, Vec<u8>>);

impl InMemory {
    fn of(encoded: &Encoded<'_>) -> InMemory {
        let segments = encoded.segments.iter();
        InMemory(
            segments
                .map(|(n, p)| (n.to_string(), segment_bytes(p)))
                .collect(),
        )
    }
}

impl Segments for InMemory {
    fn table(&mut self, name: &str) -> Result<Vec<Entry>, SegmentError> {
        let bytes = &self.0[name];
        let (rest, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
        let trailer: &[u8; TRAILER_LEN] = trailer.try_into().unwrap();
        let table = &rest[rest.len() - table_len(trailer) as usize..];
        decode_table(table, trailer).map_err(|problem| SegmentError {
            segment: name.to_owned(),
            problem,
        })
    }

    fn piece(&mut self, name: &str, entry: &Entry) -> Result<Vec<u8>, SegmentError> {
        let bytes = &self.0[name][entry.offset as usize..][..entry.len as usize];
        if checksum(bytes) != entry.checksum {
            let problem = "checksum".to_owned();
            return Err(SegmentError {
                segment: name.to_owned(),
                problem,
            });
        }
        Ok(bytes.to_vec())
    }
}

#[test]
fn a_state_file_round_trips_through_its_segments() {
    let mut state = held(&[(1, false, b"one"), (2, false, b"two")], "a.seg", 1);
    take(&mut state, &[(1, true, b"+1")], "b.seg", 2);
    let encoded = encode(&state);
    let mut segments = InMemory::of(&encoded);
    assert!(segments.0["a.seg"].starts_with(b"onetwo"));
    let back = decode(&encoded.state_file)
        .unwrap()
        .load(&mut segments)
        .unwrap();
    assert_eq!(back.key_groups, state.key_groups);
    assert_eq!(back.operator_state, state.operator_state);
}

#[test]
fn the_state_file_names_segments_not_pieces() {
    let mut state = Held::default();
    let groups: Vec<(u32, bool, &[u8])> = (0..128).map(|g| (g, false, &b"whole"[..])).collect();
    take(&mut state, &groups, "0.seg", 0);
    let first = encode(&state).state_file.len();
    for n in 1..=50u64 {
        let deltas: Vec<(u32, bool, &[u8])> = (0..128).map(|g| (g, true, &b"+1"[..])).collect();
        take(&mut state, &deltas, &format!("{n}.seg"), n);
    }
    let later = encode(&state).state_file.len();
    // 6 451 pieces held; the state file lists 51 segments and a bit per piece.
    assert!(later < first + 50 * 40, "{first} -> {later} bytes");
}

#[test]
fn later_pieces_go_to_the_new_segment_and_a_segment_written_again_keeps_its_entries() {
    let mut state = held(&[(1, false, b"one"), (2, false, b"two")], "a.seg", 1);
    take(&mut state, &[(1, false, b"ONE")], "b.seg", 2);
    let encoded = encode(&state);
    let a: Vec<u32> = encoded.segments["a.seg"].keys().copied().collect();
    assert_eq!(a, [1], "entry 0 (group 1's old whole) is no longer held");
    // Written again: group 1's old whole is zeros, its entry blank.
    let mut segments = InMemory::of(&encoded);
    assert!(segments.0["a.seg"].starts_with(b"\0\0\0two"));
    assert_eq!(segments.table("a.seg").unwrap()[0], BLANK);
    let back = decode(&encoded.state_file)
        .unwrap()
        .load(&mut segments)
        .unwrap();
    assert_eq!(back.key_groups, state.key_groups);
}

#[test]
fn a_corrupt_piece_or_table_or_a_name_outside_the_folder_is_refused() {
    let state = held(&[(1, false, b"one")], "a.seg", 1);
    let encoded = encode(&state);
    let mut flipped = InMemory::of(&encoded);
    flipped.0.get_mut("a.seg").unwrap()[2] = b'E';
    let error = decode(&encoded.state_file).unwrap().load(&mut flipped);
    assert_eq!(error.unwrap_err().problem, "checksum");
    let mut table = InMemory::of(&encoded);
    let at = table.0["a.seg"].len() - TRAILER_LEN - 1;
    table.0.get_mut("a.seg").unwrap()[at] ^= 1;
    let error = decode(&encoded.state_file).unwrap().load(&mut table);
    assert!(
        error
            .unwrap_err()
            .problem
            .contains("does not match its checksum")
    );
    for bad in ["../a.seg", ".seg", "a/b.seg", "a.state"] {
        assert!(!is_segment_name(bad), "{bad}");
    }
    let escaping = held(&[(1, false, b"one")], "../a.seg", 1);
    let error = decode(&encode(&escaping).state_file).unwrap_err();
    assert_eq!(
        error,
        "the state file names `../a.seg`, which is no segment file"
    );
}

#[test]
fn a_chain_that_does_not_start_whole_is_refused() {
    let state = held(&[(1, false, b"one")], "a.seg", 1);
    let encoded = encode(&state);
    let mut segments = InMemory::of(&encoded);
    let mut table = segments.table("a.seg").unwrap();
    table[0].delta = true;
    let pieces = BTreeMap::from([(0, (table[0], &b"one"[..]))]);
    segments
        .0
        .insert("a.seg".to_owned(), segment_bytes(&pieces));
    let error = decode(&encoded.state_file).unwrap().load(&mut segments);
    assert_eq!(
        error.unwrap_err().problem,
        "entry 0 (key group 1) is out of order"
    );
}

#[test]
fn state_files_of_format_2_read_as_chains_of_one() {
    #[derive(Serialize)]
    struct Format2<'a> {
        operator_state: &'a [u8],
        key_groups: Vec<(u32, &'a [u8])>,
    }
    let bytes = postcard::to_stdvec(&Format2 {
        operator_state: b"pos",
        key_groups: vec![(3, b"three")],
    })
    .unwrap();
    let held = decode_grouped(&bytes).unwrap();
    assert_eq!(held.key_groups[&3], [Piece::new(&b"three"[..])]);
    assert_eq!(&*held.operator_state, b"pos");
    assert!(decode_grouped(&[0xff, 0xff]).is_err());
}
