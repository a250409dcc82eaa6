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
        held.merge(
            0..u32::MAX,
            b"position".to_vec(),
            vec![(g, d, b.to_vec())],
            false,
        )
        .unwrap();
    }
    held.home_new_pieces(segment, sequence);
}

/// Segments in memory, by name.
#[derive(Clone, Debug)]
pub(super) struct InMemory(pub(super) BTreeMap<String, Bytes>);

impl InMemory {
    /// The segments of `encoded`, as written.
    pub(super) fn of(encoded: &Encoded<'_>) -> InMemory {
        let segments = encoded.segments.iter();
        InMemory(
            segments
                .map(|(n, p)| (n.to_string(), segment_bytes(p).to_vec().into()))
                .collect(),
        )
    }
}

impl Segments for InMemory {
    fn bytes(&mut self, name: &str) -> Result<&Bytes, SegmentError> {
        self.0.get(name).ok_or_else(|| SegmentError {
            segment: name.to_owned(),
            fault: SegmentFault::Unreadable(std::io::ErrorKind::NotFound.into()),
        })
    }
}

/// The table of segment `name` of `segments`.
fn table(segments: &InMemory, name: &str) -> Vec<Entry> {
    open_segment(&segments.0[name]).unwrap()
}

#[test]
fn a_state_file_round_trips_through_its_segments() {
    let mut state = held(&[(1, false, b"one"), (2, false, b"two")], "a.seg", 1);
    take(&mut state, &[(1, true, b"+1")], "b.seg", 2);
    let encoded = encode(&state);
    let mut segments = InMemory::of(&encoded);
    assert!(segments.0["a.seg"].starts_with(b"onetwo"));
    let back = decode(&Bytes::from(encoded.state_file.to_vec()))
        .unwrap()
        .load(&mut segments)
        .unwrap();
    assert_eq!(back.key_groups, state.key_groups);
    assert_eq!(back.operator_state, state.operator_state);
}

/// Whether `part` lies within `whole`'s bytes (a slice of it, not a copy).
fn within(part: &Bytes, whole: &Bytes) -> bool {
    let range = whole.as_ptr_range();
    range.contains(&part.as_ptr()) && part.as_ptr_range().end <= range.end
}

/// `state` written, then read back: the state file's bytes, the segments, the state.
fn written_and_read(state: &Held) -> (Bytes, InMemory, Held) {
    let encoded = encode(state);
    let (file, mut segments) = (
        Bytes::from(encoded.state_file.to_vec()),
        InMemory::of(&encoded),
    );
    let back = decode(&file).unwrap().load(&mut segments).unwrap();
    (file, segments, back)
}

#[test]
fn a_state_read_back_shares_its_bytes_while_its_segments_are_mostly_held() {
    let (one, two, again) = ([1u8; 1000], [2u8; 1000], [3u8; 3000]);
    let mut state = held(&[(1, false, &one), (2, false, &two)], "a.seg", 1);
    state.operator_state = Bytes::from_static(b"operator state");
    let (file, segments, back) = written_and_read(&state);
    assert!(
        within(&back.operator_state, &file),
        "a copy of the operator state"
    );
    for piece in back.key_groups.values().flatten() {
        assert!(
            within(&piece.bytes, &segments.0["a.seg"]),
            "a copy of a piece"
        );
    }
    assert_eq!(back, state);
    // Group 1 written again: what the state still holds of `a` is less than half of it, and
    // a slice would keep all of `a` in memory for group 2's piece alone.
    take(&mut state, &[(1, false, &again)], "b.seg", 2);
    let (_, segments, back) = written_and_read(&state);
    let kept = &back.key_groups[&2][0].bytes;
    assert!(
        !within(kept, &segments.0["a.seg"]),
        "a slice of a mostly stale segment"
    );
    assert!(within(&back.key_groups[&1][0].bytes, &segments.0["b.seg"]));
    assert_eq!(back, state);
}

/// The state file's format, with its operator state written as serde writes a slice by
/// default (a sequence of bytes), as it was before it was written as bytes.
#[derive(Serialize)]
struct IndexAsSequences<'a> {
    operator_state: &'a [u8],
    watermark: Option<i64>,
    segments: Vec<(&'a str, u64, &'a [u8], &'a [u8])>,
}

#[test]
fn the_operator_state_is_written_as_bytes_in_the_format_it_always_had() {
    let mut state = held(&[(1, false, b"one")], "a.seg", 1);
    state.operator_state = (0..=255u8).cycle().take(1000).collect::<Vec<_>>().into();
    let encoded = encode(&state);
    let before = IndexAsSequences {
        operator_state: &state.operator_state,
        watermark: None,
        segments: vec![("a.seg", 1, &[1][..], &[0][..])],
    };
    assert_eq!(
        encoded.state_file.to_vec(),
        postcard::to_stdvec(&before).unwrap()
    );
    let back = decode(&Bytes::from(encoded.state_file.to_vec())).unwrap();
    let back = back.load(&mut InMemory::of(&encoded)).unwrap();
    assert_eq!(back.operator_state, state.operator_state);
}

#[test]
fn the_state_file_is_written_in_parts_sharing_the_operator_state() {
    let mut state = held(&[(1, false, b"one")], "a.seg", 1);
    take(&mut state, &[(2, false, b"two")], "b.seg", 2);
    state.operator_state = vec![7u8; 300].into();
    state.watermark = Some(-7);
    let encoded = encode(&state);
    let whole = postcard::to_stdvec(&Index {
        operator_state: &state.operator_state,
        watermark: Some(-7),
        segments: vec![
            ("a.seg", 1, &[1][..], &[0][..]),
            ("b.seg", 2, &[1][..], &[0][..]),
        ],
    })
    .unwrap();
    assert_eq!(encoded.state_file.to_vec(), whole);
    assert_eq!(encoded.state_file.len(), whole.len());
    assert_eq!(encoded.state_file.checksum(), checksum(&whole));
    let [_, operator_state, _] = encoded.state_file.parts();
    assert_eq!(
        operator_state.as_ptr(),
        state.operator_state.as_ptr(),
        "not a copy"
    );
}

#[test]
fn a_segment_is_written_in_parts_sharing_the_pieces_held() {
    let state = held(&[(1, false, b"one"), (1, true, b"two!")], "a.seg", 1);
    let encoded = encode(&state);
    let segment = segment_bytes(&encoded.segments["a.seg"]);
    let bytes = segment.to_vec();
    let pieces = &state.key_groups[&1];
    let [one, two] = [&pieces[0].bytes, &pieces[1].bytes];
    assert_eq!(segment.parts()[..2], [&one[..], &two[..]], "not copies");
    assert_eq!(segment.parts()[0].as_ptr(), one.as_ptr());
    assert_eq!(segment.parts()[1].as_ptr(), two.as_ptr());
    // The trailer: the table, its length, and the checksum of everything before it.
    let summed = bytes.len() - 16;
    assert_eq!(bytes[summed..], checksum(&bytes[..summed]));
    assert!(bytes.starts_with(b"onetwo!"));
    assert_eq!(open_segment(&bytes).unwrap().len(), 2);
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
    assert_eq!(table(&segments, "a.seg")[0], BLANK);
    let back = decode(&Bytes::from(encoded.state_file.to_vec()))
        .unwrap()
        .load(&mut segments)
        .unwrap();
    assert_eq!(back.key_groups, state.key_groups);
}

#[test]
fn a_byte_changed_anywhere_in_a_segment_or_a_name_outside_the_folder_is_refused() {
    let mut state = held(&[(1, false, b"one"), (2, false, b"two")], "a.seg", 1);
    take(&mut state, &[(1, false, b"ONE")], "b.seg", 2);
    let encoded = encode(&state);
    let segments = InMemory::of(&encoded);
    // Every byte of segment `a`, even of group 1's old whole state, which is no longer held.
    for at in 0..segments.0["a.seg"].len() {
        let mut damaged = InMemory(segments.0.clone());
        let mut bytes = damaged.0["a.seg"].to_vec();
        bytes[at] ^= 1;
        damaged.0.insert("a.seg".to_owned(), bytes.into());
        let error = decode(&Bytes::from(encoded.state_file.to_vec()))
            .unwrap()
            .load(&mut damaged);
        let error = error.unwrap_err();
        assert!(
            matches!(&error, SegmentError { segment, fault: SegmentFault::Checksum } if segment == "a.seg"),
            "a bit flipped at {at}: {error}"
        );
    }
    for bad in ["../a.seg", ".seg", "a/b.seg", "a.state"] {
        assert!(!is_segment_name(bad), "{bad}");
    }
    let escaping = held(&[(1, false, b"one")], "../a.seg", 1);
    let error = decode(&Bytes::from(encode(&escaping).state_file.to_vec())).unwrap_err();
    assert!(
        matches!(&error, StateFileError::NoSegment(name) if name == "../a.seg"),
        "{error}"
    );
}

#[test]
fn a_chain_that_does_not_start_whole_is_refused() {
    let state = held(&[(1, false, b"one")], "a.seg", 1);
    let encoded = encode(&state);
    let mut segments = InMemory::of(&encoded);
    let mut entry = table(&segments, "a.seg")[0];
    entry.delta = true;
    let pieces = BTreeMap::from([(0, (entry, &b"one"[..]))]);
    segments
        .0
        .insert("a.seg".to_owned(), segment_bytes(&pieces).to_vec().into());
    let error = decode(&Bytes::from(encoded.state_file.to_vec()))
        .unwrap()
        .load(&mut segments);
    assert_eq!(
        error.unwrap_err().to_string(),
        "segment a.seg: entry 0 (key group 1) is out of order"
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
    let held = decode_grouped(&Bytes::from(bytes.clone())).unwrap();
    assert_eq!(held.key_groups[&3], [Piece::new(&b"three"[..])]);
    assert_eq!(&*held.operator_state, b"pos");
    assert!(decode_grouped(&Bytes::from_static(&[0xff, 0xff])).is_err());
}

#[test]
fn timers_and_a_watermark_round_trip_beside_the_keyed_state_and_apart_from_it() {
    let mut state = Held::default();
    let keyed = vec![(1, false, b"one".to_vec()), (2, false, b"two".to_vec())];
    state.merge(0..128, b"pos".to_vec(), keyed, false).unwrap();
    state
        .merge_timers(0..128, vec![(2, false, b"t2".to_vec())], false)
        .unwrap();
    state.watermark = Some(1_234);
    state.home_new_pieces("a.seg", 1);
    state
        .merge(
            0..128,
            b"pos".to_vec(),
            vec![(1, true, b"+1".to_vec())],
            false,
        )
        .unwrap();
    let timers = vec![(2, true, b"+t".to_vec()), (5, false, b"t5".to_vec())];
    state.merge_timers(0..128, timers, false).unwrap();
    state.home_new_pieces("b.seg", 2);
    let (_, segments, back) = written_and_read(&state);
    assert_eq!(back, state);
    assert_eq!(back.timers[&2].len(), 2, "whole, then a delta");
    // One segment holds both kinds: entries 0 and 1 the guest's, 2 the timers'.
    let groups: Vec<u32> = table(&segments, "a.seg").iter().map(|e| e.group).collect();
    assert_eq!(groups, [1, 2, 2]);
    assert!(back.key_groups.keys().eq([1, 2].iter()));
    assert!(back.timers.keys().eq([2, 5].iter()));
}

#[test]
fn state_files_of_format_3_still_read_with_neither_timers_nor_watermark() {
    let state = held(&[(1, false, b"one"), (4, false, b"four")], "a.seg", 1);
    let encoded = encode(&state);
    let format_3 = postcard::to_stdvec(&Index3 {
        operator_state: b"position",
        segments: vec![("a.seg", 1, &[0b11][..])],
    })
    .unwrap();
    let back = decode_format_3(&Bytes::from(format_3)).unwrap();
    let back = back.load(&mut InMemory::of(&encoded)).unwrap();
    assert_eq!(back.key_groups, state.key_groups);
    assert!(back.timers.is_empty());
    assert_eq!(back.watermark, None);
}
