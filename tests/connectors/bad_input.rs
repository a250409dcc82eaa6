//! Connectors given what cannot work: a server that is down, a stream or a table that does not
//! exist, a wrong password, a server that keeps no prepared transactions, a stream that
//! deduplicates too briefly. Each is refused before the job starts, with an error naming the
//! thing at fault (never the secret), and changes nothing; the job then runs, once fixed, and
//! loses nothing. A password given through the environment lands in no file and no log line.

use std::path::Path;

use super::{Pipeline, Sink, scratch, stream_of};
use crate::servers::{
    Database, Nats, PG_PASSWORD_ENV, postgres_without_prepared_transactions, servers, unique,
};
use crate::util::{Dir, assert_exactly_once, input_text};

const LINES: usize = 500;

/// Every file under `folder` (recursively) that contains `needle`.
fn files_containing(folder: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![folder.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn a_server_down_at_start_is_named_and_once_up_the_job_loses_nothing() {
    let nats = Nats::connect();
    let input = input_text(LINES);
    let (stream, subject) = stream_of(&nats, &input);
    let database = Database::new();
    let dir = scratch();
    let down = Database {
        port: std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
        name: database.name.clone(),
    };
    let job_file = Pipeline::new(&stream, &subject, Sink::Postgres(&down)).write(&dir);
    let address = format!(
        "cannot connect to postgres://jobhost@127.0.0.1:{}/",
        down.port
    );
    dir.refused(
        &["run", &job_file],
        &["operator `sink`", &address, "3 attempts"],
    );
    let job_file = Pipeline::new(&stream, &subject, Sink::Postgres(&database)).write(&dir);
    // Logging everything, so that a secret in any log line would show.
    let dir = dir.with_env(&[("HOST_LOG".to_owned(), "debug".to_owned())]);
    let running = dir.start(&[&job_file]);
    let (ok, stderr) = running.wait();
    assert!(ok, "{stderr}");
    assert_exactly_once(&database.values(), &input);
    let password = &servers().pg_password;
    assert!(
        !stderr.contains(password.as_str()),
        "the password is in the log"
    );
    assert_eq!(files_containing(dir.path(), password), Vec::<String>::new());
}

#[test]
fn a_missing_stream_or_table_is_named() {
    let database = Database::new();
    let dir = scratch();
    let job_file = Pipeline::new("NO_SUCH_STREAM", "x", Sink::Postgres(&database)).write(&dir);
    dir.refused(
        &["run", &job_file],
        &["stream `NO_SUCH_STREAM` does not exist"],
    );
    let nats = Nats::connect();
    let (stream, subject) = stream_of(&nats, "a line\n");
    database.sql("DROP TABLE counts");
    let job_file = Pipeline::new(&stream, &subject, Sink::Postgres(&database)).write(&dir);
    dir.refused(&["run", &job_file], &["table `counts`: does not exist"]);
}

#[test]
fn a_wrong_password_is_refused_naming_the_user_and_never_printed() {
    let nats = Nats::connect();
    let (stream, subject) = stream_of(&nats, "a line\n");
    let database = Database::new();
    let wrong = format!("wrong-{}", unique("pw"));
    let dir = Dir::new(0).with_env(&[(PG_PASSWORD_ENV.to_owned(), wrong.clone())]);
    let job_file = Pipeline::new(&stream, &subject, Sink::Postgres(&database)).write(&dir);
    let stderr = dir.refused(
        &["run", &job_file],
        &["password authentication failed for user \"jobhost\""],
    );
    assert!(!stderr.contains(&wrong), "{stderr}");
    let unset = Dir::new(0);
    let job_file = Pipeline::new(&stream, &subject, Sink::Postgres(&database)).write(&unset);
    unset.refused(
        &["run", &job_file],
        &[&format!(
            "environment variable `{PG_PASSWORD_ENV}` (its secret) is not set"
        )],
    );
}

#[test]
fn a_server_without_prepared_transactions_is_refused_naming_the_setting() {
    let nats = Nats::connect();
    let (stream, subject) = stream_of(&nats, "a line\n");
    let database = Database::on(postgres_without_prepared_transactions());
    let dir = scratch();
    let job_file = Pipeline::new(&stream, &subject, Sink::Postgres(&database)).write(&dir);
    dir.refused(&["run", &job_file], &["max_prepared_transactions is 0"]);
}

#[test]
fn a_stream_that_deduplicates_too_briefly_for_a_repeated_commit_is_refused() {
    let nats = Nats::connect();
    let (stream, subject) = stream_of(&nats, "a line\n");
    let out = unique("BRIEF");
    let out_subject = format!("{}.out", out.to_lowercase());
    nats.create_stream(&out, &[&out_subject], std::time::Duration::from_secs(1));
    let dir = scratch();
    let sink = Sink::Nats {
        stream: &out,
        subject: &out_subject,
    };
    let job_file = Pipeline::new(&stream, &subject, sink).write(&dir);
    dir.refused(
        &["run", &job_file],
        &[&format!(
            "stream `{out}` deduplicates messages for 1000 ms, less than the 120000 ms"
        )],
    );
}

#[test]
fn a_password_in_the_job_file_is_refused_before_anything_is_recorded() {
    let database = Database::new();
    let dir = scratch();
    let url = database.url().replace("jobhost@", "jobhost:hunter2@");
    let job_file = Pipeline::new("S", "s", Sink::Postgres(&database)).write(&dir);
    crate::util::replace_in(Path::new(&job_file), &database.url(), &url);
    let stderr = dir.refused(&["run", &job_file], &["`url` holds a password"]);
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
