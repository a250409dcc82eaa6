//! The dashboard: one page of HTML, CSS and JavaScript, compiled into the binary (no build
//! step), that polls the API: jobs, the topology with live rates and back-pressure per edge,
//! checkpoint history, savepoints with lineage, and save and stop buttons.

use std::net::SocketAddr;

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use super::Shared;

/// The page.
pub const PAGE: &str = include_str!("dashboard.html");

/// The dashboard's route.
pub fn routes() -> Router<Shared> {
    Router::new().route("/", get(|| async { Html(PAGE) }))
}

/// The dashboard's address on `addr` with `token`, which signs the browser in: the one place
/// the token is shown.
pub fn url(addr: SocketAddr, token: &str) -> String {
    let escape = |b: u8| match b {
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).into(),
        _ => format!("%{b:02X}"),
    };
    let token: String = token.bytes().map(escape).collect();
    format!("http://{addr}/?token={token}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dashboard_url_carries_the_token_escaped() {
        let addr = "127.0.0.1:8086".parse().unwrap();
        let url = super::url(addr, "ab+c/=d");
        assert_eq!(url, "http://127.0.0.1:8086/?token=ab%2Bc%2F%3Dd");
    }
}
