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
            entry_head(out, key);
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

/// An entry's array header and its key, `[bin key, ...`: for a key shorter than 256 bytes (a
/// `bin 8`), its three header bytes at once. (Through `rmp`, they were two calls the compiler
/// did not inline and a third converting a marker, per entry: a full snapshot of 1 M keys took
/// a fifth longer.)
fn entry_head(out: &mut Vec<u8>, key: &[u8]) {
    match u8::try_from(key.len()) {
        Ok(len) => out.extend_from_slice(&[0x92, 0xc4, len]),
        Err(_) => {
            rmp::encode::write_array_len(out, 2).expect("writing to a Vec cannot fail");
            rmp::encode::write_bin_len(out, key.len() as u32)
                .expect("writing to a Vec cannot fail");
        }
    }
    out.extend_from_slice(key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_head_is_what_rmp_writes_for_every_key_length() {
        for len in [0, 1, 31, 32, 255, 256, 65_535, 65_536] {
            let key = vec![7u8; len];
            let mut expected = Vec::new();
            rmp::encode::write_array_len(&mut expected, 2).unwrap();
            rmp::encode::write_bin(&mut expected, &key).unwrap();
            let mut written = vec![1, 2];
            entry_head(&mut written, &key);
            assert_eq!(written[2..], expected[..], "a key of {len} bytes");
        }
    }
}
