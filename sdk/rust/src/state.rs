//! The versioned state envelope: a postcard-encoded `u32` version, then the postcard-encoded
//! state. A module reads the version first and picks the matching state type, migrating older
//! ones.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes `state` as version `version` of the module's state.
pub fn encode_state<T: Serialize + ?Sized>(version: u32, state: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(&version)
        .and_then(|envelope| postcard::to_extend(state, envelope))
        .map_err(|e| format!("cannot encode state version {version}: {e}"))
}

/// Splits a state blob into its version and the encoded state that follows.
pub fn decode_state_version(blob: &[u8]) -> Result<(u32, &[u8]), String> {
    if blob.is_empty() {
        return Err("the state blob is empty: it has no version".to_owned());
    }
    postcard::take_from_bytes(blob)
        .map_err(|e| format!("the state blob does not start with a version number: {e}"))
}

/// Decodes the encoded state that follows the version, all of it.
pub fn decode_state<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let (state, rest) =
        postcard::take_from_bytes(body).map_err(|e| format!("the state blob is malformed: {e}"))?;
    if !rest.is_empty() {
        return Err(format!(
            "the state blob has {} unexpected trailing bytes",
            rest.len()
        ));
    }
    Ok(state)
}

/// Decodes a state blob that must be of version `version`, the only one this module reads.
pub fn decode_state_exact<T: DeserializeOwned>(blob: &[u8], version: u32) -> Result<T, String> {
    match decode_state_version(blob)? {
        (found, body) if found == version => decode_state(body),
        (found, _) => Err(unsupported_version(found, &[version])),
    }
}

/// The error for a state blob of version `found`, when this module reads only `supported`.
pub fn unsupported_version(found: u32, supported: &[u32]) -> String {
    let supported: Vec<_> = supported.iter().map(u32::to_string).collect();
    format!(
        "unsupported state version {found}: this module reads state version {}",
        supported.join(" or ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Position {
        offset: u64,
        line: u64,
    }

    #[test]
    fn version_comes_first() {
        let blob = encode_state(300, &Position { offset: 5, line: 1 }).unwrap();
        // 300 as a postcard varint, then the two fields.
        assert_eq!(blob, [0xac, 0x02, 5, 1]);
        assert_eq!(decode_state_version(&blob), Ok((300, &[5, 1][..])));
    }

    #[test]
    fn round_trip() {
        let state = Position {
            offset: 1 << 40,
            line: 7,
        };
        let blob = encode_state(1, &state).unwrap();
        assert_eq!(decode_state_exact::<Position>(&blob, 1), Ok(state));
    }

    #[test]
    fn errors_are_clear() {
        let blob = encode_state(2, &Position { offset: 0, line: 0 }).unwrap();
        assert_eq!(
            decode_state_exact::<Position>(&blob, 1),
            Err("unsupported state version 2: this module reads state version 1".to_owned())
        );
        assert_eq!(
            unsupported_version(3, &[1, 2]),
            "unsupported state version 3: this module reads state version 1 or 2"
        );
        assert_eq!(
            decode_state_version(&[]),
            Err("the state blob is empty: it has no version".to_owned())
        );
        assert!(
            decode_state_version(&[0x80])
                .unwrap_err()
                .starts_with("the state blob does not")
        );
        assert!(
            decode_state::<Position>(&[1])
                .unwrap_err()
                .starts_with("the state blob is malformed")
        );
        assert_eq!(
            decode_state::<Position>(&[1, 2, 3]),
            Err("the state blob has 1 unexpected trailing bytes".to_owned())
        );
    }
}
