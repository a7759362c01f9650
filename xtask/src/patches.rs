//! Keeps the patched crates (`patches/`, wired in by `[patch.crates-io]`) from rebuilding all of
//! burn and cubecl in every fresh clone.
//!
//! Why: cargo judges a registry crate fresh by its version, but a path crate by its files'
//! modification times, which a fresh `git clone` sets to now. Without this, every clone (CI's)
//! would find the patched `cubecl-runtime` newer than the shared target folder's build of it and
//! rebuild everything above it: all of burn and cubecl, native and wasm, ~40 minutes on 2 cores.
//!
//! How: the target folder keeps a stamp, `objlab-patches.stamp`, with a line per patched crate
//! (`patches/<crate>/`): its name, a hash of its files and the time that content was first built
//! there. Before any build, each crate's files get their line's time. Same content: the files
//! are as old as the build that used them, so cargo keeps it. New content (an edit, a new crate,
//! or another clone's): a new line at *now*, newer than every earlier build, so cargo rebuilds
//! what depends on that crate, and only that. The one case this cannot see: patched files
//! edited and built with plain `cargo` (not the xtask), then put back as they were; `touch` them
//! after such a round trip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The stamp's file name inside the target folder.
const STAMP: &str = "objlab-patches.stamp";

/// The patched crates: the folders directly in `dir`, sorted. Files directly in `dir` (its
/// README) are no build input and are left out: editing them rebuilds nothing.
fn crate_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Every file below `dir`, sorted (so the hash does not depend on the directory order).
fn files_below(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
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

/// The stamp's lines: crate name → (hash, seconds). Lines of another form (an older stamp's
/// single "hash seconds" line) are ignored, so their crates count as new once.
fn read_stamp(stamp: &Path) -> BTreeMap<String, (u64, u64)> {
    let text = std::fs::read_to_string(stamp).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (name, hash, secs) = (words.next()?, words.next()?, words.next()?);
            Some((name.to_string(), (u64::from_str_radix(hash, 16).ok()?, secs.parse().ok()?)))
        })
        .collect()
}

/// Gives each patched crate's files the time its content was first built in `target_dir` (see
/// the module's doc). Returns the crates whose content is new to this target folder (cargo
/// rebuilds what depends on them), or `None` when there is no `patches/` folder.
pub fn settle(patches: &Path, target_dir: &Path) -> Result<Option<Vec<String>>, String> {
    if !patches.is_dir() {
        return Ok(None);
    }
    let err = |e: std::io::Error| format!("patches/: {e}");
    let stamp = target_dir.join(STAMP);
    let old = read_stamp(&stamp);
    // Whole seconds, rounded down: never later than the build that follows.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (mut lines, mut new) = (BTreeMap::new(), Vec::new());
    for dir in crate_dirs(patches).map_err(err)? {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let files = files_below(&dir).map_err(err)?;
        let hash = content_hash(&dir, &files).map_err(err)?;
        let secs = match old.get(&name) {
            Some(&(h, secs)) if h == hash => secs,
            _ => {
                new.push(name.clone());
                now
            }
        };
        set_modified(&files, UNIX_EPOCH + Duration::from_secs(secs))?;
        lines.insert(name, (hash, secs));
    }
    if lines != old {
        std::fs::create_dir_all(target_dir).map_err(err)?;
        let text: String = lines.iter().map(|(name, (h, secs))| format!("{name} {h:016x} {secs}\n")).collect();
        std::fs::write(&stamp, text).map_err(err)?;
    }
    Ok(Some(new))
}

/// Gives every one of `files` the modification time `time`.
fn set_modified(files: &[PathBuf], time: SystemTime) -> Result<(), String> {
    for f in files {
        // Setting times needs ownership, not write access: a read-only handle will do.
        let file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        file.set_modified(time).map_err(|e| format!("{}: {e}", f.display()))?;
    }
    Ok(())
}

/// The file in the target folder naming the checkout that last built there.
const CHECKOUT: &str = "objlab-checkout.stamp";

/// Marks the workspace's own crates (`members`, folders of `root`) as edited — every file's
/// modification time set to now — when the target folder was last used by another checkout (or
/// by none that left its name), and records `root` as its user. Returns whether it did.
///
/// Why: cargo records a path crate's inputs relative to the workspace, and calls the crate
/// fresh when no input is newer than its last build. With one target folder for every clone,
/// a checkout whose files are older than another clone's build (edited before that build ran)
/// would get that clone's build of different code: the 2026-12-04 session's page ran a worker
/// without its engine change. Every crate of the workspace is rebuilt once after such a switch
/// (minutes); the dependencies (burn, cubecl) are not.
pub fn claim(root: &Path, members: &[&str], target_dir: &Path) -> Result<bool, String> {
    let err = |e: std::io::Error| format!("{}: {e}", target_dir.display());
    let stamp = target_dir.join(CHECKOUT);
    let me = root.to_string_lossy().into_owned();
    if std::fs::read_to_string(&stamp).is_ok_and(|last| last.trim_end() == me) {
        return Ok(false);
    }
    let now = SystemTime::now();
    for member in members {
        let dir = root.join(member);
        if dir.is_dir() {
            set_modified(&files_below(&dir).map_err(|e| format!("{}: {e}", dir.display()))?, now)?;
        }
    }
    std::fs::create_dir_all(target_dir).map_err(err)?;
    std::fs::write(&stamp, format!("{me}\n")).map_err(err)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("objlab-xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for c in ["one", "two"] {
            std::fs::create_dir_all(dir.join(format!("patches/{c}/src"))).unwrap();
            std::fs::write(dir.join(format!("patches/{c}/Cargo.toml")), "[package]\n").unwrap();
            std::fs::write(dir.join(format!("patches/{c}/src/lib.rs")), "pub fn f() {}\n").unwrap();
        }
        dir
    }

    fn mtime(p: &Path) -> SystemTime {
        std::fs::metadata(p).unwrap().modified().unwrap()
    }

    fn names(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn same_content_keeps_the_first_time_and_new_content_gets_a_new_one() {
        let dir = scratch("stamp");
        let (patches, target) = (dir.join("patches"), dir.join("target"));
        let lib = patches.join("one/src/lib.rs");
        let other = patches.join("two/src/lib.rs");

        // First sight (or an older stamp's format): every crate is new, and gets the stamp's time.
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join(STAMP), "542e3cff24f09111 1796146323\n").unwrap();
        assert_eq!(settle(&patches, &target).unwrap(), names(&["one", "two"]));
        let first = mtime(&lib);
        assert_eq!(mtime(&other), first);

        // A "fresh clone": same content, newer files. They go back to the stamp's time.
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(&lib, "pub fn f() {}\n").unwrap();
        assert!(mtime(&lib) > first);
        assert_eq!(settle(&patches, &target).unwrap(), names(&[]));
        assert_eq!(mtime(&lib), first);
        assert_eq!(mtime(&patches.join("one/Cargo.toml")), first);

        // An edit: a new time for that crate only, later than the first, so cargo rebuilds it
        // (and what depends on it) and keeps the other.
        std::fs::write(&lib, "pub fn g() {}\n").unwrap();
        assert_eq!(settle(&patches, &target).unwrap(), names(&["one"]));
        assert!(mtime(&lib) > first);
        assert_eq!(mtime(&other), first);
        let second = mtime(&lib);

        // Putting the old content back is new again (not the first stamp's time, which would
        // make cargo keep the edited build).
        std::fs::write(&lib, "pub fn f() {}\n").unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(settle(&patches, &target).unwrap(), names(&["one"]));
        assert!(mtime(&lib) > second);

        // A crate added later is new; the others keep their times.
        std::fs::create_dir_all(patches.join("three")).unwrap();
        std::fs::write(patches.join("three/Cargo.toml"), "[package]\n").unwrap();
        assert_eq!(settle(&patches, &target).unwrap(), names(&["three"]));
        assert_eq!(mtime(&other), first);

        assert_eq!(settle(&dir.join("none"), &target).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_hash_sees_paths_and_bytes() {
        let dir = scratch("hash");
        let patches = dir.join("patches");
        let krate = patches.join("one");
        let files = files_below(&krate).unwrap();
        let h = content_hash(&krate, &files).unwrap();
        assert_eq!(h, content_hash(&krate, &files).unwrap());
        // the folder's own README is not a crate
        std::fs::write(patches.join("README.md"), "notes\n").unwrap();
        assert_eq!(crate_dirs(&patches).unwrap(), vec![krate.clone(), patches.join("two")]);
        std::fs::write(krate.join("src/lib.rs"), "pub fn f() { }\n").unwrap();
        assert_ne!(h, content_hash(&krate, &files).unwrap());
        std::fs::rename(krate.join("src/lib.rs"), krate.join("src/main.rs")).unwrap();
        let moved = files_below(&krate).unwrap();
        assert_eq!(moved.len(), 2);
        assert_ne!(content_hash(&krate, &moved).unwrap(), h);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A checkout's crates are marked edited when the target folder was last another's, and
    /// left alone when it was its own.
    #[test]
    fn another_checkouts_build_marks_this_ones_crates_edited() {
        let dir = scratch("claim");
        let target = dir.join("target");
        let (a, b) = (dir.join("a"), dir.join("b"));
        for root in [&a, &b] {
            std::fs::create_dir_all(root.join("engine/src")).unwrap();
            std::fs::write(root.join("engine/src/lib.rs"), "pub fn f() {}\n").unwrap();
        }
        let lib = a.join("engine/src/lib.rs");
        let old = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        std::fs::File::open(&lib).unwrap().set_modified(old).unwrap();
        // no stamp yet: marked, and recorded
        assert!(claim(&a, &["engine", "missing"], &target).unwrap());
        assert!(mtime(&lib) > old);
        // its own build: left alone
        std::fs::File::open(&lib).unwrap().set_modified(old).unwrap();
        assert!(!claim(&a, &["engine"], &target).unwrap());
        assert_eq!(mtime(&lib), old);
        // another checkout built in between: marked again
        assert!(claim(&b, &["engine"], &target).unwrap());
        assert!(claim(&a, &["engine"], &target).unwrap());
        assert!(mtime(&lib) > old);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
