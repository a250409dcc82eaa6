//! What one guest's store may hold besides its memory's size: core instances, memories, tables
//! and table elements, each bounded, so that a component cannot make the host allocate without
//! limit by declaring (or growing) many of them. The counts allow the components the three SDKs
//! build (a Rust one instantiates a handful of core modules; a Python or JavaScript one, with
//! its interpreter and the WASI adapter, a few more) with room to spare. And the bytes the host
//! copies out of one guest call, bounded before it copies them ([`lifted_bytes_max`]).

use wasmtime::{StoreLimits, StoreLimitsBuilder};

/// Core instances one guest's store may hold.
pub const INSTANCES_MAX: usize = 64;
/// Linear memories one guest's store may hold.
pub const MEMORIES_MAX: usize = 16;
/// Tables one guest's store may hold.
pub const TABLES_MAX: usize = 64;
/// Elements one table may grow to (an interpreter's function table holds tens of thousands).
pub const TABLE_ELEMENTS_MAX: usize = 1 << 20;

/// The limits of a guest's store whose memories may grow to `memory_bytes_max` bytes each;
/// a growth past them traps rather than failing quietly.
pub fn store_limits(memory_bytes_max: usize) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(memory_bytes_max)
        .instances(INSTANCES_MAX)
        .memories(MEMORIES_MAX)
        .tables(TABLES_MAX)
        .table_elements(TABLE_ELEMENTS_MAX)
        .trap_on_grow_failure(true)
        .build()
}

/// The most bytes the host copies out of one call into or out of a guest (a snapshot, a batch,
/// the arguments of a host call), as wasmtime counts them while it lifts the values (its
/// "hostcall fuel"): twice the guest's memory limit. All a guest returns lives in its memory at
/// once, so an honest result fits, with room for the host's records being larger than the
/// guest's; only lists that alias one buffer (a snapshot naming the same bytes for many key
/// groups) can ask for more, and they are refused before they are copied.
pub fn lifted_bytes_max(memory_bytes_max: usize) -> usize {
    memory_bytes_max.saturating_mul(2)
}

/// The start of wasmtime's message when a call asked the host to copy more than
/// [`lifted_bytes_max`].
pub const LIFTED_TOO_MUCH: &str = "too much data is being copied between the host and the guest";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::varint;
    use wasmtime::{Engine, Instance, Module, Store};

    /// A core module of section `id` holding `count` entries of `entry`.
    fn module(id: u8, count: usize, entry: &[u8]) -> Vec<u8> {
        let mut body = varint(count as u64);
        (0..count).for_each(|_| body.extend_from_slice(entry));
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.push(id);
        bytes.extend(varint(body.len() as u64));
        bytes.extend(body);
        bytes
    }

    /// A module of `count` tables of `elements` function references each.
    fn tables(count: usize, elements: usize) -> Vec<u8> {
        let entry = [&[0x70, 0x00][..], &varint(elements as u64)].concat();
        module(0x04, count, &entry)
    }

    /// A module of `count` empty memories.
    fn memories(count: usize) -> Vec<u8> {
        module(0x05, count, &[0x00, 0x00])
    }

    /// Instantiates `bytes` `times` times in one limited store; the first error, if any.
    fn instantiate(bytes: &[u8], times: usize) -> Result<(), String> {
        let engine = Engine::default();
        let module = Module::new(&engine, bytes).map_err(|e| format!("{e:#}"))?;
        let mut store = Store::new(&engine, store_limits(1 << 20));
        store.limiter(|limits| limits);
        for _ in 0..times {
            Instance::new(&mut store, &module, &[]).map_err(|e| format!("{e:#}"))?;
        }
        Ok(())
    }

    #[test]
    fn each_count_is_allowed_up_to_its_limit_and_refused_past_it() {
        assert_eq!(instantiate(&tables(1, TABLE_ELEMENTS_MAX), 1), Ok(()));
        let error = instantiate(&tables(1, TABLE_ELEMENTS_MAX + 1), 1).unwrap_err();
        assert!(error.contains("table"), "{error}");
        assert_eq!(instantiate(&tables(TABLES_MAX, 1), 1), Ok(()));
        let error = instantiate(&tables(TABLES_MAX + 1, 1), 1).unwrap_err();
        assert!(error.contains("table"), "{error}");
        assert_eq!(instantiate(&memories(MEMORIES_MAX), 1), Ok(()));
        let error = instantiate(&memories(MEMORIES_MAX + 1), 1).unwrap_err();
        assert!(error.contains("memor"), "{error}");
        assert_eq!(instantiate(&memories(0), INSTANCES_MAX), Ok(()));
        let error = instantiate(&memories(0), INSTANCES_MAX + 1).unwrap_err();
        assert!(error.contains("instance"), "{error}");
    }
}
