//! Property tests of the control socket's request reading ([`read_request`],
//! [`parse_request`]): any process of the job's user may connect and send anything.

use proptest::prelude::*;

use super::*;
use crate::fuzz::{bytes, explained, id, mutated, text};
use crate::runtime::Canary;

fn upgrade() -> impl Strategy<Value = UpgradeSpec> {
    let pairs = prop::collection::vec((text(), text()), 0..3);
    let canary = (any::<u64>(), any::<u64>()).prop_map(|(records, ms)| Canary { records, ms });
    (id(), text(), prop::option::of(pairs), canary).prop_map(
        |(operator, module, config, canary)| UpgradeSpec {
            operator: operator.parse().expect("a valid id"),
            module: module.into(),
            config,
            canary,
        },
    )
}

fn request() -> impl Strategy<Value = ControlRequest> {
    prop_oneof![
        any::<bool>().prop_map(|stop| ControlRequest::Save { stop }),
        Just(ControlRequest::Cancel),
        Just(ControlRequest::Metrics),
        upgrade().prop_map(|spec| ControlRequest::Upgrade { spec }),
    ]
}

/// `request` as a client sends it: a JSON line.
fn line(request: &ControlRequest) -> Vec<u8> {
    let mut line = serde_json::to_vec(request).expect("requests serialize");
    line.push(b'\n');
    line
}

/// Reads `sent` as the server reads a connection's bytes.
fn read(sent: impl AsyncRead + Unpin) -> Option<Result<ControlRequest, String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime
        .block_on(read_request(sent))
        .expect("reading from memory")
}

/// Parses `line`, which must not panic; a refusal must say why.
fn parses_or_explains(line: &[u8]) -> Result<(), TestCaseError> {
    if let Err(refusal) = parse_request(line) {
        explained(&refusal)?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_requests_are_refused_with_a_reason(bytes in bytes()) {
        parses_or_explains(&bytes)?;
    }

    #[test]
    fn mutated_requests_are_refused_with_a_reason(
        bytes in request().prop_flat_map(|request| mutated(line(&request))),
    ) {
        parses_or_explains(&bytes)?;
    }

    #[test]
    fn requests_round_trip_through_the_socket_reader(request in request()) {
        prop_assert_eq!(read(&line(&request)[..]), Some(Ok(request)));
    }
}

/// A client that never ends its line: the server reads up to the limit, no further, and
/// answers that the request is too long.
#[test]
fn an_endless_request_is_read_up_to_the_limit_and_refused_naming_it() {
    let refusal = read(tokio::io::repeat(b'[')).unwrap().unwrap_err();
    assert!(
        refusal.contains(&REQUEST_BYTES_MAX.to_string()),
        "{refusal}"
    );
}

/// Bytes that are not UTF-8 get an answer (they used to close the connection unanswered).
#[test]
fn a_request_that_is_not_text_is_answered() {
    let refusal = read(&b"{\"request\": \"\xff\"}\n"[..])
        .unwrap()
        .unwrap_err();
    assert!(refusal.starts_with("malformed request"), "{refusal}");
}

#[test]
fn a_client_that_sends_nothing_is_a_probe() {
    assert_eq!(read(&b""[..]), None);
}
