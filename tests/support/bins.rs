//! The workspace's binaries, as built by `cargo build --workspace`.

use std::path::PathBuf;

/// Path to a workspace binary next to the test executable's target dir.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first with `cargo build --workspace` (the README's test command does)",
        path.display()
    );
    path
}
