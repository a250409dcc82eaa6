//! `--store s3://bucket/prefix`: where the points live, read. Performs no I/O.

/// `s3://bucket/prefix`, read. Performs no I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreUrl {
    /// The bucket.
    pub bucket: String,
    /// The prefix under which every key goes (may be empty), without slashes at either end.
    pub prefix: String,
}

/// Why a `--store` URL is refused; each names the URL as given.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    /// Not an `s3://` URL.
    #[error("`{0}`: expected s3://bucket/prefix")]
    NotS3(String),
    /// `s3://` and no bucket.
    #[error("`{0}`: no bucket")]
    NoBucket(String),
    /// A prefix with a `.` or `..` part.
    #[error("`{0}`: `.` and `..` are not allowed in the prefix")]
    DotInPrefix(String),
}

impl StoreUrl {
    /// Reads `s3://bucket[/prefix]`.
    pub fn parse(text: &str) -> Result<StoreUrl, StoreUrlError> {
        let rest = (text.strip_prefix("s3://")).ok_or_else(|| StoreUrlError::NotS3(text.into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreUrlError::NoBucket(text.into()));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == ".." || part == ".") {
            return Err(StoreUrlError::DotInPrefix(text.into()));
        }
        Ok(StoreUrl {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix.as_str() {
            "" => write!(f, "s3://{}", self.bucket),
            prefix => write!(f, "s3://{}/{prefix}", self.bucket),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_a_bucket_and_a_prefix() {
        let url = StoreUrl::parse("s3://points/team/a/").unwrap();
        assert_eq!(
            url,
            StoreUrl {
                bucket: "points".to_owned(),
                prefix: "team/a".to_owned()
            }
        );
        assert_eq!(url.to_string(), "s3://points/team/a");
        assert_eq!(StoreUrl::parse("s3://points").unwrap().prefix, "");
        let refused = |text: &str| StoreUrl::parse(text).unwrap_err();
        assert_eq!(
            refused("gs://points"),
            StoreUrlError::NotS3("gs://points".into())
        );
        assert_eq!(
            refused("s3:///x"),
            StoreUrlError::NoBucket("s3:///x".into())
        );
        let dotted = refused("s3://b/a/../c");
        assert_eq!(dotted, StoreUrlError::DotInPrefix("s3://b/a/../c".into()));
        assert_eq!(
            dotted.to_string(),
            "`s3://b/a/../c`: `.` and `..` are not allowed in the prefix"
        );
    }
}
