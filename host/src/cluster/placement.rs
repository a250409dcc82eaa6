//! Which worker runs which subtask: subtask *i* of every operator on worker *i mod W*, so that
//! a `forward` edge (subtask *i* to subtask *i*) never leaves its worker. Pure.

use std::collections::BTreeMap;

use crate::ids::SubtaskId;
use crate::topology::Plan;

/// The worker (an index into the deployment's workers) of every subtask of a plan.
pub type Placement = BTreeMap<SubtaskId, usize>;

/// Places every subtask of `plan` on one of `workers` workers (at least one).
pub fn place(plan: &Plan, workers: usize) -> Placement {
    assert!(workers > 0, "a placement needs a worker");
    let mut placement = Placement::new();
    for op in &plan.operators {
        for index in 0..op.parallelism {
            let subtask = SubtaskId {
                operator: op.id.clone(),
                index,
            };
            placement.insert(subtask, index as usize % workers);
        }
    }
    placement
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Partition;

    fn plan(parallelism: u32) -> Plan {
        let text = format!(
            r#"
name = "p"
[[operators]]
id = "a"
role = "source"
module = "a.wasm"
parallelism = {parallelism}
[[operators]]
id = "b"
role = "sink"
module = "b.wasm"
parallelism = {parallelism}
[[edges]]
from = "a"
to = "b"
partition = "forward"
"#
        );
        Plan::from_toml(&text, std::path::Path::new(".")).unwrap()
    }

    #[test]
    fn forward_edges_stay_on_one_worker_and_every_worker_gets_a_share() {
        let plan = plan(4);
        assert_eq!(plan.edges[0].partition, Partition::Forward);
        let placement = place(&plan, 3);
        assert_eq!(placement.len(), 8);
        for (subtask, worker) in &placement {
            let peer = SubtaskId {
                operator: if subtask.operator.as_str() == "a" {
                    "b"
                } else {
                    "a"
                }
                .parse()
                .unwrap(),
                index: subtask.index,
            };
            assert_eq!(placement[&peer], *worker, "{subtask} and {peer} apart");
        }
        let mut used: Vec<usize> = placement.values().copied().collect();
        used.sort();
        used.dedup();
        assert_eq!(used, vec![0, 1, 2]);
    }
}
