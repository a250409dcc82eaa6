//! A connector's position as a person reads it, from the state a point holds: a source's
//! stream sequences, a sink's prepared transactions or kept records (`host inspect`, `host
//! check`). Pure: decoding only.

use super::state::StateError;
use super::{nats, postgres};

/// What the state `bytes`, written by `module_name`, says of a connector's position; `None`
/// when `module_name` is no connector of this host.
pub fn describe(module_name: &str, bytes: &[u8]) -> Option<Result<String, StateError>> {
    let describe = match module_name {
        nats::source::NAME => nats::source::describe_state,
        nats::sink::NAME => nats::sink::describe_state,
        postgres::NAME => postgres::describe_state,
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
            lineage: "job-a".to_owned(),
            prepared: vec![postgres::transactions::Gid {
                checkpoint: 3,
                subtask: 1,
                lineage: "job-a".to_owned(),
                operator: "db".to_owned(),
                job: "job-b".to_owned(),
            }],
            upserts: Vec::new(),
        };
        let bytes = encode(postgres::STATE_VERSION, &sink);
        let shown = describe(postgres::NAME, &bytes).unwrap().unwrap();
        assert_eq!(
            shown,
            "lineage job-a: prepared, to commit: jh:job-a:db:1:job-b:3"
        );
        assert!(describe("word-counter", &bytes).is_none());
        assert!(describe(postgres::NAME, &[9]).unwrap().is_err());
    }
}
