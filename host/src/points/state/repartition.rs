//! `host state repartition`: a savepoint with another number of key groups
//! (`max_parallelism`), offline: the one property fixed for the life of a state.
//!
//! Every key of every operator with keyed state is placed again, by [`key_group`] at the new
//! number, in the key group and subtask that own it at the same parallelism, and so is each
//! of its timers; each new group is written whole (a group holding values of several
//! versions: whole in the oldest, then a delta per newer one, so that a module migrates each
//! as it would have). Operator states and a source's watermark stay with their subtask. The
//! recorded job file gets the new `max_parallelism`, so the point still runs without a job
//! file; a job file of one's own must set it too. One operator's keyed state is in memory at
//! a time.

use std::collections::{BTreeMap, BTreeSet};

use super::envelope::{self, Entry};
use super::walk;
use super::write::{Edited, derived};
use super::{StateError, msgpack::Value};
use crate::ids::{OperatorId, SavepointId};
use crate::key_group::{MAX_PARALLELISM_LIMIT, key_group, subtask_of_key_group};
use crate::snapshot::{Held, Piece};
use crate::store::{OperatorState, Point, Store};
use crate::time::timers::{Timer, codec};

/// The keys placed again, by new subtask and key group: each key's format, version and value.
type Placed = BTreeMap<u32, BTreeMap<u32, BTreeMap<Vec<u8>, Entry>>>;

/// Writes the savepoint `to`: `point` (`shown`, for people) with its keyed state split into
/// `max_parallelism` key groups.
pub fn repartition(
    store: &Store,
    point: &Point,
    shown: &str,
    max_parallelism: u32,
    to: &SavepointId,
) -> Result<Edited, StateError> {
    walk::require_chains(point, shown)?;
    check_max_parallelism(point, max_parallelism)?;
    let location = store.layout().savepoint(to);
    if store.has_point(&location)? {
        return Err(StateError::Exists(to.clone()));
    }
    let mut metadata = derived(point, "state-repartition", store);
    metadata.max_parallelism = max_parallelism;
    metadata.job_file = with_max_parallelism(&point.metadata.job_file, max_parallelism)?;
    let mut deriving = store.derive(Some(point), &location, metadata)?;
    let (mut keys, mut groups, mut formats) = (0, 0, BTreeSet::new());
    for op in &point.metadata.operators {
        let (held, format) = place_again(store, point, op, max_parallelism)?;
        for (subtask, (held, held_keys)) in held.into_iter().enumerate() {
            keys += held_keys;
            groups += held.key_groups.len();
            deriving.write(&op.id, subtask as u32, held)?;
        }
        formats.extend(format);
    }
    let (location, written) = deriving.publish()?;
    let format = formats.into_iter().next().unwrap_or_default();
    Ok(Edited {
        dir: location,
        upserted: keys,
        deleted: 0,
        groups,
        format,
        written,
    })
}

fn check_max_parallelism(point: &Point, max_parallelism: u32) -> Result<(), StateError> {
    let now = point.metadata.max_parallelism;
    let flag = |problem: String| {
        Err(StateError::Flag(format!(
            "--max-parallelism {max_parallelism}: {problem}"
        )))
    };
    if !(1..=MAX_PARALLELISM_LIMIT).contains(&max_parallelism) {
        return flag(format!("not within 1..={MAX_PARALLELISM_LIMIT}"));
    }
    if max_parallelism == now {
        return flag("the point's keyed state is split into as many key groups already".into());
    }
    if let Some(op) = point
        .metadata
        .operators
        .iter()
        .find(|op| op.parallelism > max_parallelism)
    {
        return flag(format!(
            "operator `{}` runs {} subtasks, and each needs a key group at least",
            op.id, op.parallelism
        ));
    }
    Ok(())
}

/// The new state of each subtask of `op` (and the keys it holds): its keys and their timers
/// placed again, its operator state and watermark kept; and the keyed state's format and
/// newest version, if it holds any.
#[allow(clippy::type_complexity)]
fn place_again(
    store: &Store,
    point: &Point,
    op: &OperatorState,
    max_parallelism: u32,
) -> Result<(Vec<(Held, usize)>, Option<(String, u32)>), StateError> {
    let mut held: Vec<(Held, usize)> = vec![Default::default(); op.parallelism as usize];
    let mut placed = Placed::new();
    let mut timers: BTreeMap<u32, BTreeMap<u32, BTreeSet<Timer>>> = BTreeMap::new();
    let mut formats = BTreeSet::new();
    let new_home = |key: &[u8]| {
        let group = key_group(key, max_parallelism);
        (
            subtask_of_key_group(group, max_parallelism, op.parallelism),
            group,
        )
    };
    let picked = |(id, _): &(&OperatorId, &crate::store::StateFile)| *id == &op.id;
    store.each_state(point, picked, |id, subtask, old| {
        let kept = &mut held[subtask as usize].0;
        (kept.operator_state, kept.watermark) = (old.operator_state.clone(), old.watermark);
        for (&group, chain) in &old.key_groups {
            let state = walk::resolve(id, subtask, group, chain)?;
            formats.insert(state.format.clone());
            for (key, entry) in state.entries {
                let (owner, group) = new_home(&key);
                let group = placed.entry(owner).or_default().entry(group).or_default();
                group.insert(key, entry);
            }
        }
        for (&group, chain) in &old.timers {
            let pieces: Vec<&[u8]> = chain.iter().map(|piece| &piece.bytes[..]).collect();
            let read = codec::read_chain(&pieces).map_err(|problem| StateError::Formats {
                operator: id.clone(),
                problem: format!("the timers of key group {group} (subtask {subtask}): {problem}"),
            })?;
            for timer in read {
                let (owner, group) = new_home(&timer.key);
                timers
                    .entry(owner)
                    .or_default()
                    .entry(group)
                    .or_default()
                    .insert(timer);
            }
        }
        Ok::<_, StateError>(())
    })?;
    let format = one_format(op, formats)?;
    let newest = hold(
        &mut held,
        placed,
        timers,
        format.as_deref().unwrap_or_default(),
    );
    Ok((held, format.map(|format| (format, newest))))
}

/// The one format of `op`'s keyed state (`None` if it holds none); refused if its key groups
/// hold several.
fn one_format(
    op: &OperatorState,
    mut formats: BTreeSet<String>,
) -> Result<Option<String>, StateError> {
    if formats.len() <= 1 {
        return Ok(formats.pop_first());
    }
    let names: Vec<String> = formats.iter().map(|f| format!("`{f}`")).collect();
    Err(StateError::Formats {
        operator: op.id.clone(),
        problem: format!(
            "its key groups hold state of formats {}",
            names.join(" and ")
        ),
    })
}

/// Puts the keys `placed` and the `timers` into the subtasks' new states (`held`, with the
/// number of keys each holds), each key group's keys in a chain of `format`. Returns the newest
/// version of the state.
fn hold(
    held: &mut [(Held, usize)],
    placed: Placed,
    timers: BTreeMap<u32, BTreeMap<u32, BTreeSet<Timer>>>,
    format: &str,
) -> u32 {
    let mut newest = 0;
    for (subtask, groups) in placed {
        let (held, keys) = &mut held[subtask as usize];
        for (group, entries) in groups {
            *keys += entries.len();
            let (chain, version) = chain(format, &entries);
            newest = newest.max(version);
            held.key_groups.insert(group, chain);
        }
    }
    for (subtask, groups) in timers {
        let held = &mut held[subtask as usize].0;
        for (group, set) in groups {
            held.timers
                .insert(group, vec![Piece::new(codec::whole(&set))]);
        }
    }
    newest
}

/// A key group's chain for `entries`: whole in the oldest version, a delta per newer one.
/// Returns it and the newest version.
fn chain(format: &str, entries: &BTreeMap<Vec<u8>, Entry>) -> (Vec<Piece>, u32) {
    let mut by_version: BTreeMap<u32, Vec<(&[u8], &Value)>> = BTreeMap::new();
    for (key, entry) in entries {
        by_version
            .entry(entry.version)
            .or_default()
            .push((key, &entry.value));
    }
    let newest = by_version.keys().next_back().copied().unwrap_or(0);
    let pieces = by_version
        .into_iter()
        .enumerate()
        .map(|(i, (version, pairs))| {
            let pairs = pairs.into_iter();
            Piece::new(match i {
                0 => envelope::seal_whole(format, version, pairs),
                _ => envelope::seal_delta(format, version, pairs, &[]),
            })
        });
    (pieces.collect(), newest)
}

/// The job file `text` with `max_parallelism = M` (its line replaced, or one added first), as
/// a TOML reader reads it back.
fn with_max_parallelism(text: &str, max_parallelism: u32) -> Result<String, StateError> {
    let setting = format!("max_parallelism = {max_parallelism}");
    let mut lines: Vec<String> = Vec::new();
    let (mut in_table, mut replaced) = (false, false);
    for line in text.lines() {
        let trimmed = line.trim_start();
        in_table |= trimmed.starts_with('[');
        let key = trimmed.strip_prefix("max_parallelism").map(str::trim_start);
        if !in_table && key.is_some_and(|rest| rest.starts_with('=')) {
            lines.push(setting.clone());
            replaced = true;
        } else {
            lines.push(line.to_owned());
        }
    }
    if !replaced {
        lines.insert(0, setting.clone());
    }
    let edited = lines.join("\n") + "\n";
    let read_back = toml::from_str::<toml::Table>(&edited).ok();
    let set = read_back
        .as_ref()
        .and_then(|t| t.get("max_parallelism")?.as_integer());
    match set == Some(i64::from(max_parallelism)) {
        true => Ok(edited),
        false => Err(StateError::Flag(format!(
            "--max-parallelism {max_parallelism}: the point's recorded job file does not take \
             `{setting}` as a line of its own"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_job_file_gets_the_new_max_parallelism() {
        let set = with_max_parallelism(
            "name = \"wc\"\nmax_parallelism = 128 # fixed\n[[operators]]\nid = \"a\"\n",
            256,
        )
        .unwrap();
        assert_eq!(
            set,
            "name = \"wc\"\nmax_parallelism = 256\n[[operators]]\nid = \"a\"\n"
        );
        let added =
            with_max_parallelism("name = \"wc\"\n[[operators]]\nmax_parallelism = 3\n", 256)
                .unwrap();
        assert!(added.starts_with("max_parallelism = 256\nname"), "{added}");
        assert!(
            added.contains("\nmax_parallelism = 3\n"),
            "a table's key is not the job's"
        );
    }

    #[test]
    fn a_group_of_two_versions_is_whole_in_the_older_then_a_delta() {
        let entry = |version, n| Entry {
            version,
            value: Value::UInt(n),
        };
        let entries = BTreeMap::from([(b"a".to_vec(), entry(2, 1)), (b"b".to_vec(), entry(1, 2))]);
        let (pieces, newest) = chain("wc", &entries);
        assert_eq!(newest, 2);
        let group = envelope::resolve(pieces.iter().map(|p| &p.bytes[..])).unwrap();
        assert_eq!(group.entries, entries.into_iter().collect::<Vec<_>>());
        assert_eq!(envelope::open(&pieces[0].bytes).unwrap().version, 1);
    }
}
