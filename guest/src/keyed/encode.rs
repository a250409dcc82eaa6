//! Encoding a key group's payload, `[[bin key, value], ...]`: every entry of the group, or a
//! delta's upserts (the values written since the previous snapshot).
//!
//! The array and each entry's header and key are written by hand; only the value goes through
//! serde: the mirror of `decode.rs`. The group only visits its slots (`Group::visit`); what
//! the bytes are is said here and there, and in `docs/state-format.md`.

use serde::Serialize;

use super::group::Group;
use crate::envelope::StateFormat;

/// Appends the entries of `group` (with `only_dirty`, those written since the previous
/// snapshot) to `out`, as a payload of `format`.
pub(super) fn entries<V: Serialize>(
    group: &Group<V>,
    only_dirty: bool,
    format: StateFormat,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let cannot = |e: &dyn std::fmt::Display| {
        format!(
            "cannot encode state `{}` v{}: {e}",
            format.name, format.version
        )
    };
    let len = group.count(only_dirty);
    let header = u32::try_from(len).map_err(|_| cannot(&format!("{len} entries in a group")))?;
    rmp::encode::write_array_len(out, header).expect("writing to a Vec cannot fail");
    let written = group
        .visit(only_dirty, |key, value| {
            rmp::encode::write_array_len(out, 2).expect("writing to a Vec cannot fail");
            rmp::encode::write_bin(out, key).expect("writing to a Vec cannot fail");
            value.serialize(&mut rmp_serde::Serializer::new(&mut *out))
        })
        .map_err(|e| cannot(&e))?;
    // The array's length went first: a miscount would be a corrupt state, refused here.
    if written != len {
        let error = format!("{written} entries found of the {len} counted (an SDK bug)");
        return Err(cannot(&error));
    }
    Ok(())
}
