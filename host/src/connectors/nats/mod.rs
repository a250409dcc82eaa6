//! NATS JetStream: a source that reads a stream in order from the sequence its checkpoint
//! holds ([`source`]), and a sink that publishes each checkpoint's records at commit with
//! message ids the stream deduplicates ([`sink`]). Both connect here.

pub mod sink;
pub mod source;

use async_nats::jetstream::{self, stream::Stream};

use super::config::NatsAuth;
use super::{Cause, Setup, connect_with_backoff};

/// A JetStream context on `url` for `setup`'s subtask, authenticated as `auth` says with its
/// secret, and `stream` on it.
async fn connect(
    setup: &Setup<'_>,
    url: &str,
    auth: &NatsAuth,
    stream: &str,
) -> Result<(jetstream::Context, Stream), Cause> {
    let name = format!("jobhost {}", setup.subtask);
    let client = connect_with_backoff(url, || {
        let options = match (auth, setup.secret) {
            (NatsAuth::UserPassword { user, .. }, Some(password)) => {
                async_nats::ConnectOptions::with_user_and_password(
                    user.clone(),
                    password.expose().to_owned(),
                )
            }
            (NatsAuth::Token(_), Some(token)) => {
                async_nats::ConnectOptions::with_token(token.expose().to_owned())
            }
            _ => async_nats::ConnectOptions::new(),
        };
        options.name(&name).connect(url)
    })
    .await?;
    let context = jetstream::new(client);
    let stream = get_stream(&context, url, stream).await?;
    Ok((context, stream))
}

/// Stream `name` on the server at `url`, or why not.
async fn get_stream(context: &jetstream::Context, url: &str, name: &str) -> Result<Stream, Cause> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::GetStreamErrorKind;
    match context.get_stream(name).await {
        Ok(stream) => Ok(stream),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(error)
                if error.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Err(Cause::NoStream {
                    stream: name.to_owned(),
                    url: url.to_owned(),
                })
            }
            _ => Err(Cause::nats("reading the stream's configuration")(Box::new(
                e,
            ))),
        },
    }
}
