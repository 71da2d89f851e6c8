//! The storage URL (`COLONY_STORAGE_URL`): `file:///abs/dir` or
//! `s3://bucket/optional/prefix`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::{ObjectKey, StorageError};

#[derive(Clone, PartialEq, Eq)]
pub enum StorageUrl {
    File { root: PathBuf },
    S3 { bucket: String, prefix: Option<ObjectKey> },
}

impl StorageUrl {
    pub fn parse(raw: &str) -> Result<Self, StorageError> {
        let invalid = |reason: &str| StorageError::InvalidUrl { url: raw.to_owned(), reason: reason.to_owned() };
        if let Some(path) = raw.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid("a file URL needs an absolute path, like file:///var/lib/colony"));
            }
            if path.chars().any(char::is_control) || path.split('/').any(|s| s == "..") {
                return Err(invalid("the path must not contain '..' or control characters"));
            }
            return Ok(StorageUrl::File { root: PathBuf::from(path) });
        }
        if let Some(rest) = raw.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !is_bucket_name(bucket) {
                return Err(invalid("the bucket name must be 3-63 characters of a-z, 0-9, '.' and '-'"));
            }
            let prefix = prefix.trim_end_matches('/');
            let prefix = if prefix.is_empty() {
                None
            } else {
                Some(ObjectKey::parse(prefix).map_err(|_| invalid("the prefix is not a safe key"))?)
            };
            return Ok(StorageUrl::S3 { bucket: bucket.to_owned(), prefix });
        }
        Err(invalid("expected file:///absolute/dir or s3://bucket/prefix"))
    }
}

fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

impl FromStr for StorageUrl {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUrl::File { root } => write!(f, "file://{}", root.display()),
            StorageUrl::S3 { bucket, prefix: None } => write!(f, "s3://{bucket}"),
            StorageUrl::S3 { bucket, prefix: Some(p) } => write!(f, "s3://{bucket}/{p}"),
        }
    }
}

impl fmt::Debug for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes() {
        assert_eq!(
            StorageUrl::parse("file:///var/lib/colony").unwrap(),
            StorageUrl::File { root: "/var/lib/colony".into() }
        );
        let s3 = StorageUrl::parse("s3://media-bucket/archive/v1/").unwrap();
        assert_eq!(s3.to_string(), "s3://media-bucket/archive/v1");
        assert_eq!(StorageUrl::parse("s3://media-bucket").unwrap().to_string(), "s3://media-bucket");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "/var/lib",
            "file://relative",
            "file:///a/../b",
            "s3://",
            "s3://A_B",
            "s3://ok-bucket/../x",
            "gs://b/x",
            "http://x",
        ] {
            let err = StorageUrl::parse(bad).unwrap_err();
            assert!(matches!(err, StorageError::InvalidUrl { .. }), "{bad}: {err}");
        }
    }
}
