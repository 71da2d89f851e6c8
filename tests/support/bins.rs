//! The workspace's binaries, as built by `cargo build --workspace`.

use std::path::PathBuf;

/// Path to a workspace binary of the same build profile as the running
/// test (`target/<profile>/deps/<test>-<hash>`) or bench binary
/// (`target/<profile>/<bench>`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("target dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target dir");
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first with `cargo build --workspace` (the README's test command does)",
        path.display()
    );
    path
}
