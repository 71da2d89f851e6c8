//! A bounded local spool for segments that could not be uploaded (object
//! storage down). Each entry is the segment's bytes plus a JSON sidecar with
//! its key and ledger row, both fsynced, so a restarted cell on the same host
//! finds them again. The ledger row is written only after the upload.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::recording::LedgerRow;
use crate::storage::ObjectKey;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    /// None for objects that have no ledger row (init sections).
    pub row: Option<LedgerRow>,
    pub size: u64,
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {dir} is full ({used} of {max} bytes); segment {key} cannot be kept")]
    Full { dir: PathBuf, used: u64, max: u64, key: String },
    #[error("writing to spool {0} failed")]
    Io(PathBuf, #[source] std::io::Error),
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<(VecDeque<Entry>, u64)>,
}

impl Spool {
    /// Open the spool for one recording and load what a previous run left.
    pub async fn open(root: &Path, recording_id: i64, max_bytes: u64) -> Result<Self, SpoolError> {
        let dir = root.join(recording_id.to_string());
        tokio::fs::create_dir_all(&dir).await.map_err(|e| SpoolError::Io(dir.clone(), e))?;
        let mut entries = Vec::new();
        let mut used = 0;
        let mut read = tokio::fs::read_dir(&dir).await.map_err(|e| SpoolError::Io(dir.clone(), e))?;
        while let Ok(Some(item)) = read.next_entry().await {
            let path = item.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Ok(text) = tokio::fs::read(&path).await else { continue };
            let Ok(mut entry) = serde_json::from_slice::<Entry>(&text) else { continue };
            entry.path = path.with_extension("bin");
            if tokio::fs::metadata(&entry.path).await.is_ok() {
                used += entry.size;
                entries.push(entry);
            }
        }
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { dir, max_bytes, state: Mutex::new((entries.into(), used)) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keep an object until storage is back.
    pub async fn put(&self, key: &ObjectKey, body: &Bytes, row: Option<LedgerRow>) -> Result<(), SpoolError> {
        let size = body.len() as u64;
        {
            let state = self.state.lock().unwrap();
            if state.1 + size > self.max_bytes {
                return Err(SpoolError::Full {
                    dir: self.dir.clone(),
                    used: state.1,
                    max: self.max_bytes,
                    key: key.to_string(),
                });
            }
        }
        let stem = key.as_str().replace('/', "__");
        let data = self.dir.join(format!("{stem}.bin"));
        let meta = self.dir.join(format!("{stem}.json"));
        let entry = Entry { key: key.to_string(), row, size, path: data.clone() };
        write_synced(&data, body).await.map_err(|e| SpoolError::Io(data.clone(), e))?;
        write_synced(&meta, &serde_json::to_vec(&entry).expect("entries serialise"))
            .await
            .map_err(|e| SpoolError::Io(meta.clone(), e))?;
        let mut state = self.state.lock().unwrap();
        state.1 += size;
        state.0.push_back(entry);
        Ok(())
    }

    /// The oldest entry, without removing it.
    pub fn peek(&self) -> Option<Entry> {
        self.state.lock().unwrap().0.front().cloned()
    }

    /// Forget the oldest entry after it was uploaded.
    pub async fn pop(&self, entry: &Entry) {
        {
            let mut state = self.state.lock().unwrap();
            if state.0.front().is_some_and(|e| e.key == entry.key) {
                state.0.pop_front();
                state.1 = state.1.saturating_sub(entry.size);
            }
        }
        let _ = tokio::fs::remove_file(entry.path.with_extension("json")).await;
        let _ = tokio::fs::remove_file(&entry.path).await;
    }
}

async fn write_synced(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut f = tokio::fs::File::create(path).await?;
    f.write_all(body).await?;
    f.sync_all().await
}
