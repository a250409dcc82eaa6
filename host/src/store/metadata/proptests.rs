//! Property tests of [`decode`]: `_metadata` comes from disk or an object store, where anything
//! may have changed it.

use proptest::prelude::*;

use super::*;
use crate::fuzz::{bytes, explained, huge_len, id, mutated, text, varint};

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Source), Just(Role::Operator), Just(Role::Sink)]
}

fn kind() -> impl Strategy<Value = BarrierKind> {
    prop_oneof![Just(BarrierKind::Checkpoint), Just(BarrierKind::Savepoint)]
}

fn layout() -> impl Strategy<Value = StateLayout> {
    prop_oneof![
        Just(StateLayout::Blob),
        Just(StateLayout::Grouped),
        Just(StateLayout::Chained),
        Just(StateLayout::Timed)
    ]
}

fn state_file() -> impl Strategy<Value = StateFile> {
    (any::<u32>(), text(), any::<u64>(), any::<[u8; 16]>()).prop_map(
        |(subtask, file, len, checksum)| StateFile {
            subtask,
            file,
            len,
            checksum,
        },
    )
}

fn operator() -> impl Strategy<Value = OperatorState> {
    let files = prop::collection::vec(state_file(), 0..4);
    (id(), role(), text(), text(), text(), any::<u32>(), files).prop_map(
        |(id, role, module_sha256, module_name, module_version, parallelism, files)| {
            OperatorState {
                id: id.parse().expect("a valid id"),
                role,
                module_sha256,
                module_name,
                module_version,
                parallelism,
                files,
            }
        },
    )
}

fn origin() -> impl Strategy<Value = Origin> {
    (id(), any::<u64>(), prop::option::of(id())).prop_map(|(job, checkpoint, savepoint)| Origin {
        job: job.parse().expect("a valid id"),
        checkpoint: CheckpointId(checkpoint),
        savepoint: savepoint.map(|s| s.parse().expect("a valid id")),
    })
}

/// Any metadata this host could write.
fn metadata() -> impl Strategy<Value = Metadata> {
    let head = (
        id(),
        any::<u64>(),
        kind(),
        any::<u64>(),
        text(),
        any::<u32>(),
    );
    let rest = (
        text(),
        layout(),
        prop::collection::vec(operator(), 0..4),
        prop::option::of(text().prop_map(|base_dir| Definition { base_dir })),
        prop::option::of(origin()),
        prop::option::of(any::<u64>()),
    );
    (head, rest).prop_map(|(head, rest)| Metadata {
        job: head.0.parse().expect("a valid id"),
        checkpoint: CheckpointId(head.1),
        kind: head.2,
        completed_unix_ms: head.3,
        job_file: head.4,
        max_parallelism: head.5,
        key_group_function: rest.0,
        state_layout: rest.1,
        operators: rest.2,
        definition: rest.3,
        resumed_from: rest.4,
        generation: rest.5,
    })
}

/// `body` as a `_metadata` of format `version`: magic, version, body, checksum.
fn sealed(version: u32, body: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&checksum(&out));
    out
}

/// The body of an encoding: between the header and the checksum.
fn body_of(encoded: &[u8]) -> Vec<u8> {
    encoded[MAGIC.len() + 4..encoded.len() - CHECKSUM_LEN].to_vec()
}

/// Decodes `bytes`, which must not panic, and checks that a refusal says why.
fn decodes_or_explains(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Err(refusal) = decode(bytes) {
        explained(&refusal)?;
    }
    Ok(())
}

/// A job file as format 1 recorded it, with the operator of the body.
const JOB_FILE_1: &str = "max_parallelism = 8\n[[operators]]\nid = \"op\"\nrole = \"sink\"\n";

/// A format 1 body: postcard writes a struct as its fields in order, as this tuple.
fn format_1_body(job_file: &str) -> Vec<u8> {
    let file = StateFile {
        subtask: 0,
        file: "op-0.state".to_owned(),
        len: 1,
        checksum: [0; 16],
    };
    let operator = ("op", "ab", "name", "1.0.0", 1u32, vec![file]);
    let fields = ("job-1", 1u64, BarrierKind::Checkpoint, 0u64, job_file);
    postcard::to_stdvec(&(fields, vec![operator])).expect("encodes")
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_refused_with_a_reason(bytes in bytes()) {
        decodes_or_explains(&bytes)?;
    }

    #[test]
    fn arbitrary_bodies_of_every_format_are_refused_with_a_reason(
        version in 1..=FORMAT_VERSION,
        body in bytes(),
    ) {
        decodes_or_explains(&sealed(version, &body))?;
    }

    #[test]
    fn mutated_metadata_is_refused_with_a_reason(
        bytes in metadata().prop_flat_map(|m| mutated(encode(&m))),
    ) {
        decodes_or_explains(&bytes)?;
    }

    /// The checksum recomputed after the change: the body's decoder meets the damage.
    #[test]
    fn mutated_bodies_under_a_valid_checksum_are_refused_with_a_reason(
        version in 2..=FORMAT_VERSION,
        body in metadata().prop_flat_map(|m| mutated(body_of(&encode(&m)))),
    ) {
        decodes_or_explains(&sealed(version, &body))?;
    }

    /// Format 1 reads the job file it recorded: damage there is refused too.
    #[test]
    fn mutated_job_files_of_format_1_are_refused_with_a_reason(
        job_file in mutated(JOB_FILE_1.as_bytes().to_vec()),
    ) {
        let job_file = String::from_utf8_lossy(&job_file);
        decodes_or_explains(&sealed(1, &format_1_body(&job_file)))?;
    }

    #[test]
    fn metadata_round_trips(metadata in metadata()) {
        prop_assert_eq!(decode(&encode(&metadata)), Ok(metadata));
    }

    /// What a host writing format 4 wrote reads as itself, with no generation recorded.
    #[test]
    fn format_4_decodes_without_a_generation(metadata in metadata()) {
        let body = postcard::to_stdvec(&Metadata4::of(&metadata)).expect("encodes");
        let expected = Metadata { generation: None, ..metadata };
        prop_assert_eq!(decode(&sealed(4, &body)), Ok(expected));
    }

    /// A body of format 5 cut short (its generation, written last, first) is refused, never
    /// read as a point with another generation or none (the checksum recomputed, so that the
    /// body's decoder meets the damage).
    #[test]
    fn a_body_cut_short_is_refused(metadata in metadata(), cut in 1..=10usize) {
        let body = body_of(&encode(&metadata));
        let kept = body.len().saturating_sub(cut);
        let decoded = decode(&sealed(FORMAT_VERSION, &body[..kept]));
        prop_assert!(decoded.is_err(), "{decoded:?}");
        decodes_or_explains(&sealed(FORMAT_VERSION, &body[..kept]))?;
    }

    /// A length far beyond the input (of the job id, the first field) is refused at the end
    /// of the input: nothing of that length is allocated.
    #[test]
    fn a_huge_length_is_refused_without_being_allocated(len in huge_len()) {
        let started = std::time::Instant::now();
        let decoded = decode(&sealed(FORMAT_VERSION, &varint(len)));
        prop_assert!(matches!(decoded, Err(MetadataError::Decode(_))), "{decoded:?}");
        prop_assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}

#[test]
fn the_format_1_body_of_these_tests_decodes() {
    let metadata = decode(&sealed(1, &format_1_body(JOB_FILE_1))).unwrap();
    assert_eq!(metadata.operators[0].role, Role::Sink);
    assert_eq!(metadata.max_parallelism, 8);
}
