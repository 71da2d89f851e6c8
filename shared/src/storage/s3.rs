//! The `s3://bucket/prefix` backend over aws-sdk-s3: AWS S3, Garage, MinIO or
//! R2. Endpoint, region and credentials come from the standard `AWS_*`
//! variables; path-style addressing is a switch because Garage and MinIO need it.
//! Objects above the multipart threshold go up in parts, a few at a time, so
//! memory stays bounded whatever the object's size.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective, StorageClass};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use super::{ByteStream, ObjectKey, ObjectMeta, ObjectStore, StorageError};

const PART_SIZE: u64 = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    pub prefix: Option<ObjectKey>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    pub multipart_threshold: u64,
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    settings: S3Settings,
}

/// An error message carried as a source, so `{:#}` chains print it.
#[derive(Debug)]
struct Message(String);
impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Message {}

impl S3Store {
    /// The same store, signing its presigned URLs for `endpoint`: where
    /// browsers reach the store, when that differs from where this process
    /// does (a compose network's `http://garage:3900` against the published
    /// `https://media.example.com`). Nothing is checked: this process may
    /// not reach that address at all.
    pub fn presigning_for(&self, endpoint: &str) -> Self {
        let config = self.client.config().to_builder().endpoint_url(endpoint).build();
        let settings = S3Settings { endpoint: Some(endpoint.to_owned()), ..self.settings.clone() };
        Self { client: Client::from_conf(config), settings }
    }

    /// Build the client and check that the bucket exists and answers.
    pub async fn open(settings: S3Settings) -> Result<Self, StorageError> {
        let store = Self::connect(settings).await;
        store.check_bucket().await?;
        Ok(store)
    }

    /// Build the client and check that the bucket exists, within `wait`.
    /// A store that does not answer in time, is unreachable or answers with
    /// a server error is returned unchecked with the reason; a bucket that
    /// does not exist, or refused keys, are still errors.
    pub async fn open_within(settings: S3Settings, wait: Duration) -> Result<(Self, Option<String>), StorageError> {
        let store = Self::connect(settings).await;
        match tokio::time::timeout(wait, store.check_bucket()).await {
            Ok(Ok(())) => Ok((store, None)),
            Ok(Err(e)) if e.is_transient() => {
                let why = crate::error_chain(&e);
                Ok((store, Some(why)))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                let why = format!("{} did not answer within {}", store.endpoint(), humantime::format_duration(wait));
                Ok((store, Some(why)))
            }
        }
    }

    /// Build the client; nothing is asked of the store.
    async fn connect(settings: S3Settings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(Duration::from_secs(60))
                .build(),
        );
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(settings.path_style);
        if shared.region().is_none() {
            // Garage, MinIO and friends accept any region; AWS users set AWS_REGION.
            config = config.region(Region::new("us-east-1"));
        }
        Self { client: Client::from_conf(config.build()), settings }
    }

    fn endpoint(&self) -> String {
        self.settings.endpoint.clone().unwrap_or_else(|| "AWS S3".to_owned())
    }

    async fn check_bucket(&self) -> Result<(), StorageError> {
        match self.client.head_bucket().bucket(&self.settings.bucket).send().await {
            Ok(_) => Ok(()),
            Err(err) => Err(match self.classify("checking bucket", &self.settings.bucket, err) {
                StorageError::NotFound { .. } => {
                    StorageError::BucketNotFound { bucket: self.settings.bucket.clone(), endpoint: self.endpoint() }
                }
                other => other,
            }),
        }
    }

    fn full_key(&self, key: &ObjectKey) -> String {
        match &self.settings.prefix {
            Some(prefix) => format!("{prefix}/{key}"),
            None => key.to_string(),
        }
    }

    fn relative_key(&self, full: &str) -> Option<ObjectKey> {
        let rel = match &self.settings.prefix {
            Some(prefix) => full.strip_prefix(prefix.as_str())?.strip_prefix('/')?,
            None => full,
        };
        ObjectKey::parse(rel).ok()
    }

    /// Map an SDK error to a storage error: 404 is not-found, 403 is access
    /// denied, connection failures and timeouts are unreachable.
    fn classify<E>(&self, op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.as_service_error().and_then(|e| e.code()).map(str::to_owned);
        let message = Box::new(Message(DisplayErrorContext(&err).to_string()));
        if code.as_deref() == Some("NoSuchBucket") {
            return StorageError::BucketNotFound { bucket: self.settings.bucket.clone(), endpoint: self.endpoint() };
        }
        match (&err, status) {
            (_, Some(404)) => StorageError::NotFound { key: key.to_owned() },
            (_, Some(403)) => StorageError::AccessDenied { bucket: self.settings.bucket.clone(), source: message },
            (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => {
                StorageError::Unreachable { endpoint: self.endpoint(), source: message }
            }
            _ => StorageError::Backend { op, key: key.to_owned(), source: message },
        }
    }

    /// Upload everything `reader` yields as one object, in parts of
    /// `PART_SIZE`, at most `PARTS_IN_FLIGHT` at a time, so memory stays
    /// bounded. On failure the upload is aborted and nothing becomes visible.
    async fn put_multipart<R>(&self, key: &ObjectKey, reader: R) -> Result<(), StorageError>
    where
        R: tokio::io::AsyncRead + Unpin + Send,
    {
        let full = self.full_key(key);
        let bucket = &self.settings.bucket;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.classify("starting multipart upload", key.as_str(), e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        match self.upload_parts(key, &full, &upload_id, reader).await {
            Ok(mut parts) => {
                parts.sort_by_key(|p| p.part_number());
                self.client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send()
                    .await
                    .map_err(|e| self.classify("completing multipart upload", key.as_str(), e))?;
                Ok(())
            }
            Err(err) => {
                let _ =
                    self.client.abort_multipart_upload().bucket(bucket).key(&full).upload_id(&upload_id).send().await;
                Err(err)
            }
        }
    }

    /// Copy an object onto itself in parts, with a new storage class; on
    /// failure the copy is aborted and the object stays as it was.
    async fn copy_multipart(
        &self,
        key: &ObjectKey,
        full: &str,
        source: &str,
        size: u64,
        class: &str,
    ) -> Result<(), StorageError> {
        let bucket = &self.settings.bucket;
        // At most 10,000 parts, and none under the 5 MiB S3 asks for.
        let part = PART_SIZE.max(size.div_ceil(9_000));
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(full)
            .storage_class(StorageClass::from(class))
            .send()
            .await
            .map_err(|e| self.classify("starting multipart copy", key.as_str(), e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        let copied = async {
            let mut parts = Vec::new();
            for (i, start) in (0..size).step_by(part as usize).enumerate() {
                let end = (start + part).min(size) - 1;
                let number = i as i32 + 1;
                let out = self
                    .client
                    .upload_part_copy()
                    .bucket(bucket)
                    .key(full)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .copy_source(source)
                    .copy_source_range(format!("bytes={start}-{end}"))
                    .send()
                    .await
                    .map_err(|e| self.classify("copying part", key.as_str(), e))?;
                let etag = out.copy_part_result().and_then(|r| r.e_tag()).map(str::to_owned);
                parts.push(CompletedPart::builder().part_number(number).set_e_tag(etag).build());
            }
            self.client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(full)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| self.classify("completing multipart copy", key.as_str(), e))?;
            Ok(())
        }
        .await;
        if copied.is_err() {
            let _ = self.client.abort_multipart_upload().bucket(bucket).key(full).upload_id(&upload_id).send().await;
        }
        copied
    }

    async fn upload_parts<R>(
        &self,
        key: &ObjectKey,
        full: &str,
        upload_id: &str,
        mut reader: R,
    ) -> Result<Vec<CompletedPart>, StorageError>
    where
        R: tokio::io::AsyncRead + Unpin + Send,
    {
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut done = Vec::new();
        let mut number = 1;
        loop {
            let mut buf = Vec::with_capacity(PART_SIZE as usize);
            (&mut reader).take(PART_SIZE).read_to_end(&mut buf).await.map_err(|e| StorageError::Backend {
                op: "reading part",
                key: key.to_string(),
                source: Box::new(e),
            })?;
            if buf.is_empty() {
                break;
            }
            in_flight.push(self.upload_part(key, full, upload_id, number, Bytes::from(buf)));
            number += 1;
            if in_flight.len() >= PARTS_IN_FLIGHT {
                done.push(in_flight.next().await.expect("a part is in flight")?);
            }
        }
        while let Some(part) = in_flight.next().await {
            done.push(part?);
        }
        Ok(done)
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        full: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, StorageError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.settings.bucket)
            .key(full)
            .upload_id(upload_id)
            .part_number(number)
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.classify("uploading part", key.as_str(), e))?;
        Ok(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag().map(str::to_owned)).build())
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        match &self.settings.prefix {
            Some(p) => format!("s3://{}/{} at {}", self.settings.bucket, p, self.endpoint()),
            None => format!("s3://{} at {}", self.settings.bucket, self.endpoint()),
        }
    }

    async fn put(&self, key: &ObjectKey, body: Bytes) -> Result<(), StorageError> {
        if body.len() as u64 > self.settings.multipart_threshold {
            return self.put_multipart(key, body.as_ref()).await;
        }
        self.client
            .put_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.classify("upload", key.as_str(), e))?;
        Ok(())
    }

    async fn put_file(&self, key: &ObjectKey, path: &Path) -> Result<u64, StorageError> {
        let size = tokio::fs::metadata(path).await.map_err(|e| StorageError::io("reading metadata of", path, e))?.len();
        if size <= self.settings.multipart_threshold {
            let body = tokio::fs::read(path).await.map_err(|e| StorageError::io("reading", path, e))?;
            self.put(key, Bytes::from(body)).await?;
            return Ok(size);
        }
        let file = tokio::fs::File::open(path).await.map_err(|e| StorageError::io("opening", path, e))?;
        self.put_multipart(key, tokio::io::BufReader::with_capacity(1 << 20, file)).await?;
        Ok(size)
    }

    async fn presign_get(&self, key: &ObjectKey, expires_in: Duration) -> Result<Option<String>, StorageError> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in).map_err(|e| {
            StorageError::Backend { op: "presign", key: key.to_string(), source: Box::new(Message(e.to_string())) }
        })?;
        // The media type rides in the URL (response-content-type), so that
        // objects stored without one still play in a browser.
        let request = self
            .client
            .get_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .set_response_content_type(super::content_type(key).map(str::to_owned))
            .presigned(config)
            .await
            .map_err(|e| self.classify("presign", key.as_str(), e))?;
        Ok(Some(request.uri().to_owned()))
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.classify("download", key.as_str(), e))?;
        let key = key.to_string();
        let stream = futures::stream::unfold(Some(out.body), move |body| {
            let key = key.clone();
            async move {
                let mut body = body?;
                match body.next().await {
                    None => None,
                    Some(Ok(bytes)) => Some((Ok(bytes), Some(body))),
                    Some(Err(e)) => Some((
                        Err(StorageError::Backend { op: "download", key, source: Box::new(Message(e.to_string())) }),
                        None,
                    )),
                }
            }
        });
        Ok(stream.boxed())
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.classify("head", key.as_str(), e))?;
        Ok(ObjectMeta {
            key: key.clone(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            storage_class: out.storage_class().map(|c| c.as_str().to_owned()),
        })
    }

    async fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>, StorageError> {
        let full_prefix = match (prefix, &self.settings.prefix) {
            (Some(p), _) => format!("{}/", self.full_key(p)),
            (None, Some(base)) => format!("{base}/"),
            (None, None) => String::new(),
        };
        let mut pages =
            self.client.list_objects_v2().bucket(&self.settings.bucket).prefix(&full_prefix).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.classify("list", &full_prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| self.relative_key(k)) else { continue };
                out.push(ObjectMeta {
                    key,
                    size: object.size().unwrap_or(0).max(0) as u64,
                    storage_class: object.storage_class().map(|c| c.as_str().to_owned()),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match self.client.delete_object().bucket(&self.settings.bucket).key(self.full_key(key)).send().await {
            Ok(_) => Ok(()),
            Err(e) => match self.classify("delete", key.as_str(), e) {
                StorageError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// A copy onto itself with the new class: one CopyObject up to the
    /// multipart threshold, a multipart copy (UploadPartCopy) above it, since
    /// a single copy stops at 5 GB.
    async fn set_storage_class(&self, key: &ObjectKey, size: u64, class: &str) -> Result<(), StorageError> {
        let full = self.full_key(key);
        let source =
            format!("{}/{}", self.settings.bucket, percent_encoding::utf8_percent_encode(&full, COPY_SOURCE_ESCAPES));
        if size > self.settings.multipart_threshold {
            return self.copy_multipart(key, &full, &source, size, class).await;
        }
        self.client
            .copy_object()
            .bucket(&self.settings.bucket)
            .key(&full)
            .copy_source(source)
            .storage_class(StorageClass::from(class))
            .metadata_directive(MetadataDirective::Copy)
            .send()
            .await
            .map_err(|e| self.classify("storage class change", key.as_str(), e))?;
        Ok(())
    }
}

/// Everything but unreserved characters and `/` is escaped in `x-amz-copy-source`.
const COPY_SOURCE_ESCAPES: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');
