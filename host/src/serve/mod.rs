//! `host serve`: one HTTP server over the state folder (axum on tokio): a JSON API that mirrors
//! the command line ([`api`]), every running job's metrics at `/metrics` ([`prometheus`]) and a
//! dashboard (one page, shipped in the binary, [`dashboard`]) that also shows each job's latest
//! shadow run ([`shadows`]).
//!
//! It reaches running jobs through their control sockets only ([`crate::jobs`]); the only file
//! it writes is its token's. Every request, on loopback too, must present the token
//! ([`token`]: `--token-file`'s, or one generated once into the state folder's `serve-token`,
//! mode 0600, and reused): as `Authorization: Bearer TOKEN`, or as the cookie that the
//! dashboard's address, `http://ADDRESS/?token=TOKEN` (printed once at start), sets. Its
//! `Host` must name the bound address, and a request that acts may not come from another
//! site's page ([`access`]: these defeat DNS rebinding and cross-site requests). A job has at
//! most one save or stop in flight ([`in_flight`]). It listens on loopback by default; any
//! other address requires `--token-file`.

pub mod access;
pub mod api;
pub mod dashboard;
pub mod in_flight;
pub mod prometheus;
pub mod shadows;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::middleware;

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
    /// The generated token cannot be written to the state folder.
    #[error("cannot write the token file {path}: {source}")]
    TokenCreate {
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
    in_flight: in_flight::InFlight,
    shadows: shadows::Shadows,
}

/// Binds `listen`; refuses a non-loopback address without `--token-file` (`token_given`).
pub async fn bind(
    listen: SocketAddr,
    token_given: bool,
) -> Result<tokio::net::TcpListener, ServeError> {
    if !listen.ip().is_loopback() && !token_given {
        return Err(ServeError::TokenRequired(listen));
    }
    let bind = |source| ServeError::Bind {
        addr: listen,
        source,
    };
    tokio::net::TcpListener::bind(listen).await.map_err(bind)
}

/// Serves the API, `/metrics` and the dashboard over `store`, to those with `token`, until the
/// process ends; shadow runs asked of it are `shadow`'s.
pub async fn run(
    listener: tokio::net::TcpListener,
    store: Store,
    token: String,
    shadow: shadows::ShadowRunner,
) -> std::io::Result<()> {
    let access = Arc::new(access::Access::new(token, listener.local_addr()?));
    let shared = Shared {
        store,
        in_flight: in_flight::InFlight::default(),
        shadows: shadows::Shadows::new(shadow),
    };
    let app = api::routes()
        .merge(dashboard::routes())
        .layer(middleware::from_fn_with_state(access, access::guard))
        .with_state(shared);
    axum::serve(listener, app).await
}
