//! Who may use `host serve`, checked on every request before any route runs, in this order:
//!
//! 1. `Host` must name the address the server is bound to (`IP:PORT`; also `localhost:PORT`
//!    when bound to loopback or to every address; any IP literal with the right port when bound
//!    to every address): a page whose name an attacker made resolve to 127.0.0.1 (DNS
//!    rebinding) sends its own name, and is refused (403).
//! 2. A request that may change something (any method but `GET` and `HEAD`) that carries an
//!    `Origin` must come from `http://` and such an address: a page of another site is refused
//!    (403), token or not.
//! 3. The token: `Authorization: Bearer TOKEN`, or the cookie `jobhost-token-PORT` (HttpOnly,
//!    SameSite=Strict, Path=/), which `GET /?token=TOKEN` (the dashboard's page, a `GET`, and
//!    nothing else) sets. `?token=` anywhere else is refused even with the right token, so that
//!    it never travels in the address of a request that acts. No token, or a wrong one: 401.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::ApiError;

/// The token and the address it is good for.
pub struct Access {
    token: String,
    addr: SocketAddr,
}

/// How a request that may proceed presented the token.
#[derive(Debug, PartialEq)]
enum Admitted {
    /// In a header or the cookie.
    Presented,
    /// In the dashboard's address: its answer sets the cookie.
    SigningIn,
}

impl Access {
    /// Access with `token` to the server bound to `addr`.
    pub fn new(token: String, addr: SocketAddr) -> Self {
        Access { token, addr }
    }

    /// The cookie's name: one per port, as cookies do not tell ports apart.
    fn cookie_name(&self) -> String {
        format!("jobhost-token-{}", self.addr.port())
    }

    /// The cookie's value: the token in hex, which any token can be written in.
    fn cookie_value(&self) -> String {
        hex::encode(&self.token)
    }

    /// Whether the request may proceed, and how it presented the token.
    fn admit(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Admitted, ApiError> {
        self.check_host(uri, headers)?;
        if !matches!(*method, Method::GET | Method::HEAD) {
            self.check_origin(headers)?;
        }
        let page = *method == Method::GET && uri.path() == "/";
        match query_token(uri) {
            Some(token) if page && same(token.as_bytes(), self.token.as_bytes()) => {
                Ok(Admitted::SigningIn)
            }
            Some(_) if page => Err(ApiError::unauthorized()),
            Some(_) => Err(ApiError::token_in_address()),
            None if self.presented(headers) => Ok(Admitted::Presented),
            None => Err(ApiError::unauthorized()),
        }
    }

    /// Refuses a `Host` (or an absolute request target) that names another server.
    fn check_host(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
        let host = header_str(headers, header::HOST).unwrap_or_default();
        let target = uri.authority().map_or(host, |a| a.as_str());
        if self.names_us(host) && self.names_us(target) {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "the request is addressed to `{host}`, not to this server ({}): refused (DNS \
             rebinding?)",
            self.addr
        )))
    }

    /// Refuses a request from a page of another site.
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("(not text)");
        match origin.strip_prefix("http://") {
            Some(authority) if self.names_us(authority) => Ok(()),
            _ => Err(ApiError::forbidden(format!(
                "a request from another site (Origin `{origin}`) may not change anything"
            ))),
        }
    }

    /// Whether `authority` (`NAME[:PORT]`) names this server.
    fn names_us(&self, authority: &str) -> bool {
        let (name, port) = match authority.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => (name, port.parse().ok()),
            _ => (authority, Some(80)),
        };
        let ours = self.addr.ip();
        if port != Some(self.addr.port()) {
            return false;
        }
        if name.eq_ignore_ascii_case("localhost") {
            return ours.is_loopback() || ours.is_unspecified();
        }
        let ip = name.strip_prefix('[').and_then(|n| n.strip_suffix(']'));
        let ip = ip.unwrap_or(name).parse::<IpAddr>();
        ip.is_ok_and(|ip| ip == ours || ours.is_unspecified())
    }

    /// Whether the headers carry the token: as a bearer token, or in the cookie.
    fn presented(&self, headers: &HeaderMap) -> bool {
        let bearer = header_str(headers, header::AUTHORIZATION)
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| same(t.as_bytes(), self.token.as_bytes()));
        let (name, value) = (self.cookie_name(), self.cookie_value());
        let cookies = headers.get_all(header::COOKIE).into_iter();
        let mut pairs = cookies
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'));
        bearer
            || pairs.any(|pair| {
                pair.trim()
                    .split_once('=')
                    .is_some_and(|(n, v)| n == name && same(v.as_bytes(), value.as_bytes()))
            })
    }

    /// The headers that sign the dashboard in: the cookie, and no copy of the token kept by a
    /// cache or sent on as a referrer.
    fn signed_in(&self, response: &mut Response) {
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie_name(),
            self.cookie_value()
        );
        let headers = response.headers_mut();
        let cookie = HeaderValue::from_str(&cookie).expect("a hex cookie is a header value");
        headers.append(header::SET_COOKIE, cookie);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let no_referrer = HeaderValue::from_static("no-referrer");
        headers.insert(header::REFERRER_POLICY, no_referrer);
    }
}

/// Refuses a request that [`Access`] does not admit; sets the cookie on the dashboard's answer
/// to `GET /?token=TOKEN`.
pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let admitted = access.admit(request.method(), request.uri(), request.headers());
    match admitted {
        Err(refused) => refused.into_response(),
        Ok(Admitted::Presented) => next.run(request).await,
        Ok(Admitted::SigningIn) => {
            let mut response = next.run(request).await;
            access.signed_in(&mut response);
            response
        }
    }
}

/// The `token` of the query string, if there is one.
fn query_token(uri: &Uri) -> Option<String> {
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?.0;
    pairs
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Compares in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn access(addr: &str) -> Access {
        Access::new("s3cret".into(), addr.parse().unwrap())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn admit(
        access: &Access,
        method: Method,
        uri: &str,
        pairs: &[(&'static str, &str)],
    ) -> Result<Admitted, u16> {
        let uri: Uri = uri.parse().unwrap();
        access
            .admit(&method, &uri, &headers(pairs))
            .map_err(|e| e.into_response().status().as_u16())
    }

    #[test]
    fn host_names_the_bound_address_only() {
        let loopback = access("127.0.0.1:8086");
        for ok in ["127.0.0.1:8086", "localhost:8086", "LOCALHOST:8086"] {
            assert!(loopback.names_us(ok), "{ok}");
        }
        for no in [
            "evil.example:8086",
            "127.0.0.1:8087",
            "127.0.0.1",
            "127.0.0.2:8086",
            "",
        ] {
            assert!(!loopback.names_us(no), "{no}");
        }
        assert!(access("[::1]:8086").names_us("[::1]:8086"));
        assert!(access("127.0.0.1:80").names_us("localhost"));
        let everywhere = access("0.0.0.0:8086");
        assert!(everywhere.names_us("192.0.2.7:8086"));
        assert!(!everywhere.names_us("evil.example:8086"));
        assert!(!access("192.0.2.7:8086").names_us("localhost:8086"));
    }

    #[test]
    fn every_request_needs_the_token_from_a_header_or_the_cookie() {
        let a = access("127.0.0.1:8086");
        let host = ("host", "127.0.0.1:8086");
        let bearer = ("authorization", "Bearer s3cret");
        let cookie = ("cookie", "x=1; jobhost-token-8086=733363726574");
        assert_eq!(admit(&a, Method::GET, "/api/jobs", &[host]), Err(401));
        let wrong = ("authorization", "Bearer s3cre");
        assert_eq!(admit(&a, Method::GET, "/", &[host, wrong]), Err(401));
        for with in [bearer, cookie] {
            let ok = admit(&a, Method::POST, "/api/jobs/j/save", &[host, with]);
            assert_eq!(ok, Ok(Admitted::Presented));
        }
        let other_port = ("cookie", "jobhost-token-8087=733363726574");
        assert_eq!(admit(&a, Method::GET, "/", &[host, other_port]), Err(401));
    }

    #[test]
    fn the_token_in_the_address_signs_in_the_dashboard_page_only() {
        let a = access("127.0.0.1:8086");
        let host = ("host", "localhost:8086");
        let page = admit(&a, Method::GET, "/?job=j&token=s3cret", &[host]);
        assert_eq!(page, Ok(Admitted::SigningIn));
        assert_eq!(admit(&a, Method::GET, "/?token=nope", &[host]), Err(401));
        let bearer = ("authorization", "Bearer s3cret");
        for (method, uri) in [
            (Method::GET, "/api/jobs?token=s3cret"),
            (Method::POST, "/?token=s3cret"),
        ] {
            assert_eq!(admit(&a, method, uri, &[host, bearer]), Err(401));
        }
    }

    #[test]
    fn other_hosts_and_origins_are_refused() {
        let a = access("127.0.0.1:8086");
        let bearer = ("authorization", "Bearer s3cret");
        let evil_host = ("host", "evil.example:8086");
        assert_eq!(
            admit(&a, Method::GET, "/api/jobs", &[evil_host, bearer]),
            Err(403)
        );
        let host = ("host", "127.0.0.1:8086");
        let stop = "/api/jobs/j/stop";
        for origin in ["http://evil.example", "null", "https://127.0.0.1:8086"] {
            let from = ("origin", origin);
            let refused = admit(&a, Method::POST, stop, &[host, bearer, from]);
            assert_eq!(refused, Err(403), "{origin}");
        }
        let ours = ("origin", "http://localhost:8086");
        let ok = admit(&a, Method::POST, stop, &[host, bearer, ours]);
        assert_eq!(ok, Ok(Admitted::Presented));
        let evil = ("origin", "http://evil.example");
        let read = admit(&a, Method::GET, "/api/jobs", &[host, bearer, evil]);
        assert_eq!(read, Ok(Admitted::Presented), "a GET changes nothing");
    }
}
