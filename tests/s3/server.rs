//! The S3 server of these tests: moto's `moto_server` (pinned, installed once by
//! `tests/s3/install-moto.sh`), one a test, on a free port of 127.0.0.1, with one bucket; and
//! plain HTTP requests to look into it and plant objects in it behind the host's back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::target_dir;

/// Longest the S3 server may take to accept connections.
const SERVER_START_MAX: Duration = Duration::from_secs(60);
pub(super) const BUCKET: &str = "points";
/// An `Authorization` header of the shape S3 wants, which moto takes without checking it.
const ANY_SIGNATURE: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
                             SignedHeaders=host, Signature=0";

/// Installs moto once per test process (the script itself skips an installed venv).
fn moto_venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let venv = target_dir().join("venv-moto");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/s3/install-moto.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&venv)
            .status()
            .expect("running install-moto.sh");
        assert!(status.success(), "{} failed", script.display());
        venv
    })
}

/// A `moto_server` on 127.0.0.1 with one bucket; killed when dropped.
pub(crate) struct S3Server {
    child: Child,
    pub(crate) endpoint: String,
}

impl S3Server {
    /// Starts a server, with the bucket made.
    pub(crate) fn start() -> S3Server {
        let venv = moto_venv();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let server = S3Server {
            child,
            endpoint: format!("127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(&server.endpoint).is_err() {
            assert!(
                started.elapsed() < SERVER_START_MAX,
                "moto_server did not listen on {} within {SERVER_START_MAX:?}",
                server.endpoint
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server.request("PUT", &format!("/{BUCKET}"));
        server
    }

    /// One plain HTTP request (moto does not check signatures); returns the response, which
    /// must be a success.
    pub(crate) fn request(&self, method: &str, path: &str) -> String {
        let mut stream = TcpStream::connect(&self.endpoint).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.endpoint
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 2") || response.starts_with("HTTP/1.0 2"),
            "{method} {path}: {response}"
        );
        response
    }

    /// The keys under `prefix` in the bucket.
    pub(crate) fn keys(&self, prefix: &str) -> Vec<String> {
        let response = self.request("GET", &format!("/{BUCKET}?list-type=2&prefix={prefix}"));
        response
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect()
    }

    /// The bytes of the object at `key`.
    pub(crate) fn object(&self, key: &str) -> Vec<u8> {
        self.exchange("GET", key, &[])
    }

    /// Puts `bytes` at `key`, as anyone who can write the bucket could (no lease, no fence).
    pub(crate) fn plant(&self, key: &str, bytes: &[u8]) {
        self.exchange("PUT", key, bytes);
    }

    /// One plain HTTP request on object `key` with `body`; returns the response's body, which
    /// must be a success's (moto answers with the whole body, then closes). Moto refuses
    /// objects to a request without credentials, and checks no signature.
    pub(crate) fn exchange(&self, method: &str, key: &str, body: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(&self.endpoint).unwrap();
        let head = format!(
            "{method} /{BUCKET}/{key} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\
             Authorization: {ANY_SIGNATURE}\r\nConnection: close\r\n\r\n",
            self.endpoint,
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&response[..end]).to_lowercase();
        assert!(head.starts_with("http/1.1 2"), "{method} {key}: {head}");
        assert!(!head.contains("transfer-encoding: chunked"), "{head}");
        response[end + 4..].to_vec()
    }

    /// The keys under `prefix` with a multipart upload begun and neither completed nor
    /// aborted.
    pub(crate) fn uploads(&self, prefix: &str) -> Vec<String> {
        let response = self.request("GET", &format!("/{BUCKET}?uploads&prefix={prefix}"));
        response
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect()
    }

    /// What a `host` command needs to use this server, its points under `prefix`.
    pub(crate) fn env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("HOST_STORE", format!("s3://{BUCKET}/{prefix}")),
            ("AWS_ENDPOINT", format!("http://{}", self.endpoint)),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
