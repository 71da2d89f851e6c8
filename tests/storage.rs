//! One conformance suite for the object-store trait, run against both
//! backends: `file://` in a temp dir and S3 on a real Garage node.

use std::sync::Arc;

use bytes::Bytes;
use colony::storage::{self, ObjectKey, ObjectStore, StorageArgs, StorageError, StorageUrl, get_bytes};
use colony_tests::garage::garage;
use futures::TryStreamExt;

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

/// Deterministic, non-repeating-ish content so a misplaced part shows.
fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed).collect::<Vec<u8>>(),
    )
}

struct Fixture {
    store: Arc<dyn ObjectStore>,
    _dir: Option<tempfile::TempDir>,
}

async fn file_store() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let args = StorageArgs {
        storage_url: StorageUrl::parse(&format!("file://{}", dir.path().display())).unwrap(),
        s3_endpoint: None,
        s3_region: None,
        s3_path_style: false,
        s3_multipart_threshold_mib: 5,
    };
    Fixture { store: storage::open(&args).await.unwrap(), _dir: Some(dir) }
}

async fn garage_store() -> Fixture {
    let g = tokio::task::spawn_blocking(garage).await.unwrap();
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    Fixture { store: storage::open(&g.storage_args(&g.bucket, &prefix)).await.unwrap(), _dir: None }
}

async fn small_round_trip(f: Fixture) {
    let s = f.store.as_ref();
    let k = key("channels/demo/1/e0/000001.ts");
    s.put(&k, Bytes::from_static(b"segment bytes")).await.unwrap();
    assert_eq!(get_bytes(s, &k).await.unwrap(), Bytes::from_static(b"segment bytes"));
    assert_eq!(s.head(&k).await.unwrap().size, 13);
    // Overwrite replaces.
    s.put(&k, Bytes::from_static(b"v2")).await.unwrap();
    assert_eq!(get_bytes(s, &k).await.unwrap(), Bytes::from_static(b"v2"));
    // Empty objects are objects.
    let empty = key("empty");
    s.put(&empty, Bytes::new()).await.unwrap();
    assert_eq!(s.head(&empty).await.unwrap().size, 0);
}

async fn multipart_round_trip(f: Fixture) {
    let s = f.store.as_ref();
    // Above the 5 MiB threshold and not a multiple of the 8 MiB part size.
    let body = pattern(19 * 1024 * 1024 + 12_345, 7);
    let k = key("export/big.mp4");
    s.put(&k, body.clone()).await.unwrap();
    assert_eq!(s.head(&k).await.unwrap().size, body.len() as u64);
    // Streaming get yields the same bytes in more than one chunk.
    let chunks: Vec<Bytes> = s.get(&k).await.unwrap().try_collect().await.unwrap();
    assert!(chunks.len() > 1, "get did not stream");
    assert_eq!(chunks.concat(), body.to_vec());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local.bin");
    let from_file = pattern(17 * 1024 * 1024 + 1, 9);
    std::fs::write(&path, &from_file).unwrap();
    let k2 = key("export/from-file.mp4");
    assert_eq!(s.put_file(&k2, &path).await.unwrap(), from_file.len() as u64);
    assert_eq!(get_bytes(s, &k2).await.unwrap(), from_file);
}

async fn listing(f: Fixture) {
    let s = f.store.as_ref();
    for k in ["a/b/2.ts", "a/b/1.ts", "a/b/sub/3.ts", "a/bc/no.ts", "z.ts"] {
        s.put(&key(k), Bytes::from(k.to_owned())).await.unwrap();
    }
    let under_ab: Vec<String> =
        s.list(Some(&key("a/b"))).await.unwrap().into_iter().map(|m| m.key.to_string()).collect();
    assert_eq!(under_ab, ["a/b/1.ts", "a/b/2.ts", "a/b/sub/3.ts"]);
    let all = s.list(None).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all.iter().find(|m| m.key.as_str() == "z.ts").unwrap().size, 4);
    assert!(s.list(Some(&key("nothing/here"))).await.unwrap().is_empty());
}

async fn deletion(f: Fixture) {
    let s = f.store.as_ref();
    let k = key("gone/soon.ts");
    s.put(&k, Bytes::from_static(b"x")).await.unwrap();
    s.delete(&k).await.unwrap();
    assert!(s.head(&k).await.unwrap_err().is_not_found());
    assert!(s.list(Some(&key("gone"))).await.unwrap().is_empty());
    s.delete(&k).await.expect("deleting a missing object is not an error");
}

async fn missing_keys_are_typed_not_found(f: Fixture) {
    let s = f.store.as_ref();
    let k = key("never/written.ts");
    assert!(matches!(s.get(&k).await.err().unwrap(), StorageError::NotFound { .. }));
    assert!(matches!(s.head(&k).await.unwrap_err(), StorageError::NotFound { .. }));
    assert!(matches!(get_bytes(s, &k).await.unwrap_err(), StorageError::NotFound { .. }));
}

async fn hostile_keys_are_refused(f: Fixture) {
    let s = f.store.as_ref();
    for hostile in ["../escape.ts", "/etc/passwd", "a/../../b", "a\u{0}b", "a\nb", "a//b", "..", "a/./b"] {
        assert!(matches!(ObjectKey::parse(hostile), Err(StorageError::InvalidKey { .. })), "{hostile:?}");
    }
    let base = key("channels/x");
    assert!(base.join("../../../escape").is_err());
    assert!(base.join("ok/1.ts").is_ok());
    // A user string made safe stays inside its segment.
    let k = base.join(&storage::safe_segment("../../Evil Name")).unwrap().join("1.ts").unwrap();
    s.put(&k, Bytes::from_static(b"x")).await.unwrap();
    let listed = s.list(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].key.as_str().starts_with("channels/x/"), "{}", listed[0].key);
}

macro_rules! conformance {
    ($backend:ident, $fixture:ident) => {
        mod $backend {
            use super::*;
            #[tokio::test]
            async fn small_round_trip() {
                super::small_round_trip($fixture().await).await
            }
            #[tokio::test]
            async fn multipart_round_trip() {
                super::multipart_round_trip($fixture().await).await
            }
            #[tokio::test]
            async fn listing() {
                super::listing($fixture().await).await
            }
            #[tokio::test]
            async fn deletion() {
                super::deletion($fixture().await).await
            }
            #[tokio::test]
            async fn missing_keys_are_typed_not_found() {
                super::missing_keys_are_typed_not_found($fixture().await).await
            }
            #[tokio::test]
            async fn hostile_keys_are_refused() {
                super::hostile_keys_are_refused($fixture().await).await
            }
        }
    };
}

conformance!(file, file_store);
conformance!(garage_s3, garage_store);

#[tokio::test]
async fn file_writes_leave_no_temporary_files_behind() {
    let f = file_store().await;
    for i in 0..20 {
        f.store.put(&key(&format!("x/{i}")), pattern(1000, i)).await.unwrap();
    }
    let root = f._dir.as_ref().unwrap().path();
    let leftovers: Vec<_> = std::fs::read_dir(root.join("x"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".colony-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(f.store.list(None).await.unwrap().len(), 20);
}

#[tokio::test]
async fn storage_classes_change_on_s3_and_are_refused_on_file() {
    let f = garage_store().await;
    let k = key("cold/old.ts");
    f.store.put(&k, Bytes::from_static(b"old media")).await.unwrap();
    f.store.set_storage_class(&k, 9, "STANDARD").await.unwrap();
    assert_eq!(get_bytes(f.store.as_ref(), &k).await.unwrap(), Bytes::from_static(b"old media"));

    let local = file_store().await;
    local.store.put(&k, Bytes::from_static(b"x")).await.unwrap();
    assert!(matches!(local.store.set_storage_class(&k, 9, "GLACIER").await, Err(StorageError::Unsupported { .. })));
}

#[tokio::test]
async fn a_missing_bucket_is_reported_at_open() {
    let g = tokio::task::spawn_blocking(garage).await.unwrap();
    let err = storage::open(&g.storage_args("no-such-bucket", "x")).await.unwrap_err();
    assert!(matches!(err, StorageError::BucketNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
    assert!(err.is_configuration());
}

#[tokio::test]
async fn an_unreachable_endpoint_is_reported_at_open() {
    let g = tokio::task::spawn_blocking(garage).await.unwrap();
    let mut args = g.storage_args(&g.bucket, "x");
    args.s3_endpoint = Some(format!("http://127.0.0.1:{}", colony_tests_free_port()));
    let err = storage::open(&args).await.unwrap_err();
    assert!(matches!(err, StorageError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
}

fn colony_tests_free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
