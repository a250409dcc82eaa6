//! `_metadata`: the versioned description of one checkpoint or savepoint.
//!
//! Last step of a barrier's journey: once every subtask's state file is durable, the runtime
//! describes them here (operator, role, module, length and checksum of each file, and every
//! property that decides where a key's state lives) and the store writes it atomically. On
//! restore, this is read and verified first; each state file is verified against it before
//! any module sees a byte. Encoding and verification only: no I/O.
//!
//! Format 5 adds the generation of the job's lease that its writer held
//! ([`Metadata::generation`]), on a store that several machines share: a point whose
//! generation the lease has not reached, or whose number lies outside that generation's epoch,
//! was not written by the job's own process, and resolving the job's id passes it over
//! ([`super::fence::admits`]). Format 4 decodes without one.
//! Format 5 also holds the host's own state beside each subtask's ([`StateLayout::Timed`]: its
//! timers by key group, a source's watermark).
//! Format 4 adds what `host run --from POINT` needs to start the job again without its job
//! file ([`Definition`]: the folder its relative paths resolve against; the modules are named by
//! SHA-256 in [`OperatorState::module_sha256`] and kept in the store's module store) and the point
//! the writing job started from ([`Origin`], its lineage). Formats 1 to 3 decode with neither:
//! such a point can only be resumed with a job file.
//! Format 3 holds each key group's state as a chain (the group whole, then the deltas after
//! it: [`crate::snapshot::Chain`]); its fields are format 2's, whose state files [`StateLayout`]
//! tells apart. Format 2 records `max_parallelism`, the key-group function, each operator's
//! role, and holds each subtask's state grouped by key group.
//! Format 1 did not; [`decode`] still reads it, taking those facts from the job file that
//! format 1 recorded verbatim.

use serde::{Deserialize, Serialize};

use crate::barrier::BarrierKind;
use crate::checksum::checksum;
use crate::ids::{CheckpointId, JobId, OperatorId, Role, SavepointId};
use crate::key_group::KEY_GROUP_FUNCTION;

/// First bytes of every `_metadata` file.
pub const MAGIC: &[u8; 8] = b"JHPOINT\0";
/// The format this host writes. [`decode`] also reads formats 1 to 4.
pub const FORMAT_VERSION: u32 = 5;
/// The first format that records the job's [`Definition`] (and its [`Origin`]).
pub const DEFINITION_SINCE: u32 = 4;
/// The first format that records the writer's lease generation ([`Metadata::generation`]).
pub const GENERATION_SINCE: u32 = 5;
/// Length of the XXH3-128 trailer.
const CHECKSUM_LEN: usize = 16;
/// Largest `_metadata` this host reads: it lists files, not state, so even a job of thousands
/// of subtasks stays far below.
pub const METADATA_BYTES_MAX: u64 = 64 << 20;
/// Largest state file this host reads: far above any it writes (a guest hands its state over
/// in lists of at most 4 GiB each), so a larger length in `_metadata` is damage, refused
/// before any byte is read.
pub const STATE_FILE_BYTES_MAX: u64 = 16 << 30;
/// Largest segment this host reads: a segment holds pieces of one subtask's keyed state, which
/// lived in one guest's 32-bit memory; a larger file is damage (or planted), refused before
/// its bytes are read.
pub const SEGMENT_BYTES_MAX: u64 = 4 << 30;

/// Everything needed to resume from one checkpoint or savepoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The job that took it.
    pub job: JobId,
    /// Its checkpoint number within that job.
    pub checkpoint: CheckpointId,
    /// Checkpoint or savepoint.
    pub kind: BarrierKind,
    /// When it completed, in milliseconds since the Unix epoch.
    pub completed_unix_ms: u64,
    /// The job file the job ran, verbatim.
    pub job_file: String,
    /// The number of key groups the keyed state is split into.
    pub max_parallelism: u32,
    /// The name of the function from key to key group
    /// ([`KEY_GROUP_FUNCTION`] of the writing host).
    pub key_group_function: String,
    /// How the state files are laid out.
    pub state_layout: StateLayout,
    /// One entry per operator, in the job's topological order.
    pub operators: Vec<OperatorState>,
    /// What starts the job again without its job file (format 4 on; `None` before).
    pub definition: Option<Definition>,
    /// The point the writing job started from, if it resumed from one (format 4 on).
    pub resumed_from: Option<Origin>,
    /// The generation of the job's lease that the writing process held when it published the
    /// point, on a store several machines share ([`super::fence`]; format 5 on). `None`:
    /// written where points are not shared (no lease), or before format 5.
    pub generation: Option<u64>,
}

/// The rest of a job's definition, beside [`Metadata::job_file`] (operators, parallelism,
/// config, edges, limits and mounts, verbatim) and each operator's module hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    /// The folder the job file's relative mount paths resolved against, absolute.
    pub base_dir: String,
}

/// A point a job started from: the job that wrote it and its checkpoint number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The job that wrote the point.
    pub job: JobId,
    /// Its checkpoint number within that job.
    pub checkpoint: CheckpointId,
    /// Its savepoint id, if it was a savepoint of the state folder.
    pub savepoint: Option<SavepointId>,
}

/// How a point's state files are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateLayout {
    /// Each file is the one blob its subtask's module returned (format 1).
    Blob,
    /// Each file holds its subtask's operator state and keyed state by key group, each group
    /// whole (format 2).
    Grouped,
    /// Each file holds its subtask's operator state and keyed state by key group, each group
    /// as a chain: whole, then deltas (state file format 3, metadata formats 3 and 4).
    Chained,
    /// As `Chained`, and beside the guest's state the host's own: each key group's timers,
    /// chained the same way, and a source's watermark ([`crate::store::state_file::encode`],
    /// state file format 4, metadata format 5).
    Timed,
}

/// The state of one operator in a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
    /// Stable operator id.
    pub id: OperatorId,
    /// The role it had: a state blob is only meaningful to a module of the same world.
    pub role: Role,
    /// SHA-256 of the module that wrote the state, lower-case hex.
    pub module_sha256: String,
    /// The module's own name (from `describe`).
    pub module_name: String,
    /// The module's own version (from `describe`).
    pub module_version: String,
    /// Parallelism when the state was written.
    pub parallelism: u32,
    /// One file per subtask, by subtask index.
    pub files: Vec<StateFile>,
}

/// One subtask's state blob on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Subtask index.
    pub subtask: u32,
    /// File name inside the point's folder (no path separators).
    pub file: String,
    /// Length in bytes.
    pub len: u64,
    /// Checksum of the contents (see [`checksum`]).
    pub checksum: [u8; 16],
}

/// Why a `_metadata` file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    /// Too short or does not start with the magic bytes.
    #[error("not a checkpoint metadata file (bad magic or too short)")]
    NotMetadata,
    /// Written by a format this host does not know.
    #[error("unknown metadata format version {0} (this host reads versions 1 to {FORMAT_VERSION})")]
    UnknownVersion(u32),
    /// The trailing checksum does not match: the file is corrupt or truncated.
    #[error("metadata checksum mismatch: the file is corrupt or truncated")]
    Checksum,
    /// Larger than any metadata this host writes: not read.
    #[error("{0} bytes: larger than any checkpoint metadata ({METADATA_BYTES_MAX} bytes at most)")]
    TooLarge(u64),
    /// The checksum matches but the body does not decode.
    #[error("metadata does not decode: {0}")]
    Decode(String),
}

/// Encodes metadata as: magic, format version (u32 LE), postcard body, [`checksum`] of all before.
pub fn encode(metadata: &Metadata) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    postcard::to_io(metadata, &mut out).expect("writing to a Vec cannot fail");
    out.extend_from_slice(&checksum(&out));
    out
}

/// [`encode`]d, and checked to decode to `metadata` again: what a back-end publishes (the pair
/// assertion of every write of `_metadata`).
pub fn encode_checked(metadata: &Metadata) -> Vec<u8> {
    let bytes = encode(metadata);
    // Pair assertion: what is about to be written must decode to what was meant.
    assert_eq!(decode(&bytes).as_ref(), Ok(metadata), "metadata round trip");
    bytes
}

/// Decodes and verifies metadata written by [`encode`], or by a host writing format 1.
pub fn decode(bytes: &[u8]) -> Result<Metadata, MetadataError> {
    let header = MAGIC.len() + 4;
    if bytes.len() < header + CHECKSUM_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(MetadataError::NotMetadata);
    }
    let version = u32::from_le_bytes(bytes[MAGIC.len()..header].try_into().expect("4 bytes"));
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(MetadataError::UnknownVersion(version));
    }
    let (signed, expected) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if checksum(signed) != expected {
        return Err(MetadataError::Checksum);
    }
    let body = &signed[header..];
    let undecodable = |e: postcard::Error| MetadataError::Decode(e.to_string());
    match version {
        1 => format_1::upgrade(postcard::from_bytes(body).map_err(undecodable)?),
        2 | 3 => Ok(postcard::from_bytes::<Metadata3>(body)
            .map_err(undecodable)?
            .upgrade()),
        4 => Ok(postcard::from_bytes::<Metadata4>(body)
            .map_err(undecodable)?
            .upgrade()),
        _ => postcard::from_bytes(body).map_err(undecodable),
    }
}

/// Format 4: format 5 without [`Metadata::generation`]. Postcard writes a struct as its fields
/// one after another, with nothing around them, so format 3's fields then the two format 4
/// added read as this.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct Metadata4(Metadata3, Option<Definition>, Option<Origin>);

impl Metadata4 {
    /// `m` as a host writing format 4 held it (tests write format 4 with it).
    #[cfg(test)]
    fn of(m: &Metadata) -> Metadata4 {
        let (definition, origin) = (m.definition.clone(), m.resumed_from.clone());
        Metadata4(Metadata3::of(m), definition, origin)
    }

    fn upgrade(self) -> Metadata {
        let Metadata4(format_3, definition, resumed_from) = self;
        Metadata {
            definition,
            resumed_from,
            ..format_3.upgrade()
        }
    }
}

/// Formats 2 and 3: format 4 without [`Metadata::definition`] and [`Metadata::resumed_from`].
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct Metadata3 {
    job: JobId,
    checkpoint: CheckpointId,
    kind: BarrierKind,
    completed_unix_ms: u64,
    job_file: String,
    max_parallelism: u32,
    key_group_function: String,
    state_layout: StateLayout,
    operators: Vec<OperatorState>,
}

impl Metadata3 {
    /// `m` as a host writing format 3 held it (tests write format 3 with it).
    #[cfg(test)]
    fn of(m: &Metadata) -> Metadata3 {
        Metadata3 {
            job: m.job.clone(),
            checkpoint: m.checkpoint,
            kind: m.kind,
            completed_unix_ms: m.completed_unix_ms,
            job_file: m.job_file.clone(),
            max_parallelism: m.max_parallelism,
            key_group_function: m.key_group_function.clone(),
            state_layout: m.state_layout,
            operators: m.operators.clone(),
        }
    }

    fn upgrade(self) -> Metadata {
        Metadata {
            job: self.job,
            checkpoint: self.checkpoint,
            kind: self.kind,
            completed_unix_ms: self.completed_unix_ms,
            job_file: self.job_file,
            max_parallelism: self.max_parallelism,
            key_group_function: self.key_group_function,
            state_layout: self.state_layout,
            operators: self.operators,
            definition: None,
            resumed_from: None,
            generation: None,
        }
    }
}

/// Format 1, as hosts before format 2 wrote it, and how it reads as format 2.
mod format_1 {
    use serde::Deserialize;

    use super::{KEY_GROUP_FUNCTION, Metadata, MetadataError, OperatorState, StateFile};
    use crate::barrier::BarrierKind;
    use crate::ids::{CheckpointId, JobId, OperatorId, Role};

    /// What hosts writing format 1 used when the job file named no `max_parallelism`.
    const MAX_PARALLELISM_DEFAULT: u32 = 128;

    #[derive(Deserialize)]
    pub(super) struct Metadata1 {
        job: JobId,
        checkpoint: CheckpointId,
        kind: BarrierKind,
        completed_unix_ms: u64,
        job_file: String,
        operators: Vec<OperatorState1>,
    }

    #[derive(Deserialize)]
    struct OperatorState1 {
        id: OperatorId,
        module_sha256: String,
        module_name: String,
        module_version: String,
        parallelism: u32,
        files: Vec<StateFile>,
    }

    /// The facts of the recorded job file that format 2 records itself.
    #[derive(Deserialize)]
    struct JobFacts {
        max_parallelism: Option<u32>,
        operators: Vec<OperatorFacts>,
    }

    #[derive(Deserialize)]
    struct OperatorFacts {
        id: OperatorId,
        role: Role,
    }

    /// Format 1 did not record `max_parallelism`, the key-group function or roles; the job
    /// file it recorded says what they were (hosts writing format 1 had one key-group function).
    pub(super) fn upgrade(old: Metadata1) -> Result<Metadata, MetadataError> {
        let facts: JobFacts = toml::from_str(&old.job_file).map_err(|e| {
            MetadataError::Decode(format!(
                "format 1: the recorded job file does not parse: {e}"
            ))
        })?;
        let role_of = |id: &OperatorId| {
            let found = facts.operators.iter().find(|op| &op.id == id);
            found.map(|op| op.role).ok_or_else(|| {
                MetadataError::Decode(format!(
                    "format 1: operator `{id}` is not in the recorded job file"
                ))
            })
        };
        let mut operators = Vec::with_capacity(old.operators.len());
        for op in old.operators {
            operators.push(OperatorState {
                role: role_of(&op.id)?,
                id: op.id,
                module_sha256: op.module_sha256,
                module_name: op.module_name,
                module_version: op.module_version,
                parallelism: op.parallelism,
                files: op.files,
            });
        }
        Ok(Metadata {
            job: old.job,
            checkpoint: old.checkpoint,
            kind: old.kind,
            completed_unix_ms: old.completed_unix_ms,
            job_file: old.job_file,
            max_parallelism: facts.max_parallelism.unwrap_or(MAX_PARALLELISM_DEFAULT),
            key_group_function: KEY_GROUP_FUNCTION.to_owned(),
            state_layout: super::StateLayout::Blob,
            operators,
            definition: None,
            resumed_from: None,
            generation: None,
        })
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        Metadata {
            job: "job-abc".parse().unwrap(),
            checkpoint: CheckpointId(3),
            kind: BarrierKind::Savepoint,
            completed_unix_ms: 1_700_000_000_000,
            job_file: "name = \"x\"".to_owned(),
            max_parallelism: 128,
            key_group_function: KEY_GROUP_FUNCTION.to_owned(),
            state_layout: StateLayout::Grouped,
            operators: vec![OperatorState {
                id: "counter".parse().unwrap(),
                role: Role::Operator,
                module_sha256: "ab".repeat(32),
                module_name: "word-counter".to_owned(),
                module_version: "1.0.0".to_owned(),
                parallelism: 1,
                files: vec![StateFile {
                    subtask: 0,
                    file: "counter-0.state".to_owned(),
                    len: 5,
                    checksum: checksum(b"hello"),
                }],
            }],
            definition: Some(Definition {
                base_dir: "/jobs/wordcount".to_owned(),
            }),
            resumed_from: Some(Origin {
                job: "job-xyz".parse().unwrap(),
                checkpoint: CheckpointId(2),
                savepoint: Some("sp-job-xyz-2-abcd".parse().unwrap()),
            }),
            generation: Some(3),
        }
    }

    /// `body` sealed as a `_metadata` of format `version`, as a host writing it did.
    fn sealed(version: u32, body: &impl Serialize) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&version.to_le_bytes());
        postcard::to_io(body, &mut out).unwrap();
        out.extend_from_slice(&checksum(&out));
        out
    }

    /// `sample()` as a host writing format 3 wrote it.
    fn encode_format_3(m: &Metadata) -> Vec<u8> {
        sealed(3, &Metadata3::of(m))
    }

    #[test]
    fn format_3_still_decodes_without_a_definition_or_origin() {
        let decoded = decode(&encode_format_3(&sample())).expect("format 3 must stay readable");
        let expected = Metadata {
            definition: None,
            resumed_from: None,
            generation: None,
            ..sample()
        };
        assert_eq!(decoded, expected);
    }

    #[test]
    fn format_4_still_decodes_and_format_5_lays_the_host_state_beside() {
        let chained = Metadata {
            state_layout: StateLayout::Chained,
            ..sample()
        };
        let as_format_4 = sealed(4, &Metadata4::of(&chained));
        assert_eq!(
            decode(&as_format_4),
            Ok(Metadata {
                generation: None,
                ..chained
            })
        );
        let timed = Metadata {
            state_layout: StateLayout::Timed,
            ..sample()
        };
        let bytes = encode(&timed);
        assert_eq!(bytes[MAGIC.len()..MAGIC.len() + 4], 5u32.to_le_bytes());
        assert_eq!(decode(&bytes), Ok(timed));
    }

    #[test]
    fn format_4_still_decodes_without_a_generation() {
        let m = sample();
        let decoded = decode(&sealed(4, &Metadata4::of(&m))).expect("format 4 must stay readable");
        assert_eq!(
            decoded,
            Metadata {
                generation: None,
                ..m
            }
        );
    }

    #[test]
    fn format_5_records_the_generation_of_the_writers_lease() {
        let bytes = encode(&sample());
        assert_eq!(bytes[MAGIC.len()..MAGIC.len() + 4], 5u32.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap().generation, Some(3));
    }

    #[test]
    fn format_4_on_records_the_definition_and_the_origin() {
        let decoded = decode(&encode(&sample())).unwrap();
        assert_eq!(decoded.definition.unwrap().base_dir, "/jobs/wordcount");
        let origin = decoded.resumed_from.unwrap();
        assert_eq!(
            (origin.job.as_str(), origin.checkpoint),
            ("job-xyz", CheckpointId(2))
        );
    }

    /// `_metadata` of a real savepoint (the word-count demo) in format version 1. Never
    /// regenerate it: a host that cannot read it can no longer resume savepoints in the field.
    const GOLDEN_V1: &[u8] = include_bytes!("../../tests/golden/v1/_metadata");

    #[test]
    fn golden_metadata_of_format_1_still_decodes() {
        let metadata = decode(GOLDEN_V1).expect("format 1 must stay readable");
        assert_eq!(metadata.job.as_str(), "job-irp74r5d");
        assert_eq!(metadata.checkpoint, CheckpointId(4));
        assert_eq!(metadata.kind, BarrierKind::Savepoint);
        let ids: Vec<_> = metadata.operators.iter().map(|op| op.id.as_str()).collect();
        assert_eq!(ids, ["lines", "tokenize", "counter", "sink"]);
        let counter = &metadata.operators[2];
        assert_eq!(
            (
                counter.module_name.as_str(),
                counter.module_version.as_str()
            ),
            ("word-counter", "1.0.0")
        );
        assert_eq!(counter.files.len(), 2);
        // Format 1 recorded neither roles nor max parallelism: they come from its job file.
        let roles: Vec<_> = metadata.operators.iter().map(|op| op.role).collect();
        assert_eq!(
            roles,
            [Role::Source, Role::Operator, Role::Operator, Role::Sink]
        );
        assert_eq!(metadata.max_parallelism, 128);
        assert_eq!(metadata.key_group_function, "xxh3-64-mod");
        assert_eq!(metadata.state_layout, StateLayout::Blob);
        let source = &metadata.operators[0].files[0];
        assert_eq!((source.file.as_str(), source.len), ("lines-0.state", 6));
        assert_eq!(
            hex::encode(source.checksum),
            "e6d0ec2f4b21b262107c72ebb98596e0"
        );
    }

    #[test]
    fn metadata_round_trips() {
        assert_eq!(decode(&encode(&sample())).unwrap(), sample());
    }

    #[test]
    fn metadata_refuses_every_flipped_bit() {
        let bytes = encode(&sample());
        for bit in 0..bytes.len() * 8 {
            let mut corrupt = bytes.clone();
            corrupt[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&corrupt).is_err(),
                "bit {bit} flipped went unnoticed"
            );
        }
    }

    #[test]
    fn metadata_refuses_every_truncation() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "truncation to {len} went unnoticed"
            );
        }
    }

    #[test]
    fn metadata_names_an_unknown_format_version() {
        let mut bytes = encode(&sample());
        bytes[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(decode(&bytes), Err(MetadataError::UnknownVersion(9)));
    }
}
