//! The token every request to `host serve` presents: the first line of `--token-file`, or one
//! generated on the first start into the state folder (`serve-token`, owner-only: 0600, in a
//! folder created 0700) and reused on every later start, as Jupyter does.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::ServeError;
use crate::durable;
use crate::store::Layout;

/// Bytes of randomness in a generated token (written as twice as many hex digits).
const TOKEN_BYTES: usize = 32;

/// Reads the token (its first line, trimmed) from `path`.
pub fn read(path: &Path) -> Result<String, ServeError> {
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

/// The state folder's token: read from `serve-token`, or generated into it if there is none.
pub fn load_or_create(layout: &Layout) -> Result<String, ServeError> {
    let path = layout.serve_token();
    if !path.exists() {
        create(layout.root(), &path).map_err(|source| ServeError::TokenCreate {
            path: path.clone(),
            source,
        })?;
    }
    read(&path)
}

/// Writes a new token to `path` (owner-only) in one step: a crash leaves no file or a whole
/// one, and of two servers starting at once the first one's token stays.
fn create(root: &Path, path: &Path) -> std::io::Result<()> {
    durable::create_dir(root)?;
    let mut file = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(root)?;
    writeln!(file, "{}", generate())?;
    file.as_file().sync_all()?;
    match file.persist_noclobber(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.error),
    }
}

/// A new random token: 32 bytes from `rand`'s cryptographically secure generator (ChaCha,
/// seeded by the operating system), in hex.
fn generate() -> String {
    hex::encode(rand::random::<[u8; TOKEN_BYTES]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("home"));
        let first = load_or_create(&layout).unwrap();
        assert_eq!(first.len(), 2 * TOKEN_BYTES);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(layout.serve_token())
            .unwrap()
            .permissions();
        assert_eq!(mode.mode() & 0o777, 0o600);
        assert_eq!(load_or_create(&layout).unwrap(), first);
        assert_ne!(generate(), first);
    }
}
