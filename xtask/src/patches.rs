//! Keeps the patched crates (`patches/`, wired in by `[patch.crates-io]`) from rebuilding all of
//! burn and cubecl in every fresh clone.
//!
//! Why: cargo judges a registry crate fresh by its version, but a path crate by its files'
//! modification times, which a fresh `git clone` sets to now. Without this, every clone (CI's)
//! would find the patched `cubecl-runtime` newer than the shared target folder's build of it and
//! rebuild everything above it: all of burn and cubecl, native and wasm, ~40 minutes on 2 cores.
//!
//! How: the target folder keeps one stamp, `objlab-patches.stamp`: a hash of the patched crates'
//! files (`patches/*/`) and the time that content was first built there. Before any build, each
//! of those files gets that time. Same content: the files are as old as the build that used them, so
//! cargo keeps it. New content (an edit, or another clone's): a new stamp at *now*, newer than
//! every earlier build, so cargo rebuilds as it should. The one case this cannot see: patched
//! files edited and built with plain `cargo` (not the xtask), then put back as they were; `touch`
//! them after such a round trip.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The stamp's file name inside the target folder.
const STAMP: &str = "objlab-patches.stamp";

/// Every file of the patched crates, the folders below `dir`, sorted (so the hash does not
/// depend on the directory order). Files directly in `dir` (its README) are no build input and
/// are left out: editing them rebuilds nothing.
fn files_below(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            todo.push(entry.path());
        }
    }
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// FNV-1a (64 bits) of every file's path (relative to `dir`) and bytes: a content fingerprint
/// that is the same in every clone. Not cryptographic; it only has to notice edits.
fn content_hash(dir: &Path, files: &[PathBuf]) -> std::io::Result<u64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for f in files {
        let rel = f.strip_prefix(dir).unwrap_or(f);
        feed(rel.to_string_lossy().as_bytes());
        feed(&[0]);
        let bytes = std::fs::read(f)?;
        feed(&(bytes.len() as u64).to_le_bytes());
        feed(&bytes);
    }
    Ok(h)
}

/// The time to give the patched files: the stamp's if it records this content, else `now`
/// (and the stamp is rewritten to say so). Returns the time and whether the content is new.
fn stamp_time(stamp: &Path, hash: u64, now: SystemTime) -> std::io::Result<(SystemTime, bool)> {
    if let Ok(text) = std::fs::read_to_string(stamp) {
        let mut words = text.split_whitespace();
        if let (Some(h), Some(secs)) = (words.next(), words.next().and_then(|s| s.parse::<u64>().ok())) {
            if h == format!("{hash:016x}") {
                return Ok((UNIX_EPOCH + Duration::from_secs(secs), false));
            }
        }
    }
    // Whole seconds, rounded down: never later than the build that follows.
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if let Some(parent) = stamp.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(stamp, format!("{hash:016x} {secs}\n"))?;
    Ok((UNIX_EPOCH + Duration::from_secs(secs), true))
}

/// Gives each file of the patched crates the stamp's time (see the module's doc). Returns whether
/// the content is new to this target folder (so cargo rebuilds what depends on it), or `None`
/// when there is no `patches/` folder.
pub fn settle(patches: &Path, target_dir: &Path) -> Result<Option<bool>, String> {
    if !patches.is_dir() {
        return Ok(None);
    }
    let err = |e: std::io::Error| format!("patches/: {e}");
    let files = files_below(patches).map_err(err)?;
    let hash = content_hash(patches, &files).map_err(err)?;
    let (time, new) = stamp_time(&target_dir.join(STAMP), hash, SystemTime::now()).map_err(err)?;
    for f in &files {
        // Setting times needs ownership, not write access: a read-only handle will do.
        let file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        file.set_modified(time).map_err(|e| format!("{}: {e}", f.display()))?;
    }
    Ok(Some(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("objlab-xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("patches/crate/src")).unwrap();
        std::fs::write(dir.join("patches/crate/Cargo.toml"), "[package]\n").unwrap();
        std::fs::write(dir.join("patches/crate/src/lib.rs"), "pub fn f() {}\n").unwrap();
        dir
    }

    fn mtime(p: &Path) -> SystemTime {
        std::fs::metadata(p).unwrap().modified().unwrap()
    }

    #[test]
    fn same_content_keeps_the_first_time_and_new_content_gets_a_new_one() {
        let dir = scratch("stamp");
        let (patches, target) = (dir.join("patches"), dir.join("target"));
        let lib = patches.join("crate/src/lib.rs");

        // First sight: a new stamp, and the files get its time.
        assert_eq!(settle(&patches, &target).unwrap(), Some(true));
        let first = mtime(&lib);

        // A "fresh clone": same content, newer files. They go back to the stamp's time.
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(&lib, "pub fn f() {}\n").unwrap();
        assert!(mtime(&lib) > first);
        assert_eq!(settle(&patches, &target).unwrap(), Some(false));
        assert_eq!(mtime(&lib), first);
        assert_eq!(mtime(&patches.join("crate/Cargo.toml")), first);

        // An edit: a new stamp, later than the first, so cargo rebuilds.
        std::fs::write(&lib, "pub fn g() {}\n").unwrap();
        assert_eq!(settle(&patches, &target).unwrap(), Some(true));
        assert!(mtime(&lib) > first);
        let second = mtime(&lib);

        // Putting the old content back is new again (not the first stamp's time, which would
        // make cargo keep the edited build).
        std::fs::write(&lib, "pub fn f() {}\n").unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(settle(&patches, &target).unwrap(), Some(true));
        assert!(mtime(&lib) > second);

        assert_eq!(settle(&dir.join("none"), &target).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_hash_sees_paths_and_bytes() {
        let dir = scratch("hash");
        let patches = dir.join("patches");
        let files = files_below(&patches).unwrap();
        let h = content_hash(&patches, &files).unwrap();
        assert_eq!(h, content_hash(&patches, &files).unwrap());
        // the folder's own README is not part of any crate
        std::fs::write(patches.join("README.md"), "notes\n").unwrap();
        assert_eq!(files_below(&patches).unwrap(), files);
        std::fs::write(patches.join("crate/src/lib.rs"), "pub fn f() { }\n").unwrap();
        assert_ne!(h, content_hash(&patches, &files).unwrap());
        std::fs::rename(patches.join("crate/src/lib.rs"), patches.join("crate/src/main.rs")).unwrap();
        let moved = files_below(&patches).unwrap();
        assert_eq!(moved.len(), 2);
        assert_ne!(content_hash(&patches, &moved).unwrap(), h);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
