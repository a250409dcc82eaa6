//! The servers the connector rows run against, as the connector tests run them: installed if
//! missing by `tests/servers/install.sh` (idempotent), started by `tests/servers/nats.sh` and
//! `tests/servers/postgres.sh` on free ports of 127.0.0.1, their data under
//! `<scratch>/servers`. They end with this process (their parent-death signal fires when the
//! thread that started them ends, which is at the process's end). When they cannot be installed
//! or started, [`Servers::start`] says why, and the rows are skipped with that line.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Longest a server may take to accept connections.
const START_MAX: Duration = Duration::from_secs(60);

/// A NATS server with JetStream and a PostgreSQL server, running.
pub struct Servers {
    /// The NATS server's port.
    pub nats: u16,
    /// The PostgreSQL server's port (superuser `postgres`, no password from 127.0.0.1).
    pub postgres: u16,
}

/// `tests/servers/` of this source tree.
fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/servers")
}

fn script(name: &str, args: &[&str]) -> Command {
    let mut command = Command::new("bash");
    command.arg(scripts().join(name)).args(args);
    command
}

impl Servers {
    /// Installs (if missing) and starts both servers, data under `dir`.
    pub fn start(dir: &Path, target_dir: &Path) -> anyhow::Result<Servers> {
        let lock = target_dir.join("servers/install.lock");
        let lock = lock.to_str().context("a target dir that is not UTF-8")?;
        let installed = script("install.sh", &[lock])
            .stdout(Stdio::null())
            .output()
            .context("running tests/servers/install.sh")?;
        if !installed.status.success() {
            bail!(
                "tests/servers/install.sh failed: {}",
                String::from_utf8_lossy(&installed.stderr).trim()
            );
        }
        let (nats, postgres) = (free_port()?, free_port()?);
        let (nats_dir, pg_dir) = (dir.join("nats"), dir.join("postgres"));
        keep_running(vec![
            script("nats.sh", &[path(&nats_dir)?, &nats.to_string()]),
            script("postgres.sh", &[path(&pg_dir)?, &postgres.to_string(), "8"]),
        ])?;
        wait_for_port(nats, "nats-server")?;
        wait_for_port(postgres, "postgres")?;
        let servers = Servers { nats, postgres };
        let started = Instant::now();
        while servers.psql("postgres", "SELECT 1").is_err() {
            if started.elapsed() > START_MAX {
                bail!("postgres on 127.0.0.1:{postgres} did not answer within {START_MAX:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(servers)
    }

    /// The NATS server's URL.
    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.nats)
    }

    /// The URL of `database` as the superuser (no password).
    pub fn postgres_url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.postgres)
    }

    /// Runs `sql` in `database` with `psql`, as the superuser; returns its rows.
    pub fn psql(&self, database: &str, sql: &str) -> anyhow::Result<Vec<String>> {
        let port = self.postgres.to_string();
        let output = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .context("running psql")?;
        if !output.status.success() {
            bail!(
                "psql `{sql}`: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("a scratch path that is not UTF-8")
}

/// Starts `commands` from a thread that lives as long as the process (their parent-death
/// signal is sent when that thread ends).
fn keep_running(commands: Vec<Command>) -> anyhow::Result<()> {
    let (started, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut children = Vec::new();
        for mut command in commands {
            command.stdout(Stdio::null()).stderr(Stdio::null());
            match command.spawn() {
                Ok(child) => children.push(child),
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            }
        }
        let _ = started.send(Ok(()));
        loop {
            std::thread::park();
        }
    });
    done.recv()?.context("starting a server")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(port: u16, what: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > START_MAX {
            bail!("{what} did not listen on 127.0.0.1:{port} within {START_MAX:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
