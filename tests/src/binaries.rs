//! Finds the workspace's binaries from a test: `cargo test --workspace` builds every binary of
//! a package that has integration tests into `target/<profile>/`, beside the `deps/` folder
//! that holds the test executable.

use std::path::PathBuf;

/// `target/<profile>/<name>` for the running test. Panics with the command to run when the
/// binary is missing, since a test cannot do anything sensible without it.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .filter(|d| d.file_name().is_some_and(|n| n == "deps"))
        .and_then(|d| d.parent())
        .or_else(|| exe.parent())
        .expect("target directory");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --workspace --bins` (cargo test --workspace does)",
        bin.display()
    );
    bin
}
