//! A connector's position as a person reads it, from the state a point holds: a source's
//! stream sequences, a sink's prepared transactions or kept records (`host inspect`, `host
//! check`). Pure: decoding only.

use super::state::StateError;
use super::{kafka, nats, postgres};
use crate::ids::OperatorId;
use crate::store::{Metadata, OperatorState, States};

/// One connector subtask's position in a point.
#[derive(Debug, serde::Serialize)]
pub struct Position {
    /// The operator.
    pub operator: OperatorId,
    /// The subtask.
    pub subtask: u32,
    /// The connector (`jobhost:nats-source`, ...).
    pub connector: String,
    /// What its state says, or why it cannot be read.
    #[serde(serialize_with = "shown")]
    pub position: Result<String, StateError>,
}

fn shown<S: serde::Serializer>(
    position: &Result<String, StateError>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match position {
        Ok(text) => serializer.serialize_str(text),
        Err(error) => serializer.serialize_str(&format!("unreadable: {error}")),
    }
}

/// Whether a point's operator is a connector (it names no module).
pub fn is_connector(op: &OperatorState) -> bool {
    op.module_sha256.is_empty()
}

/// The position of every connector subtask of a point, from its `states` (which need hold
/// only the connectors'), in operator and subtask order.
pub fn of_point(metadata: &Metadata, states: &States) -> Vec<Position> {
    let mut positions = Vec::new();
    for op in metadata.operators.iter().filter(|op| is_connector(op)) {
        for subtask in 0..op.parallelism {
            let Some(held) = states.get(&(op.id.clone(), subtask)) else {
                continue;
            };
            if let Some(position) = describe(&op.module_name, &held.operator_state) {
                positions.push(Position {
                    operator: op.id.clone(),
                    subtask,
                    connector: op.module_name.clone(),
                    position,
                });
            }
        }
    }
    positions
}

/// What the state `bytes`, written by `module_name`, says of a connector's position; `None`
/// when `module_name` is no connector of this host.
pub fn describe(module_name: &str, bytes: &[u8]) -> Option<Result<String, StateError>> {
    let describe = match module_name {
        nats::source::NAME => nats::source::describe_state,
        nats::sink::NAME => nats::sink::describe_state,
        postgres::NAME => postgres::describe_state,
        kafka::source::NAME => kafka::source::describe_state,
        kafka::sink::NAME => kafka::sink::describe_state,
        _ => return None,
    };
    Some(describe(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::state::encode;

    #[test]
    fn each_connector_describes_its_position_and_modules_are_none() {
        let source = nats::source::State {
            stream: "EVENTS".to_owned(),
            positions: [("".to_owned(), 42)].into(),
        };
        let bytes = encode(nats::source::STATE_VERSION, &source);
        let shown = describe(nats::source::NAME, &bytes).unwrap().unwrap();
        assert_eq!(shown, "stream `EVENTS`: sequence 42");
        let sink = postgres::State {
            prepared: vec![postgres::transactions::Gid {
                checkpoint: 3,
                subtask: 1,
                prefix: "db.counts".to_owned(),
                job: "job-b".to_owned(),
            }],
            upserts: Vec::new(),
        };
        let bytes = encode(postgres::STATE_VERSION, &sink);
        let shown = describe(postgres::NAME, &bytes).unwrap().unwrap();
        assert_eq!(shown, "prepared, to commit: jh:db.counts:1:job-b:3");
        assert!(describe("word-counter", &bytes).is_none());
        let source = kafka::source::State {
            topic: "lines".to_owned(),
            positions: [(0, 812), (2, -1)].into(),
        };
        let bytes = encode(kafka::source::STATE_VERSION, &source);
        let shown = describe(kafka::source::NAME, &bytes).unwrap().unwrap();
        assert_eq!(
            shown,
            "topic `lines`: partition 0 offset 812, partition 2 from the start"
        );
        let sink = crate::connectors::kept::State::<kafka::sink::Record> {
            kept: vec![crate::connectors::kept::Kept {
                ids: "job-b:sink:1:4".to_owned(),
                subtask: 1,
                checkpoint: 4,
                records: Vec::new(),
            }],
        };
        let bytes = encode(kafka::sink::STATE_VERSION, &sink);
        let shown = describe(kafka::sink::NAME, &bytes).unwrap().unwrap();
        assert_eq!(shown, "kept to produce: job-b:sink:1:4 (0 records)");
        assert!(describe(postgres::NAME, &[9]).unwrap().is_err());
    }
}
