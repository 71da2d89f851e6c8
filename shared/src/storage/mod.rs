//! Object storage behind one small trait, with a local-directory backend
//! (`file:///dir`, the default on one machine) and an S3 backend (AWS S3,
//! Garage, MinIO, R2). Media goes here; Postgres only points at it.

mod file;
mod key;
mod s3;
mod url;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use futures::stream::BoxStream;

pub use file::FileStore;
pub use key::{ObjectKey, safe_segment};
pub use s3::{S3Settings, S3Store};
pub use url::StorageUrl;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A stream of an object's bytes, read as it arrives.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("refused object key \"{key}\": {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("object not found: {key}")]
    NotFound { key: String },
    #[error("bucket '{bucket}' does not exist at {endpoint}; create it or fix COLONY_STORAGE_URL")]
    BucketNotFound { bucket: String, endpoint: String },
    #[error("access to bucket '{bucket}' was denied; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")]
    AccessDenied {
        bucket: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot reach object storage at {endpoint}")]
    Unreachable {
        endpoint: String,
        #[source]
        source: BoxError,
    },
    #[error("{op} of {key} failed")]
    Backend {
        op: &'static str,
        key: String,
        #[source]
        source: BoxError,
    },
    #[error("{op} {path} failed")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{backend} does not support storage classes; tier by prefix instead")]
    Unsupported { backend: String },
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// Worth retrying later: the store was unreachable or answered with a
    /// server-side error. Not-found, bad keys and configuration are not.
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Unreachable { .. } | StorageError::Backend { .. } | StorageError::Io { .. })
    }

    /// The operator fixes this by changing configuration.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            StorageError::InvalidUrl { .. } | StorageError::BucketNotFound { .. } | StorageError::AccessDenied { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        StorageError::Io { op, path: path.to_owned(), source }
    }
}

/// What `head` and `list` report about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: ObjectKey,
    pub size: u64,
    /// `None` where the backend has no notion of one (file) or reports the default.
    pub storage_class: Option<String>,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Where this store points, for logs (no secrets).
    fn describe(&self) -> String;

    /// Store `body` under `key`, replacing any object there. Readers never see
    /// a partial object.
    async fn put(&self, key: &ObjectKey, body: Bytes) -> Result<(), StorageError>;

    /// Store a local file, in parts above the multipart threshold, without
    /// reading it all into memory. Returns the bytes stored.
    async fn put_file(&self, key: &ObjectKey, path: &Path) -> Result<u64, StorageError>;

    /// Stream an object.
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StorageError>;

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError>;

    /// Every object under `prefix/` (or the whole store), sorted by key.
    async fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>, StorageError>;

    /// Remove an object; removing a missing one is not an error.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError>;

    /// Move an object of `size` bytes to another storage class (e.g.
    /// `GLACIER_IR`) in place.
    async fn set_storage_class(&self, key: &ObjectKey, size: u64, class: &str) -> Result<(), StorageError>;

    /// Where the object sits on the local filesystem, for backends that have
    /// one; tools like ffmpeg then read it in place instead of a copy.
    fn local_path(&self, _key: &ObjectKey) -> Option<PathBuf> {
        None
    }

    /// A URL that lets anyone holding it GET the object directly from the
    /// store until `expires_in` has passed, for backends that can sign one
    /// (S3); `None` where the caller must serve the bytes itself (file).
    async fn presign_get(
        &self,
        _key: &ObjectKey,
        _expires_in: std::time::Duration,
    ) -> Result<Option<String>, StorageError> {
        Ok(None)
    }
}

/// The media type a browser needs to be told for an object of Colony's, by
/// its extension (players refuse segments served as octet-stream).
pub fn content_type(key: &ObjectKey) -> Option<&'static str> {
    let extension = key.file_name().rsplit_once('.')?.1;
    Some(match extension {
        "ts" => "video/mp2t",
        "m4s" => "video/iso.segment",
        "mp4" => "video/mp4",
        "m3u8" => "application/vnd.apple.mpegurl",
        "jpg" | "jpeg" => "image/jpeg",
        "vtt" => "text/vtt",
        "json" => "application/json",
        _ => return None,
    })
}

/// Read a whole object into memory. For playlists and small files.
pub async fn get_bytes(store: &dyn ObjectStore, key: &ObjectKey) -> Result<Bytes, StorageError> {
    let mut stream = store.get(key).await?;
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.try_next().await? {
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// `--storage-url` and the S3 knobs, flattened into every binary that touches media.
#[derive(Debug, Clone, clap::Args)]
pub struct StorageArgs {
    /// Where media lives: file:///absolute/dir or s3://bucket/optional/prefix.
    #[arg(long = "storage-url", env = "COLONY_STORAGE_URL", value_name = "URL")]
    pub storage_url: StorageUrl,

    /// S3 endpoint for Garage, MinIO or R2 (AWS itself needs none).
    #[arg(long = "s3-endpoint", env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// S3 region; Garage wants the `s3_region` of its config.
    #[arg(long = "s3-region", env = "AWS_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,

    /// Path-style addressing (http://host/bucket/key), needed by Garage and MinIO.
    #[arg(long = "s3-path-style", env = "COLONY_S3_PATH_STYLE", value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_path_style: bool,

    /// Objects larger than this many MiB are uploaded in parts.
    #[arg(
        long = "s3-multipart-threshold-mib",
        env = "COLONY_S3_MULTIPART_THRESHOLD_MIB",
        default_value_t = 16,
        value_name = "MIB"
    )]
    pub s3_multipart_threshold_mib: u64,
}

/// Open the store a URL names. An S3 bucket is checked to exist before any
/// work starts; a file root is created if missing.
pub async fn open(args: &StorageArgs) -> Result<Arc<dyn ObjectStore>, StorageError> {
    match (&args.storage_url, args.s3_settings()) {
        (_, Some(settings)) => Ok(Arc::new(S3Store::open(settings).await?)),
        (StorageUrl::File { root }, None) => Ok(Arc::new(FileStore::open(root).await?)),
        (StorageUrl::S3 { .. }, None) => Err(StorageError::InvalidUrl {
            url: args.storage_url.to_string(),
            reason: "an s3:// URL without S3 settings".into(),
        }),
    }
}

/// Open the store for a cell that records whether or not storage answers
/// now: S3 that is unreachable, or silent for `wait` (a partition, a
/// restart), is opened unchecked with a warning, and the cell spools until
/// it answers. A missing bucket, refused keys and bad URLs still fail.
pub async fn open_or_spool(args: &StorageArgs, wait: Duration) -> Result<Arc<dyn ObjectStore>, StorageError> {
    match args.s3_settings() {
        Some(settings) => {
            let (store, deferred) = S3Store::open_within(settings, wait).await?;
            if let Some(why) = deferred {
                tracing::warn!(
                    error = %why,
                    "object storage does not answer; starting anyway, segments wait in the spool until it does"
                );
            }
            Ok(Arc::new(store))
        }
        None => open(args).await,
    }
}

impl StorageArgs {
    /// The S3 backend's settings, for an `s3://` URL.
    pub fn s3_settings(&self) -> Option<S3Settings> {
        let StorageUrl::S3 { bucket, prefix } = &self.storage_url else { return None };
        Some(S3Settings {
            bucket: bucket.clone(),
            prefix: prefix.clone(),
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            path_style: self.s3_path_style,
            multipart_threshold: self.s3_multipart_threshold_mib.max(5) * 1024 * 1024,
        })
    }
}

/// Write, read back and delete a small object, to prove the store works
/// before a cell starts recording into it.
pub async fn probe_writable(store: &dyn ObjectStore) -> Result<(), StorageError> {
    let key = ObjectKey::parse(&format!("colony-probe/{}", uuid::Uuid::new_v4()))?;
    let body = Bytes::from_static(b"colony storage probe");
    store.put(&key, body.clone()).await?;
    let back = get_bytes(store, &key).await?;
    store.delete(&key).await?;
    if back != body {
        return Err(StorageError::Backend {
            op: "probe",
            key: key.to_string(),
            source: "the object read back differs from the one written".into(),
        });
    }
    Ok(())
}
