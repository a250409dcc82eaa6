//! Property tests of the lease decoder ([`decode`]): a lease object is on a shared object
//! store, where any process (or person) may have written it.

use proptest::prelude::*;

use super::*;
use crate::fuzz::{bytes, explained, mutated, text};

fn lease() -> impl Strategy<Value = Lease> {
    let modules = proptest::collection::vec(text(), 0..4);
    (any::<u64>(), text(), any::<bool>(), modules).prop_map(
        |(generation, holder, running, modules)| Lease {
            generation,
            holder,
            running,
            modules,
        },
    )
}

/// Decodes `bytes`, which must not panic; a refusal must say why.
fn decodes_or_explains(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Err(refusal) = decode(bytes) {
        explained(&refusal)?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_refused_with_a_reason(bytes in bytes()) {
        decodes_or_explains(&bytes)?;
    }

    #[test]
    fn mutated_leases_are_refused_with_a_reason(
        bytes in lease().prop_flat_map(|lease| mutated(encode(&lease))),
    ) {
        decodes_or_explains(&bytes)?;
    }

    #[test]
    fn leases_round_trip(lease in lease()) {
        prop_assert_eq!(decode(&encode(&lease)).unwrap(), lease);
    }
}
