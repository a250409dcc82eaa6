//! Property tests of [`Access::admit`]: an HTTP request's target and headers are whatever the
//! client (or a page in a browser) sent.

use axum::http::StatusCode;
use proptest::prelude::*;

use super::*;
use crate::fuzz::{explained, mutated};

const TOKEN: &str = "s3cret";

/// The token's cookie for port 8086 (the addresses below all bind it).
const COOKIE: &str = "jobhost-token-8086=733363726574";

/// A header value: a well-formed one of `valid`, mutated at times, or arbitrary bytes.
fn value(valid: &'static [&'static str]) -> impl Strategy<Value = Option<Vec<u8>>> {
    let valid = prop::sample::select(valid).prop_map(|v| v.as_bytes().to_vec());
    prop::option::of(prop_oneof![
        3 => valid.clone(),
        2 => valid.prop_flat_map(mutated),
        1 => prop::collection::vec(any::<u8>(), 0..32),
    ])
}

/// Request headers: `Host`, `Origin`, `Authorization`, `Cookie`, each absent, right, wrong or
/// damaged (values that are no header value are left out, as the server never sees them).
fn headers() -> impl Strategy<Value = HeaderMap> {
    let hosts = &[
        "127.0.0.1:8086",
        "localhost:8086",
        "[::1]:8086",
        "evil.example:8086",
    ];
    let origins = &[
        "http://127.0.0.1:8086",
        "http://localhost:8086",
        "https://evil.example",
    ];
    let authorizations = &["Bearer s3cret", "Bearer s3cre", "Basic s3cret"];
    let cookies = &[
        COOKIE,
        "jobhost-token-8086=73",
        "a=b; jobhost-token-8086=733363726574",
    ];
    let names = [
        header::HOST,
        header::ORIGIN,
        header::AUTHORIZATION,
        header::COOKIE,
    ];
    (
        value(hosts),
        value(origins),
        value(authorizations),
        value(cookies),
    )
        .prop_map(move |(host, origin, authorization, cookie)| {
            let mut map = HeaderMap::new();
            let values = [host, origin, authorization, cookie];
            for (name, value) in names.iter().zip(values) {
                if let Some(Ok(value)) = value.map(|v| HeaderValue::from_bytes(&v)) {
                    map.append(name.clone(), value);
                }
            }
            map
        })
}

/// A request target: a path, a query at times (with the token, a wrong one), damaged at times.
fn uri() -> impl Strategy<Value = Uri> {
    let targets = &[
        "/",
        "/?token=s3cret",
        "/?token=nope",
        "/api/jobs?token=s3cret",
        "/api/jobs/job-1/stop?save=true",
        "http://127.0.0.1:8086/?token=s3cret",
        "http://evil.example:8086/api/jobs",
    ];
    // A mutation that is no request target is replaced by the target (the server never sees
    // it): a filter would reject too many cases in a long run.
    let target = prop::sample::select(targets);
    let damaged = target.prop_flat_map(|t| (Just(t), mutated(t.as_bytes().to_vec())));
    damaged.prop_map(|(target, damaged)| {
        Uri::try_from(damaged).unwrap_or_else(|_| Uri::from_static(target))
    })
}

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::DELETE,
    ])
}

/// The address the server is bound to: loopback, or every address.
fn bound() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["127.0.0.1:8086", "[::1]:8086", "0.0.0.0:8086"])
}

proptest! {
    /// Any request is admitted or refused without a panic; a refusal says why, as a 401 or a
    /// 403; one admitted carried the token somewhere (the right one: hex in the cookie).
    #[test]
    fn requests_are_admitted_with_the_token_or_refused_with_a_reason(
        bound in bound(),
        method in method(),
        uri in uri(),
        headers in headers(),
    ) {
        let access = Access::new(TOKEN.into(), bound.parse().unwrap());
        match access.admit(&method, &uri, &headers) {
            Err(refusal) => {
                explained(&refusal.message)?;
                let statuses = [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN];
                prop_assert!(statuses.contains(&refusal.status));
            }
            Ok(admitted) => {
                let carried = |text: &str| text.contains(TOKEN) || text.contains("733363726574");
                let in_headers = headers.values().any(|v| carried(&String::from_utf8_lossy(v.as_bytes())));
                let in_target = uri.query().is_some_and(carried);
                match admitted {
                    Admitted::SigningIn => prop_assert!(in_target && method == Method::GET),
                    Admitted::Presented => prop_assert!(in_headers),
                }
            }
        }
    }
}
