//! Docker images for launcher tests, built here without a registry: a root
//! filesystem holding the freshly built cell binaries, the shared libraries
//! `ldd` names, the CA bundle, and `/bin/sleep` (for hand-made orphans), imported with
//! `docker import`. Tagged by the binaries' size and mtime, so an unchanged
//! build reuses its image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::bins::bin;
use crate::proc::run;

/// Image tag for `observer-cell` or `harvest-cell`, built on first use.
pub fn test_image(name: &str) -> String {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashMap<String, String>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some(tag) = built.get(name) {
        return tag.clone();
    }
    let binary = bin(name);
    let meta = std::fs::metadata(&binary).unwrap();
    let stamp = meta.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let tag = format!("colony-{name}:test2-{:x}-{stamp:x}", meta.len());
    let exists = Command::new("docker").args(["image", "inspect", &tag]).output().unwrap().status.success();
    if !exists {
        import(&binary, name, &tag);
    }
    built.insert(name.to_owned(), tag.clone());
    tag
}

fn libraries(binary: &Path) -> Vec<PathBuf> {
    let out = run(Command::new("ldd").arg(binary));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')).map(PathBuf::from))
        .collect()
}

fn import(binary: &Path, name: &str, tag: &str) {
    let root = tempfile::tempdir().unwrap();
    let put = |from: &Path, to: &Path| {
        let dest = root.path().join(to.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    };
    let sleep = PathBuf::from("/bin/sleep");
    for exe in [binary, sleep.as_path()] {
        for lib in libraries(exe) {
            put(&lib, &lib);
        }
    }
    put(binary, &Path::new("/usr/local/bin").join(name));
    put(&sleep, &sleep);
    // The S3 client insists on a root store, even for a plain-http endpoint.
    let certs = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    put(&certs, &certs);
    let tmp = root.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    run(Command::new("chmod").arg("1777").arg(&tmp));
    let entrypoint = format!("ENTRYPOINT [\"/usr/local/bin/{name}\"]");
    let script = format!(
        "tar -C {} -c . | docker import --change '{entrypoint}' --change 'ENV TMPDIR=/tmp' - {tag} >/dev/null",
        root.path().display()
    );
    run(Command::new("bash").arg("-c").arg(script));
}

/// The three images built by `Dockerfiles/build.sh` from the debug binaries
/// (the release images' Dockerfiles, with `BINARY_FROM=prebuilt`), once per
/// test process. The script makes the debootstrap base images first if this
/// machine has none (needs root and debootstrap). Returns the tag.
pub fn dockerfile_images() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for name in ["mothership", "observer-cell", "harvest-cell"] {
            bin(name); // built, or a clear panic saying how
        }
        let tag = "e2e";
        run(Command::new("bash")
            .arg(root.join("Dockerfiles/build.sh"))
            .args(["--profile", "debug", "--tag", tag, "--no-cargo"])
            .current_dir(root));
        tag.to_owned()
    })
}
