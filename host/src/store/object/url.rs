//! `--store s3://bucket/prefix`: where the points live, read. Performs no I/O.

/// `s3://bucket/prefix`, read. Performs no I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreUrl {
    /// The bucket.
    pub bucket: String,
    /// The prefix under which every key goes (may be empty), without slashes at either end.
    pub prefix: String,
}

impl StoreUrl {
    /// Reads `s3://bucket[/prefix]`.
    pub fn parse(text: &str) -> Result<StoreUrl, String> {
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{text}`: expected s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("`{text}`: no bucket"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == ".." || part == ".") {
            return Err(format!(
                "`{text}`: `.` and `..` are not allowed in the prefix"
            ));
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
        assert!(StoreUrl::parse("gs://points").is_err());
        assert!(StoreUrl::parse("s3:///x").is_err());
        assert!(StoreUrl::parse("s3://b/a/../c").is_err());
    }
}
