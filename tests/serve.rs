//! `host serve` against a real running job: the JSON API, `/metrics` read by a Prometheus
//! text-format parser, and who may use it: the token (generated, or `--token-file`'s; in a
//! header, or the cookie the printed address sets), the `Host` and, to act, the `Origin`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Dir, WordCount};

/// A `host serve` in the background, killed when dropped.
pub struct Server {
    child: Child,
    /// Where it listens (`127.0.0.1:PORT`).
    pub addr: String,
    /// The token in the address it printed.
    pub token: String,
}

/// An answer: its status code, its head (status line and headers) and its body.
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The status line and the headers.
    pub head: String,
    /// The body.
    pub body: String,
}

impl Server {
    /// Starts `host serve --listen 127.0.0.1:0 EXTRA` over `dir`'s state folder; reads the
    /// address with the token that it prints.
    pub fn start(dir: &Dir, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
            .args([&["serve", "--listen", "127.0.0.1:0"], extra].concat())
            .env("HOST_HOME", dir.home())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning host serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().strip_prefix("listening on http://");
        let url = url.unwrap_or_else(|| panic!("host serve printed {line:?}"));
        let (addr, token) = url
            .split_once("/?token=")
            .expect("an address with the token");
        Server {
            addr: addr.to_owned(),
            token: token.to_owned(),
            child,
        }
    }

    /// `METHOD PATH` with `headers` (`Name: value` each; `Host` is this server's address
    /// unless one of them is a `Host`).
    pub fn send(&self, method: &str, path: &str, headers: &[&str]) -> Answer {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let host = format!("Host: {}", self.addr);
        let mut lines = headers.to_vec();
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("host:"))
        {
            lines.insert(0, &host);
        }
        let request = format!(
            "{method} {path} HTTP/1.1\r\n{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            lines.join("\r\n")
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
        Answer {
            status: status.expect("a status code"),
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    /// `METHOD PATH` with an optional bearer token: the status code and the body.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
        let answer = self.send(method, path, &headers);
        (answer.status, answer.body)
    }

    /// `METHOD PATH` with the token, that must answer `status` with JSON.
    pub fn json(&self, method: &str, path: &str, status: u16) -> Value {
        let (got, body) = self.call(method, path, Some(&self.token));
        assert_eq!(got, status, "{method} {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
    }

    /// `/metrics`, parsed: every sample's value by metric name and labels.
    pub fn metrics(&self) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
        let (status, body) = self.call("GET", "/metrics", Some(&self.token));
        assert_eq!(status, 200, "{body}");
        let lines = body.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
        let value = |v: &prometheus_parse::Value| match *v {
            prometheus_parse::Value::Counter(x)
            | prometheus_parse::Value::Gauge(x)
            | prometheus_parse::Value::Untyped(x) => x,
            ref other => panic!("unexpected sample {other:?}"),
        };
        let samples = scrape.samples.iter().map(|s| {
            let labels: BTreeMap<_, _> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            ((s.metric.clone(), labels), value(&s.value))
        });
        samples.collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of metric `name` over the subtasks of `operator`.
fn total(
    metrics: &BTreeMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
    operator: &str,
) -> f64 {
    let of =
        |labels: &BTreeMap<String, String>| labels.get("operator").is_some_and(|o| o == operator);
    metrics
        .iter()
        .filter(|((n, labels), _)| n == name && of(labels))
        .map(|(_, v)| v)
        .sum()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_api_and_metrics_follow_a_running_job_and_save_and_stop_it() {
    let lines = 8_000;
    let dir = Dir::new(lines);
    let job_file = dir.write_job(&WordCount::default());
    let running = dir.start(&[job_file.to_str().unwrap()]);
    let server = Server::start(&dir, &[]);
    let job = running.job.clone();

    let jobs = server.json("GET", "/api/jobs", 200);
    assert_eq!(jobs[0]["job"], job.as_str());
    assert_eq!(jobs[0]["state"], "running");
    let status = server.json("GET", &format!("/api/jobs/{job}"), 200);
    let operators = &status["metrics"]["topology"]["operators"];
    assert_eq!(operators.as_array().map(Vec::len), Some(4), "{status}");

    // Counters rise, and a checkpoint shows with its size.
    let sink_in = |m: &Value| -> u64 {
        let subtasks = m["subtasks"].as_array().unwrap().iter();
        subtasks
            .filter(|s| s["operator"] == "sink")
            .map(|s| s["records_in"].as_u64().unwrap())
            .sum()
    };
    let first = sink_in(&server.json("GET", &format!("/api/jobs/{job}/metrics"), 200));
    wait_until("the sink's records in rise", || {
        sink_in(&server.json("GET", &format!("/api/jobs/{job}/metrics"), 200)) > first
    });
    wait_until("a checkpoint completes", || {
        let history = server.json("GET", &format!("/api/jobs/{job}/checkpoints"), 200);
        history
            .as_array()
            .is_some_and(|h| h.iter().any(|c| c["bytes"].as_u64() > Some(0)))
    });

    // `/metrics`, parsed: records into the sink lie between what was committed before the
    // scrape and what is committed in the end.
    let committed_before = dir.committed_output().len() as f64;
    let metrics = server.metrics();
    let sink_records = total(&metrics, "jobhost_records_in_total", "sink");
    assert!(
        sink_records >= committed_before,
        "{sink_records} < {committed_before}"
    );
    assert!(total(&metrics, "jobhost_records_out_total", "source") <= lines as f64);
    assert!(total(&metrics, "jobhost_busy_seconds_total", "counter") > 0.0);
    // A checkpoint completed before the scrape: the counter's snapshot took some time.
    let synced = total(&metrics, "jobhost_checkpoint_sync_seconds_total", "counter");
    assert!(synced > 0.0, "{synced}");
    assert!(total(&metrics, "jobhost_state_bytes", "counter") > 0.0);

    // Save through the API: a savepoint that `host inspect` verifies, listed as one.
    let saved = server.json("POST", &format!("/api/jobs/{job}/save"), 200);
    let savepoint = saved["id"].as_str().unwrap().to_owned();
    let inspected = dir.host_ok(&["inspect", &savepoint]);
    assert!(inspected.contains("all checksums verified"), "{inspected}");
    let points = server.json("GET", &format!("/api/savepoints?job={job}"), 200);
    assert!(
        points
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["savepoint"] == savepoint.as_str())
    );

    // Bad requests: JSON errors with the command line's messages and the right codes.
    let bad = server.json("GET", "/api/jobs/NOT..AN..ID", 400);
    assert!(
        bad["error"].as_str().unwrap().contains("bad job id"),
        "{bad}"
    );
    let missing = server.json("POST", "/api/jobs/job-nope/save", 404);
    assert_eq!(missing["error"], "no job `job-nope` (see `host list`)");
    let query = server.json("POST", &format!("/api/jobs/{job}/stop?save=maybe"), 400);
    assert!(query["error"].is_string(), "{query}");
    server.json("GET", "/api/nothing-here", 404);

    // stop --save ends the job; the output is exact, and the sink saw every committed line.
    let stopped = server.json("POST", &format!("/api/jobs/{job}/stop?save=true"), 200);
    assert!(stopped["savepoint"]["id"].is_string(), "{stopped}");
    let (code, stderr) = running.wait_code();
    assert_eq!(code, Some(0), "{stderr}");
    let committed = dir.committed_output();
    assert!(sink_records <= committed.len() as f64);
    let after = server.json("POST", &format!("/api/jobs/{job}/save"), 409);
    assert!(
        after["error"]
            .as_str()
            .unwrap()
            .contains("is not running (stopped with savepoint"),
        "{after}"
    );
    assert_eq!(server.json("GET", "/api/jobs", 200)[0]["running"], false);
}

/// A scrape shows the server up with no job running, as exporters do: the host's build, and
/// the state folder's jobs by state, every state listed (0 included).
#[test]
fn metrics_show_the_build_and_the_jobs_by_state_with_no_job_running() {
    let dir = Dir::new(100);
    let server = Server::start(&dir, &[]);
    let jobs_in = |metrics: &BTreeMap<_, f64>, state: &str| {
        let labels = BTreeMap::from([("state".to_owned(), state.to_owned())]);
        metrics.get(&("jobhost_jobs".to_owned(), labels)).copied()
    };
    let states = ["running", "crashed", "finished", "stopped", "failed"];
    let metrics = server.metrics();
    let version = env!("CARGO_PKG_VERSION").to_owned();
    let build = (
        "jobhost_build_info".to_owned(),
        BTreeMap::from([("version".to_owned(), version)]),
    );
    assert_eq!(metrics.get(&build), Some(&1.0), "{metrics:?}");
    for state in states {
        assert_eq!(jobs_in(&metrics, state), Some(0.0), "{state}: {metrics:?}");
    }

    // A job that ran to its end is counted as finished, and none as running.
    let job_file = dir.write_job(&WordCount::default());
    dir.start(&[job_file.to_str().unwrap()]).wait_ok();
    let metrics = server.metrics();
    for state in states {
        let expected = if state == "finished" { 1.0 } else { 0.0 };
        assert_eq!(
            jobs_in(&metrics, state),
            Some(expected),
            "{state}: {metrics:?}"
        );
    }
    assert_eq!(metrics.get(&build), Some(&1.0), "{metrics:?}");
    assert_eq!(server.json("GET", "/api/jobs", 200)[0]["phase"], "finished");
}

#[test]
fn a_token_is_required_off_loopback_and_checked_on_every_request() {
    let dir = Dir::new(10);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let off_loopback = dir.host(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(off_loopback.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&off_loopback.stderr);
    assert!(stderr.contains("requires --token-file"), "{stderr}");

    let server = Server::start(&dir, &["--token-file", token_file.to_str().unwrap()]);
    assert_eq!(server.token, "s3cret");
    assert!(!dir.home().join("serve-token").exists(), "none generated");
    for path in ["/api/jobs", "/metrics", "/"] {
        let (status, body) = server.call("GET", path, None);
        assert_eq!(status, 401, "{path}: {body}");
        let error = serde_json::from_str::<Value>(&body).unwrap()["error"].clone();
        assert!(
            error
                .as_str()
                .unwrap()
                .starts_with("missing or wrong token"),
            "{error}"
        );
        assert_eq!(server.call("GET", path, Some("wrong")).0, 401, "{path}");
        assert_eq!(server.call("GET", path, Some("s3cret")).0, 200, "{path}");
    }
    assert_eq!(server.call("GET", "/?token=s3cret", None).0, 200);
}

/// Every route, the API's, `/metrics`, the dashboard's and an unknown one.
const ROUTES: [(&str, &str); 12] = [
    ("GET", "/"),
    ("GET", "/api/jobs"),
    ("GET", "/api/jobs/job-nope"),
    ("GET", "/api/jobs/job-nope/metrics"),
    ("GET", "/api/jobs/job-nope/checkpoints"),
    ("POST", "/api/jobs/job-nope/save"),
    ("POST", "/api/jobs/job-nope/stop?save=true"),
    ("POST", "/api/jobs/job-nope/shadow"),
    ("GET", "/api/jobs/job-nope/shadow"),
    ("GET", "/api/savepoints"),
    ("GET", "/metrics"),
    ("GET", "/api/nothing-here"),
];

#[test]
fn every_route_needs_the_token_on_loopback_too() {
    let dir = Dir::new(10);
    let server = Server::start(&dir, &[]);
    let almost = &server.token[1..];
    for (method, path) in ROUTES {
        for token in [None, Some("wrong"), Some(almost)] {
            let (status, body) = server.call(method, path, token);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
        }
        let (status, body) = server.call(method, path, Some(&server.token));
        // 415: a shadow run asked without its JSON body, past the token.
        assert!(
            [200, 404, 415].contains(&status),
            "{method} {path}: {status} {body}"
        );
    }
    // `?token=` anywhere but `GET /` is refused, the right token too, with a bearer too.
    let token = server.token.as_str();
    let stop = format!("/api/jobs/job-nope/stop?token={token}");
    let page = format!("/?token={token}");
    let jobs = format!("/api/jobs?token={token}");
    let refused = [
        ("POST", &stop, None),
        ("POST", &page, None),
        ("GET", &jobs, Some(token)),
    ];
    for (method, path, bearer) in refused {
        let (status, body) = server.call(method, path, bearer);
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert!(body.contains("is taken by `GET /`"), "{body}");
    }
}

#[test]
fn the_generated_token_is_owner_only_reused_and_its_address_signs_the_browser_in() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = Dir::new(10);
    let server = Server::start(&dir, &[]);
    let file = dir.home().join("serve-token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let token = server.token.clone();
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );

    // The printed address (with a `job=` beside it): the page, and the cookie for the rest.
    let page = server.send("GET", &format!("/?job=job-a&token={token}"), &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<title>jobhost</title>"));
    let set_cookie = page.head.lines().find_map(|l| {
        let (name, value) = l.split_once(": ")?;
        name.eq_ignore_ascii_case("set-cookie").then_some(value)
    });
    let set_cookie = set_cookie.unwrap_or_else(|| panic!("no cookie:\n{}", page.head));
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let port = server.addr.rsplit_once(':').unwrap().1;
    let cookie = set_cookie.split(';').next().unwrap();
    assert!(
        cookie.starts_with(&format!("jobhost-token-{port}=")),
        "{cookie}"
    );
    let with_cookie = format!("Cookie: {cookie}");
    let ours = format!("Origin: http://{}", server.addr);
    assert_eq!(server.send("GET", "/", &[&with_cookie]).status, 200);
    assert_eq!(server.send("GET", "/api/jobs", &[&with_cookie]).status, 200);
    let save = server.send("POST", "/api/jobs/job-nope/save", &[&with_cookie, &ours]);
    assert_eq!(save.status, 404, "past the checks: {}", save.body);
    // The last hex digit changed (to another digit: a `0` made `0` again would be no forgery).
    let last = if with_cookie.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &with_cookie[..with_cookie.len() - 1]);
    assert_eq!(server.send("GET", "/api/jobs", &[&forged]).status, 401);
    let wrong = server.send("GET", "/?token=wrong", &[]);
    assert_eq!(wrong.status, 401);
    assert!(!wrong.head.to_ascii_lowercase().contains("set-cookie"));

    // Started again: the same token.
    drop(server);
    assert_eq!(Server::start(&dir, &[]).token, token);
}

#[test]
fn a_request_addressed_to_another_host_is_refused() {
    let dir = Dir::new(10);
    let server = Server::start(&dir, &[]);
    let bearer = format!("Authorization: Bearer {}", server.token);
    let port = server.addr.rsplit_once(':').unwrap().1;
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("127.0.0.2:{port}"),
    ] {
        let answer = server.send("GET", "/api/jobs", &[&format!("Host: {host}"), &bearer]);
        assert_eq!(answer.status, 403, "{host}: {}", answer.body);
        let error = serde_json::from_str::<Value>(&answer.body).unwrap()["error"].clone();
        assert!(
            error.as_str().unwrap().contains("not to this server"),
            "{error}"
        );
    }
    let localhost = format!("Host: localhost:{port}");
    assert_eq!(
        server
            .send("GET", "/api/jobs", &[&localhost, &bearer])
            .status,
        200
    );
}

#[test]
fn a_stop_from_another_site_is_refused_and_the_job_runs_on() {
    let dir = Dir::new(30_000);
    let job_file = dir.write_job(&WordCount::default());
    let mut running = dir.start(&[job_file.to_str().unwrap()]);
    let server = Server::start(&dir, &[]);
    let job = running.job.clone();
    let bearer = format!("Authorization: Bearer {}", server.token);
    let stop = format!("/api/jobs/{job}/stop");
    for origin in ["Origin: http://evil.example", "Origin: null"] {
        for path in [stop.as_str(), &format!("/api/jobs/{job}/save")] {
            let answer = server.send("POST", path, &[&bearer, origin]);
            assert_eq!(answer.status, 403, "{origin} {path}: {}", answer.body);
            assert!(answer.body.contains("another site"), "{}", answer.body);
        }
    }
    // The job runs on: its process lives, and its sink keeps taking records.
    let sink_in = || -> u64 {
        let metrics = server.json("GET", &format!("/api/jobs/{job}/metrics"), 200);
        let subtasks = metrics["subtasks"].as_array().unwrap().clone();
        let sink = subtasks.iter().filter(|s| s["operator"] == "sink");
        sink.map(|s| s["records_in"].as_u64().unwrap()).sum()
    };
    let first = sink_in();
    wait_until("the sink's records in rise", || sink_in() > first);
    assert!(running.child.try_wait().unwrap().is_none(), "the job ended");
    assert_eq!(
        server.json("GET", &format!("/api/jobs/{job}"), 200)["state"],
        "running"
    );

    // From the server's own origin, the same request stops it.
    let ours = format!("Origin: http://{}", server.addr);
    let answer = server.send("POST", &stop, &[&bearer, &ours]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let (code, stderr) = running.wait_code();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn the_dashboard_shows_rates_its_save_button_makes_a_savepoint_and_it_runs_a_shadow_run() {
    let dir = Dir::new(30_000);
    let job_file = dir.write_job(&WordCount::default());
    let wrong = crate::shadow::job_with_counter(&job_file, "counter_v3_wrong");
    let running = dir.start(&[job_file.to_str().unwrap()]);
    let server = Server::start(&dir, &[]);
    let screenshot = crate::util::target_dir().join("dashboard.png");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser/dashboard.py");
    // The address `host serve` printed, with `job=`: the page drops the token from it.
    let url = format!(
        "http://{}/?job={}&token={}",
        server.addr, running.job, server.token
    );
    let output = Command::new("python3")
        .args([script, &url, screenshot.to_str().unwrap()])
        .args([&job_file, &wrong])
        .output()
        .expect("python3 runs the browser (tests/browser/setup.sh installs chromium)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    let address = format!("http://{}/?job={}", server.addr, running.job);
    assert_eq!(seen["address"], address.as_str(), "{seen}");
    assert_eq!(
        seen["edge_labels"].as_array().map(Vec::len),
        Some(3),
        "{seen}"
    );
    assert_eq!(
        seen["clipped"],
        serde_json::json!([]),
        "operators cut off: {seen}"
    );
    let (before, after) = (&seen["savepoints_before"], &seen["savepoints_after"]);
    let new: Vec<&Value> = after
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !before.as_array().unwrap().contains(s))
        .collect();
    assert_eq!(new.len(), 1, "{seen}");
    let inspected = dir.host_ok(&["inspect", new[0].as_str().unwrap()]);
    assert!(inspected.contains("all checksums verified"), "{inspected}");
    // The shadow run from the job's latest point, the counter that counts wrong against the
    // running one: the page shows that they differ, and where.
    assert_eq!(seen["shadow_outcome"], "differs", "{seen}");
    let sink = &seen["shadow_sinks"][0];
    assert_eq!(sink[0], "sink", "{seen}");
    assert_eq!(sink[1], sink[2], "as many records, other values: {seen}");
    assert_ne!(sink[3], "0", "{seen}");
    let latest = server.json("GET", &format!("/api/jobs/{}/shadow", running.job), 200);
    assert_eq!(latest["outcome"], "differs", "{latest}");
    assert_eq!(latest["request"]["records"], 50, "{latest}");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
    dir.host_ok(&["stop", &running.job]);
    assert_eq!(running.wait_code().0, Some(0));
}
