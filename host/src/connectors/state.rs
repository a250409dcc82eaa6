//! A connector's operator state on disk: one version byte, then the state in postcard.
//!
//! The version is the connector's state format, the `version` its module info reports and
//! every point records beside the state (`jobhost:nats-source 1`): a host that changes a
//! connector's state changes the version and keeps reading the older ones. The position itself
//! (a stream sequence, the transactions a checkpoint prepared) is each connector's business.
//! Pure: encoding and decoding only.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a state blob cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Written by a state format this host does not know.
    #[error("state format {found} is not one this host reads (it reads {expected})")]
    Version {
        /// The blob's version byte.
        found: u8,
        /// The version this host reads.
        expected: u8,
    },
    /// The version is right and the rest does not decode.
    #[error("state format {version} does not decode: {reason}")]
    Decode {
        /// The version.
        version: u8,
        /// Why.
        reason: String,
    },
    /// Written by something else than this connector.
    #[error("the state was written by `{found} {version}`, not by this connector (`{expected}`)")]
    Foreign {
        /// The module or connector that wrote it.
        found: String,
        /// Its version.
        version: String,
        /// This connector's name.
        expected: &'static str,
    },
}

/// `state` as version `version`.
pub fn encode<T: Serialize>(version: u8, state: &T) -> Vec<u8> {
    let mut out = vec![version];
    postcard::to_io(state, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// A state `encode` wrote with `version`.
pub fn decode<T: DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, StateError> {
    let Some((&found, body)) = bytes.split_first() else {
        return Err(StateError::Decode {
            version,
            reason: "empty".to_owned(),
        });
    };
    if found != version {
        return Err(StateError::Version {
            found,
            expected: version,
        });
    }
    postcard::from_bytes(body).map_err(|e| StateError::Decode {
        version,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_and_another_version_is_refused() {
        let bytes = encode(1, &(7u64, "x".to_owned()));
        assert_eq!(bytes[0], 1);
        assert_eq!(decode::<(u64, String)>(1, &bytes), Ok((7, "x".to_owned())));
        assert_eq!(
            decode::<(u64, String)>(2, &bytes),
            Err(StateError::Version {
                found: 1,
                expected: 2
            })
        );
        assert!(matches!(
            decode::<(u64, String)>(1, &bytes[..2]),
            Err(StateError::Decode { .. })
        ));
        assert!(matches!(
            decode::<u64>(1, &[]),
            Err(StateError::Decode { .. })
        ));
    }
}
