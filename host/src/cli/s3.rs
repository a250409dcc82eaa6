//! `--store s3://bucket/prefix` (or `HOST_STORE`): the object store a command opens, configured
//! from the usual `AWS_*` variables, its bucket checked before the command runs.
//!
//! A bucket that does not exist is said once, with the endpoint asked: otherwise the first
//! request to fail (a module's upload, for `host run`) would answer with object_store's error
//! chain, each layer repeating the server's XML body, and a read would take the missing bucket
//! for a missing object.

use std::sync::Arc;

use anyhow::Context as _;
use object_store::ObjectStore as _;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};

use host::store::Layout;
use host::store::object::{ObjectPoints, StoreUrl};

use super::fault;

/// The region object_store assumes when none is configured.
const DEFAULT_REGION: &str = "us-east-1";

/// The points of the state folder `layout` lays out on the object store at `url`
/// (`s3://bucket/prefix`), configured from the `AWS_*` variables.
pub fn object_points(url: &str, layout: Layout) -> anyhow::Result<ObjectPoints> {
    let url = StoreUrl::parse(url)?;
    host::store::object::install_crypto_provider();
    let builder = AmazonS3Builder::from_env()
        .with_bucket_name(&url.bucket)
        // `If-None-Match: *` for `_metadata` and leases, `If-Match` for takeovers.
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    let endpoint = endpoint(&builder);
    let s3 = builder
        .build()
        .with_context(|| format!("cannot use the object store {url}"))?;
    check_bucket(&s3, &url, &endpoint)?;
    let points = ObjectPoints::new(Arc::new(s3), url, layout);
    let points = points.context("cannot start the object store's runtime")?;
    Ok(fault::multipart_threshold(points))
}

/// Refuses a bucket that does not exist, naming it and `endpoint`: one listing of the prefix,
/// which a bucket answers with a list, empty or not, and a missing one with S3's error code
/// `NoSuchBucket`. Any other failure is left to the command's own first request, which names
/// its object.
fn check_bucket(s3: &AmazonS3, url: &StoreUrl, endpoint: &str) -> anyhow::Result<()> {
    let prefix = object_store::path::Path::from(url.prefix.as_str());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime for the object store")?;
    match runtime.block_on(s3.list_with_delimiter(Some(&prefix))) {
        Err(e) if says_no_such_bucket(&e) => Err(anyhow::anyhow!(
            "bucket `{}` does not exist at {endpoint} (the object store of {url})",
            url.bucket
        )),
        _ => Ok(()),
    }
}

/// Whether the server answered `error` with S3's error code `NoSuchBucket`. object_store keeps
/// the answer's status and body in an error type of its own that it does not export, so the
/// code is read from the body as its message carries it.
fn says_no_such_bucket(error: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.to_string().contains("<Code>NoSuchBucket</Code>") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The endpoint `builder` sends requests to, as a person would name it: the configured one
/// (`AWS_ENDPOINT`, or the S3-specific one), else AWS's for the region; never a user or a
/// password written into it.
fn endpoint(builder: &AmazonS3Builder) -> String {
    let configured = builder
        .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
    match configured {
        Some(endpoint) => without_userinfo(&endpoint),
        None => {
            let region = builder.get_config_value(&AmazonS3ConfigKey::Region);
            let region = region.as_deref().unwrap_or(DEFAULT_REGION);
            format!("https://s3.{region}.amazonaws.com")
        }
    }
}

/// `url` without the `user:password@` its authority may hold.
fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match scheme {
        "" => format!("{host}{path}"),
        scheme => format!("{scheme}://{host}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_shown_without_its_credentials() {
        assert_eq!(
            without_userinfo("https://key:secret@minio.local:9000/base"),
            "https://minio.local:9000/base"
        );
        assert_eq!(
            without_userinfo("http://127.0.0.1:9000"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(without_userinfo("minio.local"), "minio.local");
    }

    #[test]
    fn the_endpoint_is_the_configured_one_or_aws_for_the_region() {
        let configured = AmazonS3Builder::new().with_endpoint("http://127.0.0.1:9000");
        assert_eq!(endpoint(&configured), "http://127.0.0.1:9000");
        let aws = AmazonS3Builder::new().with_region("eu-west-3");
        assert_eq!(endpoint(&aws), "https://s3.eu-west-3.amazonaws.com");
    }
}
