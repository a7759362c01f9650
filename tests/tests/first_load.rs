//! The page's download budget (issue 5): what a visitor fetches before the first training step,
//! gzipped as a web server would send it. A size is not a timing, so it can be a test: it fails
//! when a dependency or a build setting brings megabytes back.

use std::path::Path;
use std::process::{Command, Stdio};

use objlab_e2e::dist_dir;

/// At most this many bytes of wasm per file, gzipped: issue 5's first-load target, 4 MB. The
/// worker was 7.3 MB while cubecl's unused on-disk cache (turso, a SQL engine) was in it; the
/// patched cubecl crates (`patches/README.md`) leave it out (docs/performance.md, "Size").
const WASM_BUDGET_GZ: u64 = 4_000_000;

/// `gzip -9` size of one file, as `cargo xtask build` reports it.
fn gzipped_size(path: &Path) -> u64 {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("gzip {}: {e}", path.display()));
    assert!(out.status.success(), "gzip {} failed", path.display());
    out.stdout.len() as u64
}

#[test]
fn each_wasm_fits_the_first_load_budget() {
    let dist = dist_dir();
    for name in ["objlab-app_bg.wasm", "objlab-worker_bg.wasm"] {
        let path = dist.join(name);
        assert!(path.exists(), "{} is missing: build the page first", path.display());
        let raw = std::fs::metadata(&path).unwrap().len();
        let gz = gzipped_size(&path);
        println!("{name}: {:.1} MB, {:.2} MB gzipped", raw as f64 / 1e6, gz as f64 / 1e6);
        assert!(
            gz <= WASM_BUDGET_GZ,
            "{name} is {:.2} MB gzipped, over the {:.1} MB budget: look for a new dependency or feature \
             (`cargo tree --target wasm32-unknown-unknown -p objlab-worker`) or a changed `wasm-release` profile",
            gz as f64 / 1e6,
            WASM_BUDGET_GZ as f64 / 1e6,
        );
    }
}
