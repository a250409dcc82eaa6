//! The real servers the connector tests run against: a NATS server with JetStream and a
//! PostgreSQL server (two-phase commit allowed), installed if missing by
//! `tests/servers/install.sh` and started once per test process by `tests/servers/nats.sh` and
//! `tests/servers/postgres.sh`, on free ports of 127.0.0.1, with their data under
//! `<target-dir>/servers/<pid>/`. They end with the test process (a parent-death signal). Each
//! test makes its own stream and database, so that tests share the servers and not their data.
//! A second PostgreSQL server, with `max_prepared_transactions = 0`, starts only for the test
//! that needs one, and a Kafka-compatible broker (tansu) only for the Kafka tests ([`kafka`]).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::util::target_dir;

/// Longest a server may take to accept connections.
const SERVER_START_MAX: Duration = Duration::from_secs(60);
/// The role the connectors log in as (the superuser `postgres` is the tests' own).
pub const PG_ROLE: &str = "jobhost";
/// The environment variable the tests' job files name for its password.
pub const PG_PASSWORD_ENV: &str = "JOBHOST_TEST_PG_PASSWORD";

/// The servers of this test process.
pub struct Servers {
    /// The NATS server's port.
    pub nats: u16,
    /// The PostgreSQL server's port.
    pub postgres: u16,
    /// The password of [`PG_ROLE`]: made up per process, so that a test can look for it
    /// wherever it must not be.
    pub pg_password: String,
}

/// The servers, started on first use.
pub fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        install();
        let (nats, postgres) = (free_port(), free_port());
        let dir = process_dir();
        keep_running(vec![
            script("nats.sh", &[&dir.join("nats"), &nats.to_string()]),
            script(
                "postgres.sh",
                &[&dir.join("postgres"), &postgres.to_string(), &"64"],
            ),
        ]);
        wait_for_port(nats, "nats-server");
        wait_for_postgres(postgres);
        let pg_password = format!("pw-{:x}-{}", random(), std::process::id());
        create_role(postgres, &pg_password);
        Servers {
            nats,
            postgres,
            pg_password,
        }
    })
}

/// A PostgreSQL server with `max_prepared_transactions = 0`, started on first use.
pub fn postgres_without_prepared_transactions() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        install();
        let port = free_port();
        let dir = process_dir().join("postgres-no-2pc");
        keep_running(vec![script(
            "postgres.sh",
            &[&dir, &port.to_string(), &"0"],
        )]);
        wait_for_postgres(port);
        create_role(port, &servers().pg_password);
        port
    })
}

/// The port of a Kafka-compatible broker (tansu, in-memory storage), installed if missing by
/// `tests/servers/install-tansu.sh` (a `cargo install`, once per machine) and started by
/// `tests/servers/kafka.sh` on first use, apart from the other servers: only the Kafka tests
/// pay for it.
pub fn kafka() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let lock = target_dir().join("servers/install-tansu.lock");
        let status = script("install-tansu.sh", &[&lock])
            .status()
            .expect("running install-tansu.sh");
        assert!(status.success(), "tests/servers/install-tansu.sh failed");
        let port = free_port();
        let dir = process_dir().join("kafka");
        keep_running(vec![script("kafka.sh", &[&dir, &port.to_string()])]);
        wait_for_port(port, "tansu");
        port
    })
}

/// Creates [`PG_ROLE`] on the server at `port`, with `password`.
fn create_role(port: u16, password: &str) {
    let role = format!("CREATE ROLE {PG_ROLE} LOGIN PASSWORD '{password}'");
    psql(port, "postgres", &role);
}

/// Installs the servers if missing (once per process; the script skips what is installed).
fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let lock = target_dir().join("servers/install.lock");
        let status = script("install.sh", &[&lock])
            .status()
            .expect("running install.sh");
        assert!(status.success(), "tests/servers/install.sh failed");
    });
}

/// `tests/servers/NAME ARGS`.
fn script(name: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/servers")
        .join(name);
    let mut command = Command::new("bash");
    command.arg(path).args(args.iter().map(|a| a.as_ref()));
    command
}

/// This process's folder of server data; those of processes that have ended are removed.
fn process_dir() -> PathBuf {
    let servers = target_dir().join("servers");
    std::fs::create_dir_all(&servers).unwrap();
    for entry in std::fs::read_dir(&servers).unwrap() {
        let path = entry.unwrap().path();
        let pid = path
            .file_name()
            .and_then(|n| n.to_str()?.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    servers.join(std::process::id().to_string())
}

/// Starts `commands` from a thread that lives as long as the process: their parent-death
/// signal is sent when the thread that started them ends, which must be at the process's end.
fn keep_running(commands: Vec<Command>) {
    let (started, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let children: Vec<_> = commands
            .into_iter()
            .map(|mut command| {
                command.stdout(Stdio::null()).stderr(Stdio::null());
                command.spawn().expect("starting a server")
            })
            .collect();
        started.send(()).unwrap();
        let _children = children;
        loop {
            std::thread::park();
        }
    });
    done.recv().unwrap();
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < SERVER_START_MAX,
            "{what} did not listen on 127.0.0.1:{port} within {SERVER_START_MAX:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_postgres(port: u16) {
    wait_for_port(port, "postgres");
    let started = Instant::now();
    while !run_psql(port, "postgres", "SELECT 1").status.success() {
        assert!(
            started.elapsed() < SERVER_START_MAX,
            "postgres on 127.0.0.1:{port} did not answer within {SERVER_START_MAX:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_psql(port: u16, database: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args([
            "-d",
            database,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-c", sql])
        .output()
        .expect("running psql")
}

/// Runs `sql` as the superuser in `database`; returns its rows, one line each.
pub fn psql(port: u16, database: &str, sql: &str) -> Vec<String> {
    let output = run_psql(port, database, sql);
    assert!(
        output.status.success(),
        "psql `{sql}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines().map(str::to_owned).collect()
}

/// A name no other test of any process uses: `prefix`, the process id and a counter.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}", std::process::id())
}

fn random() -> u64 {
    use std::hash::BuildHasher as _;
    std::hash::RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A database of its own for one test, on `port`, owned by [`PG_ROLE`], with the table
/// `counts (key text, value text, ts bigint)`.
pub struct Database {
    /// Its server's port.
    pub port: u16,
    /// Its name.
    pub name: String,
}

impl Database {
    /// A fresh database on the tests' server.
    pub fn new() -> Database {
        Database::on(servers().postgres)
    }

    /// A fresh database on the server at `port`.
    pub fn on(port: u16) -> Database {
        let name = unique("db");
        psql(
            port,
            "postgres",
            &format!("CREATE DATABASE {name} OWNER {PG_ROLE}"),
        );
        let database = Database { port, name };
        database.sql(&format!(
            "CREATE TABLE counts (key text, value text, ts bigint); \
             ALTER TABLE counts OWNER TO {PG_ROLE}"
        ));
        database
    }

    /// Runs `sql` in it, as the superuser; returns the rows.
    pub fn sql(&self, sql: &str) -> Vec<String> {
        psql(self.port, &self.name, sql)
    }

    /// The URL a connector reaches it at (no password: the job file names where that is).
    pub fn url(&self) -> String {
        format!("postgres://{PG_ROLE}@127.0.0.1:{}/{}", self.port, self.name)
    }

    /// Every value of `counts`.
    pub fn values(&self) -> Vec<String> {
        self.sql("SELECT value FROM counts")
    }

    /// The global ids of the transactions prepared in it and not yet resolved.
    pub fn prepared(&self) -> Vec<String> {
        self.sql(&format!(
            "SELECT gid FROM pg_prepared_xacts WHERE database = '{}' ORDER BY gid",
            self.name
        ))
    }
}

/// A client of the tests' NATS server, for what a test publishes and reads back.
pub struct Nats {
    runtime: tokio::runtime::Runtime,
    context: async_nats::jetstream::Context,
}

impl Nats {
    /// Connected to the tests' server.
    pub fn connect() -> Nats {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = Nats::url();
        let client = runtime.block_on(async_nats::connect(&url)).unwrap();
        let context = {
            let _entered = runtime.enter();
            async_nats::jetstream::new(client)
        };
        Nats { runtime, context }
    }

    /// The server's URL.
    pub fn url() -> String {
        format!("nats://127.0.0.1:{}", servers().nats)
    }

    /// Creates stream `name` storing `subjects`, deduplicating for `duplicate_window`.
    pub fn create_stream(&self, name: &str, subjects: &[&str], duplicate_window: Duration) {
        let config = async_nats::jetstream::stream::Config {
            name: name.to_owned(),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            duplicate_window,
            ..Default::default()
        };
        self.runtime
            .block_on(self.context.create_stream(config))
            .unwrap();
    }

    /// Publishes each of `payloads` to `subject`, waiting for each acknowledgement.
    pub fn publish<'a>(&self, subject: &str, payloads: impl IntoIterator<Item = &'a str>) {
        self.runtime.block_on(async {
            for payload in payloads {
                let subject = subject.to_owned();
                let payload = bytes::Bytes::copy_from_slice(payload.as_bytes());
                let ack = self.context.publish(subject, payload).await.unwrap();
                ack.await.unwrap();
            }
        });
    }

    /// Every message of stream `name`, in order, as text.
    pub fn messages(&self, name: &str) -> Vec<String> {
        self.runtime.block_on(async {
            let stream = self.context.get_stream(name).await.unwrap();
            let last = stream.cached_info().state.last_sequence;
            let mut out = Vec::new();
            for sequence in 1..=last {
                let message = stream.get_raw_message(sequence).await.unwrap();
                out.push(String::from_utf8(message.payload.to_vec()).unwrap());
            }
            out
        })
    }
}
