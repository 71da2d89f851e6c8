//! A bounded local spool for segments that could not be uploaded (object
//! storage down). Each entry is the segment's bytes plus a JSON sidecar with
//! its key and ledger row, both fsynced, so a restarted cell on the same host
//! finds them again. The ledger row is written only after the upload.
//!
//! The spool trusts nothing it finds: its directories are created 0700 and
//! must belong to this user, entries are opened without following symlinks
//! and must be regular files, and an entry's key must lie under this
//! recording's prefix. Anything else is skipped with a warning, never
//! uploaded. Large segments download into `.incoming-<recording>/` beside it,
//! so moving one into the spool is a rename.

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tracing::warn;

use colony::hls::Body;
use colony::recording::LedgerRow;
use colony::storage::ObjectKey;

/// Largest sidecar read back; a real one is a few hundred bytes.
const MAX_SIDECAR: u64 = 64 * 1024;

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
    #[error(
        "spool directory {dir} belongs to uid {owner}, not to this user (uid {me}); point COLONY_SPOOL_DIR at a directory of this user's"
    )]
    NotOwned { dir: PathBuf, owner: u32, me: u32 },
    #[error("spool directory {0} is not a directory (a symlink or a file is in its place)")]
    NotADirectory(PathBuf),
}

/// A spool the operator pointed at the wrong place is configuration; a full
/// or failing disk may clear.
impl colony::exit::Classify for SpoolError {
    fn class(&self) -> colony::exit::ErrorClass {
        match self {
            SpoolError::NotOwned { .. } | SpoolError::NotADirectory(_) => colony::exit::ErrorClass::Config,
            SpoolError::Full { .. } | SpoolError::Io(..) => colony::exit::ErrorClass::Transient,
        }
    }
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    incoming: PathBuf,
    prefix: String,
    max_bytes: u64,
    state: Mutex<(VecDeque<Entry>, u64)>,
}

/// `$XDG_STATE_HOME/colony/spool`, else `~/.local/state/colony/spool`, else
/// `/var/lib/colony/spool`: a state directory of this user's, not a shared `/tmp`.
pub fn default_root() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(state).join("colony/spool");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty() && h != "/") {
        Some(home) => PathBuf::from(home).join(".local/state/colony/spool"),
        None => PathBuf::from("/var/lib/colony/spool"),
    }
}

/// Create `dir` (0700) if missing, and make sure it is a real directory of
/// this user's that nobody else can write.
fn private_dir(dir: &Path) -> Result<(), SpoolError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| SpoolError::Io(dir.to_owned(), e))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| SpoolError::Io(dir.to_owned(), e))?;
    if !meta.is_dir() {
        return Err(SpoolError::NotADirectory(dir.to_owned()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(SpoolError::NotOwned { dir: dir.to_owned(), owner: meta.uid(), me });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| SpoolError::Io(dir.to_owned(), e))?;
    }
    Ok(())
}

/// Open a regular file without following a symlink, and read at most `limit` bytes.
fn read_regular(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() > limit {
        return Err(std::io::Error::other("not a regular file of a plausible size"));
    }
    let mut body = Vec::with_capacity(meta.len() as usize);
    file.take(limit).read_to_end(&mut body)?;
    Ok(body)
}

/// The size of a regular file, opened without following a symlink.
fn regular_size(path: &Path) -> std::io::Result<u64> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(meta.len())
}

impl Spool {
    /// Open the spool for one recording, whose objects all lie under
    /// `prefix`, and load what a previous run left that passes the checks.
    pub async fn open(root: &Path, recording_id: i64, prefix: &ObjectKey, max_bytes: u64) -> Result<Self, SpoolError> {
        let dir = root.join(recording_id.to_string());
        let incoming = root.join(format!(".incoming-{recording_id}"));
        let prefix = format!("{}/", prefix.as_str());
        let (dir2, incoming2, prefix2) = (dir.clone(), incoming.clone(), prefix.clone());
        let (entries, used) = tokio::task::spawn_blocking(move || -> Result<_, SpoolError> {
            private_dir(root_of(&dir2))?;
            private_dir(&dir2)?;
            private_dir(&incoming2)?;
            // Downloads a crash interrupted are partial: drop them.
            if let Ok(stale) = std::fs::read_dir(&incoming2) {
                for item in stale.flatten() {
                    let _ = std::fs::remove_file(item.path());
                }
            }
            Ok(load(&dir2, &prefix2))
        })
        .await
        .map_err(|e| SpoolError::Io(dir.clone(), std::io::Error::other(e)))??;
        Ok(Self { dir, incoming, prefix, max_bytes, state: Mutex::new((entries.into(), used)) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where large segments download before they are uploaded or spooled.
    pub fn incoming(&self) -> &Path {
        &self.incoming
    }

    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<Entry>, u64)> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keep an object until storage is back.
    pub async fn put(&self, key: &ObjectKey, body: Body, row: Option<LedgerRow>) -> Result<(), SpoolError> {
        let size = body.len();
        {
            let state = self.lock();
            if state.1.saturating_add(size) > self.max_bytes {
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
        match body {
            Body::Memory(bytes) => write_synced(&data, &bytes).await.map_err(|e| SpoolError::Io(data.clone(), e))?,
            Body::File { file, .. } => {
                let data2 = data.clone();
                tokio::task::spawn_blocking(move || {
                    file.as_file().sync_all()?;
                    file.persist(&data2).map(|_| ()).map_err(|e| e.error)
                })
                .await
                .map_err(|e| SpoolError::Io(data.clone(), std::io::Error::other(e)))?
                .map_err(|e| SpoolError::Io(data.clone(), e))?
            }
        }
        let sidecar = serde_json::to_vec(&entry).map_err(|e| SpoolError::Io(meta.clone(), std::io::Error::other(e)))?;
        write_synced(&meta, &sidecar).await.map_err(|e| SpoolError::Io(meta.clone(), e))?;
        let mut state = self.lock();
        state.1 += size;
        state.0.push_back(entry);
        Ok(())
    }

    /// The oldest entry, without removing it.
    pub fn peek(&self) -> Option<Entry> {
        self.lock().0.front().cloned()
    }

    /// Every entry still waiting.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().0.iter().cloned().collect()
    }

    /// Check an entry's data file again before it is uploaded.
    pub fn verified_path(&self, entry: &Entry) -> std::io::Result<PathBuf> {
        let size = regular_size(&entry.path)?;
        if size != entry.size || !entry.key.starts_with(&self.prefix) {
            return Err(std::io::Error::other("the spooled file changed since it was written"));
        }
        Ok(entry.path.clone())
    }

    /// Forget the oldest entry after it was uploaded.
    pub async fn pop(&self, entry: &Entry) {
        {
            let mut state = self.lock();
            if state.0.front().is_some_and(|e| e.key == entry.key) {
                state.0.pop_front();
                state.1 = state.1.saturating_sub(entry.size);
            }
        }
        let _ = tokio::fs::remove_file(entry.path.with_extension("json")).await;
        let _ = tokio::fs::remove_file(&entry.path).await;
    }
}

/// The spool root above a recording's directory.
fn root_of(dir: &Path) -> &Path {
    dir.parent().unwrap_or(dir)
}

/// Read the entries a previous run left: only sidecars and data files that
/// are regular files of this spool, for keys under `prefix`.
fn load(dir: &Path, prefix: &str) -> (Vec<Entry>, u64) {
    let mut entries = Vec::new();
    let mut used = 0u64;
    let mut refused = 0usize;
    let Ok(read) = std::fs::read_dir(dir) else { return (entries, used) };
    for item in read.flatten() {
        let path = item.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match load_entry(&path, prefix) {
            Some(entry) => {
                used = used.saturating_add(entry.size);
                entries.push(entry);
            }
            None => refused += 1,
        }
    }
    if refused > 0 {
        warn!(dir = %dir.display(), refused, "spool entries that are not this recording's regular files were left alone");
    }
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    (entries, used)
}

fn load_entry(sidecar: &Path, prefix: &str) -> Option<Entry> {
    let text = read_regular(sidecar, MAX_SIDECAR).ok()?;
    let mut entry: Entry = serde_json::from_slice(&text).ok()?;
    let key = ObjectKey::parse(&entry.key).ok()?;
    if !key.as_str().starts_with(prefix) {
        return None;
    }
    if let Some(row) = &entry.row
        && row.object_key.as_deref() != Some(key.as_str())
    {
        return None;
    }
    let expected = sidecar.with_extension("bin");
    if sidecar.file_stem().and_then(|s| s.to_str()) != Some(&key.as_str().replace('/', "__")) {
        return None;
    }
    entry.path = expected;
    (regular_size(&entry.path).ok()? == entry.size).then_some(entry)
}

async fn write_synced(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut f = tokio::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).await?;
    f.write_all(body).await?;
    f.sync_all().await
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use bytes::Bytes;

    use super::*;
    use colony::recording::MediaSource;

    /// A row naming `key` as it is, even a key storage would refuse.
    fn row(key: &str) -> LedgerRow {
        let any = colony::storage::ObjectKey::parse("any").unwrap();
        LedgerRow { object_key: Some(key.into()), ..LedgerRow::object(0, 1, 2.0, &any, None, 5, MediaSource::Live) }
    }

    /// Defect: `Spool::open` imported every `*.json` it found, followed
    /// symlinks and never checked the key, so planted files (a symlink to the
    /// env file holding DATABASE_URL) went into the archive and the ledger.
    #[tokio::test]
    async fn planted_entries_are_never_loaded() {
        let root = tempfile::tempdir().unwrap();
        let prefix = ObjectKey::parse("channels/a/7").unwrap();
        {
            let spool = Spool::open(root.path(), 7, &prefix, 1 << 20).await.unwrap();
            let key = ObjectKey::parse("channels/a/7/e0/00000001.ts").unwrap();
            spool.put(&key, Body::Memory(Bytes::from_static(b"hello")), Some(row(key.as_str()))).await.unwrap();
        }
        let dir = root.path().join("7");
        let secret = root.path().join("env");
        std::fs::write(&secret, "DATABASE_URL=postgres://u:hunter2@db/x").unwrap();
        let plant = |stem: &str, key: &str, size: u64| {
            let entry = Entry { key: key.into(), row: Some(row(key)), size, path: PathBuf::new() };
            std::fs::write(dir.join(format!("{stem}.json")), serde_json::to_vec(&entry).unwrap()).unwrap();
        };
        // A symlink to a secret, under a key of this recording.
        plant("channels__a__7__e0__00000002.ts", "channels/a/7/e0/00000002.ts", 38);
        symlink(&secret, dir.join("channels__a__7__e0__00000002.ts.bin")).unwrap();
        // A key of another recording.
        plant("channels__b__9__e0__00000001.ts", "channels/b/9/e0/00000001.ts", 5);
        std::fs::write(dir.join("channels__b__9__e0__00000001.ts.bin"), b"xxxxx").unwrap();
        // A sidecar that is itself a symlink.
        symlink(dir.join("channels__a__7__e0__00000001.ts.json"), dir.join("channels__a__7__e0__00000003.ts.json"))
            .unwrap();

        let spool = Spool::open(root.path(), 7, &prefix, 1 << 20).await.unwrap();
        let keys: Vec<String> = spool.entries().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["channels/a/7/e0/00000001.ts"]);
    }

    #[tokio::test]
    async fn the_spool_is_private_and_refuses_a_directory_it_does_not_own() {
        let root = tempfile::tempdir().unwrap();
        let prefix = ObjectKey::parse("channels/a/7").unwrap();
        std::fs::create_dir_all(root.path().join("spool")).unwrap();
        std::fs::set_permissions(root.path().join("spool"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let spool = Spool::open(&root.path().join("spool"), 7, &prefix, 1 << 20).await.unwrap();
        for dir in [root.path().join("spool"), spool.dir().to_owned(), spool.incoming().to_owned()] {
            assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700, "{}", dir.display());
        }
        // A symlink in place of the recording's directory is refused.
        let elsewhere = tempfile::tempdir().unwrap();
        symlink(elsewhere.path(), root.path().join("spool/8")).unwrap();
        assert!(matches!(
            Spool::open(&root.path().join("spool"), 8, &prefix, 1 << 20).await,
            Err(SpoolError::NotADirectory(_))
        ));
        if nix::unistd::geteuid().is_root() {
            let foreign = root.path().join("foreign");
            std::fs::create_dir(&foreign).unwrap();
            std::os::unix::fs::chown(&foreign, Some(65534), None).unwrap();
            assert!(matches!(Spool::open(&foreign, 7, &prefix, 1 << 20).await, Err(SpoolError::NotOwned { .. })));
        }
    }
}
