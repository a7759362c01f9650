//! The page's download budget (issue 5): what a visitor fetches before the first training step,
//! gzipped as a web server would send it. A size is not a timing, so it can be a test: it fails
//! when a dependency or a build setting brings megabytes back. And what the first step on
//! WebGPU waits for: not autotuning, whose absence is a build setting too.

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
    // The page, and the worker in both builds (plain, and with relaxed SIMD's FMA): a visitor
    // downloads the page and one of the two.
    for name in ["objlab-app_bg.wasm", "objlab-worker_bg.wasm", "objlab-worker-fma_bg.wasm"] {
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

/// The page picks the worker build by whether the browser validates relaxed SIMD
/// (`app/src/wasm_features.rs`). That is only safe if the plain build has no relaxed instruction
/// at all (it is what Safari gets) and the FMA build does use them (else it is no faster).
#[test]
fn the_plain_worker_needs_no_relaxed_simd_and_the_fma_worker_uses_it() {
    use wasmparser::{Validator, WasmFeatures};
    let dist = dist_dir();
    let mut without = WasmFeatures::default();
    without.remove(WasmFeatures::RELAXED_SIMD);
    let read = |name: &str| std::fs::read(dist.join(name)).unwrap_or_else(|e| panic!("{name}: {e} (build the page first)"));
    let (plain, fma) = (read("objlab-worker_bg.wasm"), read("objlab-worker-fma_bg.wasm"));
    let validate = |bytes: &[u8], features| Validator::new_with_features(features).validate_all(bytes).map(|_| ());
    validate(&plain, without).expect("the plain worker validates without relaxed SIMD");
    validate(&fma, without).expect_err("the FMA worker uses relaxed SIMD");
    validate(&fma, without | WasmFeatures::RELAXED_SIMD).expect("the FMA worker validates with it");
}

/// The worker is built without burn's GPU autotune (`engine/Cargo.toml`): a tab has no cache of
/// tuned choices, and on wasm cubecl launches every candidate kernel of every tuned operation
/// with the first step, which then waits for all of them (69.5 s instead of 11.2 s for the
/// `tiny` preset on WebGPU in headless Chromium, docs/performance.md). Feature unification
/// would bring it back silently from any crate that asks for burn's or burn-cubecl's defaults;
/// cargo's own feature tree of the worker says whether anything does.
#[test]
fn the_worker_is_built_without_gpu_autotune() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "--locked", "-e", "features", "--target", "wasm32-unknown-unknown", "-p", "objlab-worker", "-i", "burn-cubecl"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed");
    let tree = String::from_utf8_lossy(&out.stdout);
    // The tree is the right one: the worker's GPU backend, with its fusion.
    assert!(tree.contains("burn-cubecl feature \"fusion\""), "{tree}");
    let tuned: Vec<&str> = tree.lines().filter(|l| l.contains("feature \"autotune\"")).collect();
    assert!(
        tuned.is_empty(),
        "the worker's wasm turns on burn's GPU autotune, which delays the tab's first WebGPU step by every \
         candidate kernel: {tuned:?}\n{tree}"
    );
}

/// The training worker runs its static constructors once, itself (`worker/src/worker.rs`,
/// `run_static_constructors`), so the linker does not wrap its exports (nor the page's).
///
/// A wasm binary that never calls `__wasm_call_ctors` is a "command" to wasm-ld, which makes
/// every exported function call all the constructors first (about 4,900 of them: the GPU
/// kernel compiler's `inventory` registrations). wasm-bindgen's glue calls an export for every
/// JavaScript value Rust makes or drops, so that cost ~0.6 ms per value, ~9 ms of each kernel
/// launch on WebGPU, and made the tab's WebGPU training 1.7× slower (docs/performance.md, "In the
/// tab"). Without names (the published wasm drops them) the wrapping shows in the code: the
/// exports the linker made (8 of the worker's 20; wasm-bindgen adds the rest after linking) all
/// start by calling one and the same function; unwrapped, no two exports start with the same call.
#[test]
fn each_wasm_runs_its_constructors_once() {
    let dist = dist_dir();
    // The page's own wasm has no constructors today; if a dependency brings some, it needs the
    // same call in its `main`.
    for name in ["objlab-worker_bg.wasm", "objlab-worker-fma_bg.wasm", "objlab-app_bg.wasm"] {
        let bytes = std::fs::read(dist.join(name)).unwrap_or_else(|e| panic!("{name}: {e} (build the page first)"));
        let (exported, first_callee) = exports_first_calls(&bytes);
        let most = first_callee.values().max().copied().unwrap_or(0);
        println!("{name}: {exported} exported functions; at most {most} of them start by calling the same function");
        assert!(exported >= 5, "{name}: only {exported} exported functions, is this wasm-bindgen's output?");
        assert!(
            most < 3,
            "{name}: {most} of its {exported} exported functions start by calling the same function: wasm-ld \
             wrapped them to run every static constructor on each call from JavaScript. That binary's `main` \
             must call `__wasm_call_ctors` itself, as the worker's does (worker/src/worker.rs, `run_static_constructors`)"
        );
    }
}

/// How many functions a module exports, and for each function that some exported function calls
/// as its very first instruction, how many exported functions do.
fn exports_first_calls(bytes: &[u8]) -> (usize, std::collections::HashMap<u32, usize>) {
    use wasmparser::{ExternalKind, Operator, Parser, Payload, TypeRef};
    let mut imported_functions = 0u32;
    let mut exported = std::collections::HashSet::new();
    let mut first_calls = std::collections::HashMap::new();
    let mut body_index = 0u32;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.expect("a valid wasm file") {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    if matches!(import.expect("an import").ty, TypeRef::Func(_) | TypeRef::FuncExact(_)) {
                        imported_functions += 1;
                    }
                }
            }
            Payload::ExportSection(exports) => {
                for export in exports {
                    let export = export.expect("an export");
                    if export.kind == ExternalKind::Func {
                        exported.insert(export.index);
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let index = imported_functions + body_index;
                body_index += 1;
                if exported.contains(&index) {
                    let mut ops = body.get_operators_reader().expect("a function body");
                    if let Ok(Operator::Call { function_index }) = ops.read() {
                        *first_calls.entry(function_index).or_insert(0) += 1;
                    }
                }
            }
            _ => {}
        }
    }
    (exported.len(), first_calls)
}
