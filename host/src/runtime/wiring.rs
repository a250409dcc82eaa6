//! The channels of a job's edges: between every pair of subtasks an edge connects that run in
//! this process, an in-process channel; for a pair with one end elsewhere, the end here,
//! handed to the exchange ([`super::remote`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::CHANNEL_RECORDS_MAX;
use super::channel::{Receiver, Sender, channel};
use super::partition::{Output, OutputEdge};
use super::remote::ChannelId;
use crate::ids::SubtaskId;
use crate::topology::{OperatorPlan, Partition, Plan};

/// The channels of every edge, between every pair of subtasks it connects that run here, and
/// the ends of those that cross to another process.
pub(super) struct Wiring {
    /// Receivers by (operator index, subtask index).
    pub(super) inputs: BTreeMap<(usize, u32), Vec<Receiver>>,
    /// Senders by (edge index, upstream subtask), one per reachable downstream subtask.
    senders: BTreeMap<(usize, u32), Vec<Sender>>,
    /// See [`super::build::Share::outbound`].
    pub(super) outbound: Vec<(ChannelId, Receiver)>,
    /// See [`super::build::Share::inbound`].
    pub(super) inbound: Vec<(ChannelId, Sender)>,
}

impl Wiring {
    /// The channels of `plan` with an end among the subtasks that run `here`.
    pub(super) fn new(plan: &Plan, here: &(dyn Fn(&SubtaskId) -> bool + Sync)) -> Self {
        let mut wiring = Wiring {
            inputs: BTreeMap::new(),
            senders: BTreeMap::new(),
            outbound: Vec::new(),
            inbound: Vec::new(),
        };
        let runs_here = |op: &OperatorPlan, index| {
            here(&SubtaskId {
                operator: op.id.clone(),
                index,
            })
        };
        for (e, edge) in plan.edges.iter().enumerate() {
            let (up, down) = (&plan.operators[edge.from], &plan.operators[edge.to]);
            for i in 0..up.parallelism {
                let targets: Vec<u32> = match edge.partition {
                    Partition::Forward => vec![i],
                    _ => (0..down.parallelism).collect(),
                };
                let up_here = runs_here(up, i);
                for j in targets {
                    let down_here = runs_here(down, j);
                    if !up_here && !down_here {
                        continue;
                    }
                    let (tx, rx) = channel(CHANNEL_RECORDS_MAX);
                    let id = ChannelId {
                        edge: e as u32,
                        from: i,
                        to: j,
                    };
                    match up_here {
                        true => wiring.senders.entry((e, i)).or_default().push(tx),
                        false => wiring.inbound.push((id, tx)),
                    }
                    match down_here {
                        true => wiring.inputs.entry((edge.to, j)).or_default().push(rx),
                        false => wiring.outbound.push((id, rx)),
                    }
                }
            }
        }
        wiring
    }

    /// The output of subtask `subtask` of operator `op_index`: the senders of its edges.
    pub(super) fn output(
        &mut self,
        plan: &Plan,
        op_index: usize,
        subtask: u32,
        counters: Arc<crate::metrics::SubtaskCounters>,
    ) -> Output {
        let edges = plan
            .edges
            .iter()
            .enumerate()
            .filter(|(_, edge)| edge.from == op_index)
            .map(|(e, edge)| {
                let targets = self.senders.remove(&(e, subtask)).expect("wired edge");
                OutputEdge::new(edge.partition, targets, plan.max_parallelism)
            })
            .collect();
        Output::new(edges, counters)
    }
}
