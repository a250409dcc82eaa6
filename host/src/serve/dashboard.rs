//! The dashboard: one page of HTML, CSS and JavaScript, compiled into the binary (no build
//! step), that polls the API: jobs, the topology with live rates and back-pressure per edge,
//! checkpoint history, savepoints with lineage, and save and stop buttons.

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
