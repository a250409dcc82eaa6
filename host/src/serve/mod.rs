//! `host serve`: one HTTP server over the state folder (axum on tokio): a JSON API that mirrors
//! the command line ([`api`]), every running job's metrics at `/metrics` ([`prometheus`]) and a
//! dashboard (one page, shipped in the binary, [`dashboard`]).
//!
//! It reaches running jobs through their control sockets only ([`crate::ops`]) and writes
//! nothing to the state folder. It listens on loopback by default; any other address requires a
//! token, which every request must then present (`Authorization: Bearer TOKEN`, or `?token=`
//! for the dashboard's first page load).

pub mod api;
pub mod dashboard;
pub mod prometheus;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::store::Store;

/// Where `host serve` listens unless told otherwise.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:8086";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without a token.
    #[error("listening on {0} (not loopback) requires --token-file")]
    TokenRequired(SocketAddr),
    /// The token file cannot be read.
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token file holds no token.
    #[error("the token file {0} is empty")]
    EmptyToken(PathBuf),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What the handlers share.
#[derive(Clone)]
pub struct Shared {
    store: Store,
    token: Option<Arc<str>>,
}

/// Reads the token (its first line, trimmed) from `path`.
pub fn read_token(path: &Path) -> Result<String, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServeError::TokenFile {
        path: path.to_owned(),
        source,
    })?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(ServeError::EmptyToken(path.to_owned()));
    }
    Ok(token.to_owned())
}

/// Binds `listen`; refuses a non-loopback address without a token.
pub async fn bind(
    listen: SocketAddr,
    token: Option<&str>,
) -> Result<tokio::net::TcpListener, ServeError> {
    if !listen.ip().is_loopback() && token.is_none() {
        return Err(ServeError::TokenRequired(listen));
    }
    let bind = |source| ServeError::Bind {
        addr: listen,
        source,
    };
    tokio::net::TcpListener::bind(listen).await.map_err(bind)
}

/// Serves the API, `/metrics` and the dashboard over `store` until the process ends.
pub async fn run(
    listener: tokio::net::TcpListener,
    store: Store,
    token: Option<String>,
) -> std::io::Result<()> {
    let shared = Shared {
        store,
        token: token.map(Arc::from),
    };
    let app = api::routes()
        .merge(dashboard::routes())
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .with_state(shared);
    axum::serve(listener, app).await
}

/// Refuses a request without the token, when one is set.
async fn authorize(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let Some(token) = &shared.token else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = request.uri().query().unwrap_or_default();
    let in_query = query.split('&').find_map(|p| p.strip_prefix("token="));
    let presented = bearer.or(in_query).unwrap_or_default();
    if same(presented.as_bytes(), token.as_bytes()) {
        return next.run(request).await;
    }
    api::ApiError::unauthorized().into_response_now()
}

/// Compares in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}
