//! The `file:///dir` backend. Writes go to a temporary file beside the
//! object (`.colony-tmp-<uuid>`, never listed and never a key), are fsynced
//! and renamed into place within one directory, so a crash leaves either the
//! old object or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::fs;
use tokio_util::io::ReaderStream;

use super::key::RESERVED_TMP;
use super::{ByteStream, ObjectKey, ObjectMeta, ObjectStore, StorageError};

#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    pub async fn open(root: &Path) -> Result<Self, StorageError> {
        fs::create_dir_all(root).await.map_err(|e| StorageError::io("creating storage directory", root, e))?;
        Ok(Self { root: root.to_owned() })
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        // ObjectKey guarantees relative, `..`-free segments.
        self.root.join(key.as_str())
    }

    /// Write an object in one blocking call: create a temporary file, fill
    /// it, fsync it, rename it into place and fsync the directory, so the
    /// object is durable before this returns. One trip to the blocking pool
    /// per object, not one per step.
    async fn write_atomically(
        &self,
        key: &ObjectKey,
        fill: impl FnOnce(&mut std::fs::File) -> Result<u64, StorageError> + Send + 'static,
    ) -> Result<u64, StorageError> {
        let dest = self.path(key);
        tokio::task::spawn_blocking(move || {
            let parent = dest.parent().unwrap_or(&dest).to_owned();
            let tmp = parent.join(format!("{RESERVED_TMP}-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&parent).map_err(|e| StorageError::io("creating directory", &parent, e))?;
            let result = (|| {
                let mut file = std::fs::File::create(&tmp).map_err(|e| StorageError::io("creating", &tmp, e))?;
                let size = fill(&mut file)?;
                file.sync_all().map_err(|e| StorageError::io("syncing", &tmp, e))?;
                drop(file);
                std::fs::rename(&tmp, &dest).map_err(|e| StorageError::io("renaming into", &dest, e))?;
                // Make the rename itself durable.
                if let Ok(dir) = std::fs::File::open(&parent) {
                    let _ = dir.sync_all();
                }
                Ok(size)
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        })
        .await
        .map_err(|e| StorageError::io("writing", &self.root, std::io::Error::other(e)))?
    }
}

#[async_trait]
impl ObjectStore for FileStore {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put(&self, key: &ObjectKey, body: Bytes) -> Result<(), StorageError> {
        let dest = self.path(key);
        self.write_atomically(key, move |file| {
            file.write_all(&body).map_err(|e| StorageError::io("writing", &dest, e))?;
            Ok(body.len() as u64)
        })
        .await
        .map(|_| ())
    }

    async fn put_file(&self, key: &ObjectKey, path: &Path) -> Result<u64, StorageError> {
        let source = path.to_owned();
        self.write_atomically(key, move |file| {
            let mut src = std::fs::File::open(&source).map_err(|e| StorageError::io("opening", &source, e))?;
            std::io::copy(&mut src, file).map_err(|e| StorageError::io("copying", &source, e))
        })
        .await
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StorageError> {
        let path = self.path(key);
        let file = match fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound { key: key.to_string() });
            }
            Err(e) => return Err(StorageError::io("opening", &path, e)),
        };
        Ok(ReaderStream::with_capacity(file, 256 * 1024)
            .map(move |r| r.map_err(|e| StorageError::io("reading", &path, e)))
            .boxed())
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let path = self.path(key);
        match fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(ObjectMeta { key: key.clone(), size: m.len(), storage_class: None }),
            Ok(_) => Err(StorageError::NotFound { key: key.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound { key: key.to_string() }),
            Err(e) => Err(StorageError::io("reading metadata of", &path, e)),
        }
    }

    async fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>, StorageError> {
        let start = prefix.map_or_else(|| self.root.clone(), |p| self.path(p));
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let mut entries = match fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.kind() == std::io::ErrorKind::NotADirectory => {
                    continue;
                }
                Err(e) => return Err(StorageError::io("listing", &dir, e)),
            };
            while let Some(entry) = entries.next_entry().await.map_err(|e| StorageError::io("listing", &dir, e))? {
                let path = entry.path();
                let kind = entry.file_type().await.map_err(|e| StorageError::io("listing", &path, e))?;
                let rel = path.strip_prefix(&self.root).expect("listing stays under the root");
                if entry.file_name().to_string_lossy().starts_with(RESERVED_TMP) {
                    continue;
                }
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() {
                    let Some(rel) = rel.to_str() else { continue };
                    let Ok(key) = ObjectKey::parse(rel) else { continue };
                    let size = entry.metadata().await.map_err(|e| StorageError::io("listing", &path, e))?.len();
                    out.push(ObjectMeta { key, size, storage_class: None });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let path = self.path(key);
        match fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("deleting", &path, e)),
        }
    }

    async fn set_storage_class(&self, _key: &ObjectKey, _size: u64, _class: &str) -> Result<(), StorageError> {
        Err(StorageError::Unsupported { backend: self.describe() })
    }

    fn local_path(&self, key: &ObjectKey) -> Option<PathBuf> {
        Some(self.path(key))
    }
}
