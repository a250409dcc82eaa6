//! The state a guest's `restore` receives, lowered from the bytes the host holds.
//!
//! bindgen's `Restored` owns its bytes (`Vec<u8>` for each `list<u8>`), so handing state to
//! a guest through it copies every byte once more on the way into the guest's memory: at
//! 100 MiB of state, 100 MiB of fresh host memory written and freed for nothing. These records
//! are the same WIT types (`restored`, `key-group-state`) borrowing the bytes instead; the
//! component's own types are checked against them when `restore` is called.

use wasmtime::component::{ComponentType, Lower};

/// WIT `restored`, borrowing its bytes.
#[derive(ComponentType, Lower, Debug)]
#[component(record)]
pub struct RestoredRef<'a> {
    /// The parallelism the state was written at.
    pub parallelism: u32,
    /// Operator state, one blob per old subtask it comes from.
    #[component(name = "operator-states")]
    pub operator_states: Vec<&'a [u8]>,
    /// Keyed state: for each group, its whole state, then its deltas in order.
    #[component(name = "key-groups")]
    pub key_groups: Vec<KeyGroupStateRef<'a>>,
}

/// WIT `key-group-state`, borrowing its bytes.
#[derive(ComponentType, Lower, Debug, PartialEq, Eq)]
#[component(record)]
pub struct KeyGroupStateRef<'a> {
    /// The key group.
    #[component(name = "key-group")]
    pub key_group: u32,
    /// Whether `state` is a delta on top of what came before it.
    pub delta: bool,
    /// The state, as the guest wrote it.
    pub state: &'a [u8],
}

impl<'a> KeyGroupStateRef<'a> {
    /// Key group `key_group`'s chain: its whole state, then the deltas written after it.
    pub fn chain(
        key_group: u32,
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> impl Iterator<Item = KeyGroupStateRef<'a>> {
        pieces
            .into_iter()
            .enumerate()
            .map(move |(i, state)| KeyGroupStateRef {
                key_group,
                delta: i > 0,
                state,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_whole_state_then_deltas() {
        let pieces: [&[u8]; 3] = [b"whole", b"d1", b"d2"];
        let chain: Vec<_> = KeyGroupStateRef::chain(7, pieces).collect();
        let delta = |state| KeyGroupStateRef {
            key_group: 7,
            delta: true,
            state,
        };
        let whole = KeyGroupStateRef {
            delta: false,
            ..delta(b"whole")
        };
        assert_eq!(chain, [whole, delta(b"d1"), delta(b"d2")]);
    }
}
