//! The escape modes (`read-outside`, `write-read-only`, `network`): each tries every way out
//! of its grants it knows, after doing what the grants allow, and reports every attempt.

use std::fs;
use std::io::Write;
use std::time::{Duration, SystemTime};

use crate::Config;

/// What the attempts of an escape mode came to.
#[derive(Default)]
pub(crate) struct Attempts {
    /// What the grants do allow, done first so that a denial cannot be a broken grant.
    allowed: Vec<String>,
    denied: Vec<String>,
    escaped: Vec<String>,
}

impl Attempts {
    /// Records attempt `what`: denied if it failed.
    fn attempt<T, E: std::fmt::Display>(
        &mut self,
        what: &str,
        result: Result<T, E>,
        success: impl FnOnce(T) -> String,
    ) {
        match result {
            Ok(value) => self.escaped.push(format!("{what}: {}", success(value))),
            Err(e) => self.denied.push(format!("{what}: {e}")),
        }
    }

    /// Does `what`, which the grants allow: an error if it fails.
    fn control<T, E: std::fmt::Display>(
        &mut self,
        what: &str,
        result: Result<T, E>,
    ) -> Result<(), String> {
        match result {
            Ok(_) => {
                self.allowed.push(what.to_owned());
                Ok(())
            }
            Err(e) => Err(format!(
                "hostile: cannot {what}, which the grants allow: {e}"
            )),
        }
    }

    /// The error `process` returns.
    pub(crate) fn report(self) -> String {
        if self.escaped.is_empty() {
            format!(
                "hostile: denied {} attempts (allowed: {}): {}",
                self.denied.len(),
                self.allowed.join("; "),
                self.denied.join("; ")
            )
        } else {
            let report = format!(
                "hostile: escaped: {} (denied: {})",
                self.escaped.join("; "),
                self.denied.join("; ")
            );
            eprintln!("{report}");
            report
        }
    }
}

pub(crate) fn read_outside(config: &Config) -> Result<Attempts, String> {
    let mut attempts = Attempts::default();
    for path in config.list("control") {
        attempts.control(&format!("read {path}"), fs::read(path))?;
    }
    for path in config.list("paths") {
        attempts.attempt(&format!("read {path}"), fs::read(path), |bytes| {
            format!("read `{}`", String::from_utf8_lossy(&bytes))
        });
        attempts.attempt(&format!("stat {path}"), fs::metadata(path), |meta| {
            format!("{} bytes", meta.len())
        });
    }
    for dir in config.list("dirs") {
        attempts.attempt(&format!("list {dir}"), fs::read_dir(dir), |entries| {
            let names: Vec<String> = entries
                .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect();
            format!("listed {names:?}")
        });
    }
    if let [link_dir] = config.list("link_dir") {
        for (n, target) in config.list("link_targets").iter().enumerate() {
            let link = format!("{link_dir}/hostile-link-{n}");
            // The guest may make a symlink in its writable folder (not an escape either way);
            // following it out of the grant must not work.
            match symlink(target, &link) {
                Ok(()) => attempts.allowed.push(format!("make {link} -> {target}")),
                Err(e) => attempts
                    .denied
                    .push(format!("make {link} -> {target}: {e}")),
            }
            attempts.attempt(
                &format!("read {link} -> {target}"),
                fs::read(&link),
                |bytes| format!("read `{}`", String::from_utf8_lossy(&bytes)),
            );
        }
    }
    Ok(attempts)
}

pub(crate) fn write_read_only(config: &Config) -> Result<Attempts, String> {
    let dir = config.one("dir")?;
    let file = format!("{dir}/{}", config.one("file")?);
    let subdir = format!("{dir}/{}", config.one("subdir")?);
    let writable = config.one("writable_dir")?;
    let mut a = Attempts::default();
    a.control(&format!("read {file}"), fs::read(&file))?;
    let control = format!("{writable}/hostile-control.txt");
    a.control(&format!("write {control}"), fs::write(&control, b"hostile"))?;
    let done = |()| "done".to_owned();
    let new = format!("{dir}/hostile-new.txt");
    a.attempt(&format!("create {new}"), fs::write(&new, b"hostile"), done);
    a.attempt(
        &format!("create-new {new}"),
        fs::File::create_new(&new).map(drop),
        done,
    );
    a.attempt(
        &format!("write {file}"),
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|mut f| f.write_all(b"hostile")),
        done,
    );
    a.attempt(
        &format!("append to {file}"),
        fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .and_then(|mut f| f.write_all(b"hostile")),
        done,
    );
    a.attempt(
        &format!("truncate {file}"),
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&file)
            .map(drop),
        done,
    );
    a.attempt(
        &format!("set_len {file}"),
        fs::File::open(&file).and_then(|f| f.set_len(0)),
        done,
    );
    a.attempt(
        &format!("retime {file}"),
        fs::File::open(&file)
            .and_then(|f| f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_234))),
        done,
    );
    a.attempt(
        &format!("rename {file} in place"),
        fs::rename(&file, format!("{dir}/hostile-renamed.txt")),
        done,
    );
    a.attempt(
        &format!("move {file} to {writable}"),
        fs::rename(&file, format!("{writable}/hostile-moved.txt")),
        done,
    );
    let link = format!("{writable}/hostile-hard-link.txt");
    a.attempt(
        &format!("hard-link {file} into {writable}"),
        fs::hard_link(&file, &link).and_then(|()| fs::write(&link, b"hostile")),
        done,
    );
    let inbound = format!("{writable}/hostile-inbound.txt");
    a.attempt(
        &format!("move {inbound} into {dir}"),
        fs::write(&inbound, b"hostile")
            .and_then(|()| fs::rename(&inbound, format!("{dir}/hostile-inbound.txt"))),
        done,
    );
    a.attempt(&format!("remove {file}"), fs::remove_file(&file), done);
    a.attempt(
        &format!("create folder {dir}/hostile-dir"),
        fs::create_dir(format!("{dir}/hostile-dir")),
        done,
    );
    a.attempt(
        &format!("remove folder {subdir}"),
        fs::remove_dir(&subdir),
        done,
    );
    a.attempt(
        &format!("symlink {dir}/hostile-symlink"),
        symlink("x", &format!("{dir}/hostile-symlink")),
        done,
    );
    Ok(a)
}

pub(crate) fn network(config: &Config) -> Result<Attempts, String> {
    use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
    let port: u16 = config
        .one("port")?
        .parse()
        .map_err(|e| format!("config key `port`: {e}"))?;
    let udp_port: u16 = config
        .one("udp_port")?
        .parse()
        .map_err(|e| format!("config key `udp_port`: {e}"))?;
    let mut a = Attempts::default();
    a.attempt(
        &format!("tcp connect 127.0.0.1:{port}"),
        TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| s.write_all(b"hostile")),
        |()| "connected".to_owned(),
    );
    a.attempt(
        &format!("udp send to 127.0.0.1:{udp_port}"),
        UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"hostile", ("127.0.0.1", udp_port))),
        |n| format!("sent {n} bytes"),
    );
    a.attempt(
        "tcp listen on 127.0.0.1:0",
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()),
        |addr| format!("listening on {addr}"),
    );
    a.attempt(
        "look up localhost",
        ("localhost", port).to_socket_addrs(),
        |addrs| format!("resolved to {:?}", addrs.collect::<Vec<_>>()),
    );
    Ok(a)
}

/// Makes symlink `link` pointing to `target` (Rust's own `symlink_path` is unstable on WASI).
#[allow(unsafe_code)]
fn symlink(target: &str, link: &str) -> std::io::Result<()> {
    use std::ffi::{CString, c_char, c_int};
    unsafe extern "C" {
        // wasi-libc's, which Rust's standard library links on wasm32-wasip2.
        fn symlink(target: *const c_char, link: *const c_char) -> c_int;
    }
    let target = CString::new(target)?;
    let link = CString::new(link)?;
    // SAFETY: both are NUL-terminated strings that outlive the call.
    if unsafe { symlink(target.as_ptr(), link.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
