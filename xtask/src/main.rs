//! `cargo xtask serve|test|bench|build`: installs what is missing, builds, serves, tests.
//!
//! Everything heavy (burn + wgpu, native and wasm32) builds into one target folder outside the
//! clone — `$CARGO_TARGET_DIR`, else `~/.cache/objlab/target` — so a fresh clone (CI's) reuses
//! the build of the last one. Nothing here downloads outside the package registries: tools come
//! from crates.io (`cargo install`) and Debian (`apt-get`), never from release pages.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod patches;
mod rounds;

const TRUNK_VERSION: &str = "0.21.14";
const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("serve" | "test" | "bench" | "build"))
        && let Err(e) = settle_patches()
    {
        eprintln!("xtask: {e}");
        return ExitCode::FAILURE;
    }
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("build") => build_page().map(|_| ()),
        // Trunk's post-build hook (Trunk.toml): not a command for people.
        Some("strip-wasm") => strip_wasm_dir(),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 serve [--port N]   build the lab and serve it on http://127.0.0.1:8080 (or N)\n\
                 test               run every test: engine, CLI, wgpu on lavapipe, the page in headless Chromium\n\
                 bench [--steps N] [--rounds N] [--browser] [--tab-cpu]\n\
                 \x20                  baby-GPT speed natively (CPU, GPU where there is one) against PyTorch, and in Chromium;\n\
                 \x20                  --rounds alternates the programs compared N times; --tab-cpu: only the tab on CPU against native\n\
                 build              build the page into dist/"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn say(msg: &str) {
    eprintln!("\x1b[1mxtask:\x1b[0m {msg}");
}

/// The workspace root. `cargo run` (the `cargo xtask` alias) sets CARGO_MANIFEST_DIR at run
/// time; that comes first because the binary may have been built from another clone sharing
/// the target folder (cargo reuses it without relinking), whose compile-time path is stale.
fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().expect("workspace root").to_path_buf()
}

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    let cache = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".cache"));
    cache.join("objlab").join("target")
}

/// Dates the patched crates so that a fresh clone reuses the shared target folder's build of
/// them (see `patches.rs`): before any cargo or Trunk build.
fn settle_patches() -> Result<(), String> {
    if let Some(new) = patches::settle(&root().join("patches"), &target_dir())?
        && !new.is_empty()
    {
        say(&format!("patches/{{{}}} new to this target folder: cargo rebuilds the crates above them once", new.join(",")));
    }
    // The workspace's crates, whose builds another checkout may have left in the target folder.
    if patches::claim(&root(), &["engine", "kernels", "worker", "app", "cli", "tests"], &target_dir())? {
        say("this checkout did not build last in the target folder: cargo rebuilds the workspace's own crates once");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root()).env("CARGO_TARGET_DIR", target_dir());
    c
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let started = Instant::now();
    let status = cmd.status().map_err(|e| format!("{what}: could not start: {e}"))?;
    if !status.success() {
        return Err(format!("{what} failed ({status})"));
    }
    say(&format!("{what}: done in {:.0} s", started.elapsed().as_secs_f64()));
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cargo_bin(name: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    home.join("bin").join(name)
}

/// A program on PATH or in cargo's bin folder.
fn find_program(name: &str) -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let p = cargo_bin(name);
    p.is_file().then_some(p)
}

/// The wasm-bindgen version pinned in Cargo.lock (wasm-bindgen-cli must match it exactly).
fn locked_wasm_bindgen() -> Result<String, String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\""
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_string());
        }
    }
    Err("Cargo.lock names no wasm-bindgen".into())
}

fn apt_install(packages: &[&str], why: &str) -> Result<(), String> {
    let is_root = output("id", &["-u"]).map(|s| s.trim() == "0").unwrap_or(false);
    if !is_root || find_program("apt-get").is_none() {
        return Err(format!(
            "{why} needs the Debian packages {}; install them (apt-get install {}) and run again",
            packages.join(", "),
            packages.join(" ")
        ));
    }
    say(&format!("installing {} with apt-get ({why})", packages.join(", ")));
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    run(update, "apt-get update")?;
    let mut install = Command::new("apt-get");
    install.env("DEBIAN_FRONTEND", "noninteractive").args(["install", "-y", "-qq", "--no-install-recommends"]).args(packages);
    run(install, "apt-get install")
}

/// wasm32 target, trunk and wasm-bindgen-cli: what building the page needs.
fn ensure_web_tools() -> Result<(), String> {
    let targets = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !targets.lines().any(|l| l.trim() == "wasm32-unknown-unknown") {
        say("adding the Rust target wasm32-unknown-unknown (rustup)");
        let mut c = Command::new("rustup");
        c.args(["target", "add", "wasm32-unknown-unknown"]);
        run(c, "rustup target add")?;
    }
    let trunk_ok = find_program("trunk")
        .and_then(|p| output(p.to_str()?, &["--version"]))
        .map(|v| v.contains(TRUNK_VERSION))
        .unwrap_or(false);
    if !trunk_ok {
        say(&format!("installing trunk {TRUNK_VERSION} from crates.io (a few minutes, once)"));
        let mut c = Command::new("cargo");
        c.args(["install", "--locked", &format!("trunk@{TRUNK_VERSION}")]);
        run(c, "cargo install trunk")?;
    }
    let wb = locked_wasm_bindgen()?;
    let wb_ok = find_program("wasm-bindgen")
        .and_then(|p| output(p.to_str()?, &["--version"]))
        .map(|v| v.split_whitespace().nth(1) == Some(wb.as_str()))
        .unwrap_or(false);
    if !wb_ok {
        // Not --locked: wasm-bindgen-cli's own lock names a crate version the registry lacks.
        say(&format!("installing wasm-bindgen-cli {wb} from crates.io (it must equal Cargo.lock's wasm-bindgen)"));
        let mut c = Command::new("cargo");
        c.args(["install", "--force", &format!("wasm-bindgen-cli@{wb}")]);
        run(c, "cargo install wasm-bindgen-cli")?;
    }
    Ok(())
}

/// Chromium + chromedriver for the browser tests, lavapipe for native wgpu without a GPU.
fn ensure_test_tools() -> Result<(), String> {
    let mut missing = Vec::new();
    if !Path::new("/usr/bin/chromium").exists() {
        missing.push("chromium");
    }
    if !Path::new("/usr/bin/chromedriver").exists() {
        missing.push("chromium-driver");
    }
    if !Path::new(LAVAPIPE_ICD).exists() {
        missing.extend(["mesa-vulkan-drivers", "libvulkan1"]);
    }
    if !missing.is_empty() {
        apt_install(&missing, "the browser and wgpu tests")?;
    }
    Ok(())
}

fn trunk() -> Command {
    let program = find_program("trunk").unwrap_or_else(|| PathBuf::from("trunk"));
    let mut c = Command::new(program);
    c.current_dir(root()).env("CARGO_TARGET_DIR", target_dir());
    // Make the cargo-installed wasm-bindgen visible to trunk, so it never downloads one.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths: Vec<PathBuf> = std::env::split_paths(&path).collect();
    paths.insert(0, cargo_bin(""));
    c.env("PATH", std::env::join_paths(paths).expect("valid PATH"));
    c
}

/// Builds the page (release) into dist/ and returns that folder.
fn build_page() -> Result<PathBuf, String> {
    ensure_web_tools()?;
    say(&format!("building the page with trunk (target folder {})", target_dir().display()));
    let mut c = trunk();
    c.args(["build", "--release"]);
    run(c, "trunk build")?;
    let dist = root().join("dist");
    // every wasm file Trunk published: the page and both worker builds
    let mut wasm: Vec<String> = std::fs::read_dir(&dist)
        .map_err(|e| format!("{}: {e}", dist.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".wasm"))
        .collect();
    wasm.sort();
    for f in &wasm {
        if let Ok(meta) = std::fs::metadata(dist.join(f)) {
            let gz = output("sh", &["-c", &format!("gzip -9 -c '{}' | wc -c", dist.join(f).display())])
                .and_then(|n| n.trim().parse::<f64>().ok())
                .map_or(String::new(), |n| format!(", {:.2} MB gzipped", n / 1e6));
            say(&format!("{f}: {:.1} MB{gz}", meta.len() as f64 / 1e6));
        }
    }
    Ok(dist)
}

/// Trunk's post-build hook: drops the `name` custom section (function names for stack
/// traces, ~15 % of the file) from every wasm file Trunk is about to publish. There is no
/// wasm-opt to do it (Trunk would download one; Debian's is too old), and stripping in the
/// cargo profile would rebuild the native target too. `OBJLAB_KEEP_NAMES=1` keeps the names,
/// for profiling the tab (`perf` with V8's `--perf-basic-prof` then names wasm functions).
fn strip_wasm_dir() -> Result<(), String> {
    if std::env::var_os("OBJLAB_KEEP_NAMES").is_some_and(|v| v == "1") {
        return Ok(());
    }
    let dir = std::env::var_os("TRUNK_STAGING_DIR").map(PathBuf::from).ok_or("strip-wasm runs as Trunk's post_build hook (TRUNK_STAGING_DIR unset)")?;
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let stripped = strip_name_section(&bytes).ok_or_else(|| format!("{}: not a wasm module", path.display()))?;
            std::fs::write(&path, &stripped).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The module without its `name` custom section (sections: id byte, LEB128 size, payload).
fn strip_name_section(wasm: &[u8]) -> Option<Vec<u8>> {
    fn leb(b: &[u8], mut i: usize) -> Option<(usize, usize)> {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = *b.get(i)?;
            i += 1;
            value |= ((byte & 0x7f) as usize) << shift;
            shift += 7;
            if byte < 0x80 {
                return Some((value, i));
            }
            if shift > 35 {
                return None;
            }
        }
    }
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return None;
    }
    let mut out = wasm[..8].to_vec();
    let mut i = 8;
    while i < wasm.len() {
        let id = wasm[i];
        let (size, payload) = leb(wasm, i + 1)?;
        let end = payload.checked_add(size).filter(|&e| e <= wasm.len())?;
        let is_name = id == 0 && leb(wasm, payload).is_some_and(|(n, at)| wasm.get(at..at + n) == Some(b"name".as_slice()));
        if !is_name {
            out.extend_from_slice(&wasm[i..end]);
        }
        i = end;
    }
    Some(out)
}

fn serve(args: &[String]) -> Result<(), String> {
    let mut port = "8080".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => port = it.next().ok_or("--port needs a number")?.clone(),
            other => return Err(format!("unknown option {other:?} (serve takes --port N)")),
        }
    }
    port.parse::<u16>().map_err(|_| format!("--port {port:?} is not a port number"))?;
    ensure_web_tools()?;
    say(&format!("building and serving the lab on http://127.0.0.1:{port}/ (Ctrl-C to stop)"));
    let mut c = trunk();
    c.args(["serve", "--release", "--address", "127.0.0.1", "--port", &port]);
    run(c, "trunk serve")
}

fn test() -> Result<(), String> {
    let started = Instant::now();
    ensure_test_tools()?;
    say("native tests: engine (flex, and wgpu on lavapipe), WGSL kernels (lavapipe) and CLI");
    let mut c = cargo();
    c.args(["test", "--release", "-p", "objlab-engine", "-p", "objlab-kernels", "-p", "objlab-cli", "-p", "xtask"]);
    if Path::new(LAVAPIPE_ICD).exists() {
        c.env("VK_DRIVER_FILES", LAVAPIPE_ICD).env("OBJLAB_REQUIRE_WGPU", "1");
    }
    run(c, "native tests")?;
    // The page's pure logic (no browser needed), in a cargo run of its own: with the engine's
    // packages above, feature unification would build all of burn a second time.
    say("native tests: the page's own logic (the loss chart's smoothing, the relaxed-SIMD probe)");
    let mut c = cargo();
    c.args(["test", "--release", "-p", "objlab-app"]);
    run(c, "page unit tests")?;
    let dist = build_page()?;
    say("browser tests: the page in headless Chromium (WebGPU on SwiftShader, and without WebGPU)");
    let mut c = cargo();
    c.args(["test", "--release", "-p", "objlab-e2e", "--", "--test-threads=1"])
        .env("OBJLAB_DIST", &dist)
        .env("CHROMIUM", "/usr/bin/chromium")
        .env("CHROMEDRIVER", "/usr/bin/chromedriver");
    run(c, "browser tests")?;
    benchmark_tools_read_each_other(&dist)?;
    say(&format!("all tests passed in {:.0} s", started.elapsed().as_secs_f64()));
    Ok(())
}

/// `cargo xtask bench` reads what `browser-bench` prints, and nothing else checks that the two
/// still agree: the forty-fifth session's press lines (their keys reordered) went unread until
/// the next benchmark run failed. So the tests run `browser-bench` on `tiny` in both of its
/// modes, for a few seconds, and read its output as `bench --browser` and `bench --tab-cpu` do.
fn benchmark_tools_read_each_other(dist: &Path) -> Result<(), String> {
    say("benchmark tools: browser-bench on tiny (a few steps, one press of the benchmark button), read as cargo xtask bench reads it");
    let report = report_of(browser_bench_command(dist, &["tiny", "cpu", "20", "1"])).map_err(|e| format!("browser-bench tiny cpu 20: {e}"))?;
    let steps_per_s = json_number(&report, "steps_per_s").filter(|v| *v > 0.0);
    let pressed = stdout_of(browser_bench_command(dist, &["tiny", "cpu", "button", "1"])).map_err(|e| format!("browser-bench tiny cpu button 1: {e}"))?;
    let press = rounds::tab_speed(&pressed, 1).map(|(speed, _)| speed).filter(|v| *v > 0.0);
    match (steps_per_s, press) {
        (Some(a), Some(b)) => {
            say(&format!("benchmark tools: read {a:.1} steps/s from a run and {b:.1} from a press"));
            Ok(())
        }
        _ => Err(format!(
            "cargo xtask bench could not read browser-bench's output (steps/s of a run: {steps_per_s:?}; of a press: {press:?}):\n{report}\n{pressed}"
        )),
    }
}

/// `browser-bench` (tests/src/bin) with `args`, on the page in `dist`.
fn browser_bench_command(dist: &Path, args: &[&str]) -> Command {
    let mut c = cargo();
    c.args(["run", "--quiet", "--release", "-p", "objlab-e2e", "--bin", "browser-bench", "--"]).args(args).env("OBJLAB_DIST", dist);
    c
}

/// The number after `"key":` in a one-line JSON report (xtask has no dependencies).
fn json_number(report: &str, key: &str) -> Option<f64> {
    let at = report.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = report[at..].trim_start();
    let end = rest.find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'))).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Runs a benchmark command, its stderr shown as it goes, and returns its stdout, or why not.
fn stdout_of(mut c: Command) -> Result<String, String> {
    let out = c.stderr(std::process::Stdio::inherit()).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("exit {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a benchmark command and returns its last stdout line (the JSON report), or why not.
fn report_of(c: Command) -> Result<String, String> {
    let text = stdout_of(c)?;
    let last = text.lines().last().unwrap_or("").to_string();
    if !last.starts_with('{') {
        return Err("no JSON report on its last line".into());
    }
    println!("{last}");
    Ok(last)
}

/// The Python with PyTorch for the reference figures: `OBJLAB_PYTHON`, else `python3`, if it
/// imports torch. Returns the interpreter and whether torch sees a CUDA GPU.
fn pytorch() -> Option<(String, bool)> {
    let python = std::env::var("OBJLAB_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python).args(["-c", "import torch; print(torch.cuda.is_available())"]).output().ok()?;
    out.status.success().then(|| (python, String::from_utf8_lossy(&out.stdout).trim() == "True"))
}

fn bench(args: &[String]) -> Result<(), String> {
    let mut steps = "50".to_string();
    let mut rounds = "1".to_string();
    let mut browser = false;
    let mut tab_cpu_only = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--steps" => steps = it.next().ok_or("--steps needs a number")?.clone(),
            "--rounds" => rounds = it.next().ok_or("--rounds needs a number")?.clone(),
            "--browser" => browser = true,
            "--tab-cpu" => tab_cpu_only = true,
            other => return Err(format!("unknown option {other:?} (bench takes --steps N, --rounds N, --browser and --tab-cpu)")),
        }
    }
    steps.parse::<usize>().ok().filter(|n| *n > 0).ok_or(format!("--steps {steps:?} is not a positive number"))?;
    let rounds = rounds.parse::<usize>().ok().filter(|n| *n > 0).ok_or(format!("--rounds {rounds:?} is not a positive number"))?;
    let mut c = cargo();
    c.args(["build", "--release", "-p", "objlab-cli"]);
    run(c, "building objlab")?;
    let objlab = target_dir().join("release").join("objlab");
    let root = root();
    let data = root.join("assets").join("tinyshakespeare.txt");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).to_string();
    if tab_cpu_only {
        ensure_test_tools()?;
        let dist = build_page()?;
        return tab_cpu_against_native(&objlab, &data, &steps, rounds, &dist);
    }

    // 1. Head to head: one baby-GPT run, objlab against the same model in PyTorch eager, in
    //    `rounds` alternated rounds (rounds::Rounds says why).
    let torch = pytorch();
    if torch.is_none() {
        say("PyTorch is not installed here (or set OBJLAB_PYTHON to a Python that has it): objlab figures only, no ratio");
    }
    let mut table = Vec::new();
    for device in ["cpu", "gpu"] {
        let ours = || {
            say(&format!("baby GPT, one run, natively on {device}: objlab, {steps} timed steps"));
            objlab_speed(&objlab, device, &steps, &data)
        };
        let theirs = || match &torch {
            Some((python, cuda)) if device == "cpu" || *cuda => {
                say(&format!("the same in PyTorch eager on {device} (bench/pytorch_baby_gpt.py)"));
                let mut c = Command::new(python);
                c.arg(root.join("bench").join("pytorch_baby_gpt.py"))
                    .args(["--device", if device == "cpu" { "cpu" } else { "cuda" }, "--steps", &steps, "--threads", &threads])
                    .arg("--data")
                    .arg(&data);
                report_of(c).ok().and_then(|r| json_number(&r, "steps_per_s"))
            }
            _ => None,
        };
        let (mut ours_all, mut theirs_all, mut pairs) = (Vec::new(), Vec::new(), rounds::Rounds::default());
        for r in 0..rounds {
            if rounds > 1 {
                say(&format!("{device}, round {} of {rounds}", r + 1));
            }
            // objlab first in the first round, so that a machine without this device stops there
            let (a, b) = rounds::one_round(r, ours, theirs);
            let Some(a) = a else {
                say(&format!("no {device} figure on this machine"));
                break;
            };
            ours_all.push(a);
            theirs_all.extend(b);
            pairs.push(Some(a), b);
        }
        if !ours_all.is_empty() {
            table.push((device, rounds::median(&ours_all), rounds::median(&theirs_all), pairs));
        }
    }
    say(&format!("baby GPT steps/s, same machine{}:  device | objlab | PyTorch eager | ratio", if rounds > 1 { ", medians of the rounds" } else { "" }));
    for (device, ours, theirs, pairs) in &table {
        let f = |v: &Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2}"));
        say(&format!("  {device} | {} | {} | {}", f(ours), f(theirs), ratio(*ours, *theirs)));
        if rounds > 1 && !pairs.is_empty() {
            say(&format!("  {device}: {}", pairs.summary("objlab", "PyTorch", 1.0)));
        }
    }

    // 2. The workspace: 1, 3 and 6 runs side by side, with the snapshot cost.
    for device in ["cpu", "gpu"] {
        for runs in ["1", "3", "6"] {
            say(&format!("baby GPT natively on {device}: {runs} run(s) side by side, {steps} steps per run, then one snapshot of each"));
            let total = (steps.parse::<usize>().expect("checked above") * runs.parse::<usize>().expect("a number")).to_string();
            let status = Command::new(&objlab)
                .args(["bench", "--preset", "baby-gpt", "--device", device, "--steps", &total, "--runs", runs, "--snapshot"])
                .arg("--data")
                .arg(&data)
                .status()
                .map_err(|e| format!("objlab: {e}"))?;
            if !status.success() {
                say(&format!("no {device} figure on this machine"));
                break;
            }
        }
    }
    if browser {
        ensure_test_tools()?;
        let dist = build_page()?;
        // SwiftShader takes ~20 s a baby-GPT step on two cores: few steps there, one run.
        // `chromium_args`: extra Chromium flags (measuring only, never the page's own setting)
        let browser_bench_with = |preset: &str, device: &str, n: &str, runs: &str, chromium_args: &str| {
            let mut c = browser_bench_command(&dist, &[preset, device, n, runs]);
            if !chromium_args.is_empty() {
                c.env("OBJLAB_CHROMIUM_ARGS", chromium_args);
            }
            report_of(c).map_err(|e| format!("browser benchmark: {e}"))
        };
        let browser_bench = |preset: &str, device: &str, n: &str, runs: &str| browser_bench_with(preset, device, n, runs, "");
        let mut tab_gpu = None;
        let gpu_steps = "3";
        for (device, n, runs) in [("cpu", "20", "1"), ("cpu", "30", "3"), ("cpu", "60", "6"), ("gpu", gpu_steps, "1")] {
            say(&format!("baby GPT in headless Chromium on {device}: {runs} run(s), {n} steps in all after each run's first"));
            let report = browser_bench("baby-gpt", device, n, runs)?;
            if device == "gpu" {
                tab_gpu = json_number(&report, "steps_per_s");
            }
        }
        let _ = tab_against_native_on_swiftshader(&objlab, &data, "baby-gpt", gpu_steps, tab_gpu);
        // Issue 4's "6 runs × 10,000 points must redraw without jank", live: six `tiny` runs
        // train until their curves hold ~10,000 points each (a loss message per run and step),
        // and the page's frames/s and long tasks over that time are printed (~4 minutes here).
        say("six tiny runs in headless Chromium on cpu to ~10,000 steps each: the page's frames/s and long tasks while the curves grow");
        browser_bench("tiny&snapshot_every=100000", "cpu", "60000", "6")?;
        // The CPU path's matrix products alone, against the 128-bit FMA peak in the same page:
        // how close the tab runs to what wasm's vectors allow (docs/performance.md, "In the tab",
        // thirty-seventh session). Its own workspace, so that its features stay its own.
        say("the tab's matrix products alone in headless Chromium, against the 128-bit FMA peak (bench/wasm_gemm)");
        let mut c = cargo();
        c.args(["build", "--release", "--target", "wasm32-unknown-unknown", "--manifest-path"])
            .arg(root.join("bench").join("wasm_gemm").join("Cargo.toml"));
        run(c, "building bench/wasm_gemm")?;
        let mut c = cargo();
        c.args(["run", "--quiet", "--release", "-p", "objlab-e2e", "--bin", "wasm-gemm-bench", "--"])
            .arg(target_dir().join("wasm32-unknown-unknown").join("release").join("wasm_gemm.wasm"));
        run(c, "wasm-gemm-bench")?;
        tab_cpu_against_native(&objlab, &data, &steps, rounds, &dist)?;
        // The small model, where the tab's host work per launch shows (baby GPT's SwiftShader
        // arithmetic hid a 50× slower worker, docs/performance.md "In the tab"); its losses are
        // read every 20 steps in both, as baby GPT's are every 10.
        let tiny_steps = "20";
        say(&format!("tiny in headless Chromium on gpu: 1 run, {tiny_steps} steps after its first, losses every 20 steps"));
        let tab_tiny = json_number(&browser_bench("tiny&log_every=20", "gpu", tiny_steps, "1")?, "steps_per_s");
        // The same tab without the two safety transforms Dawn applies to every shader and native
        // wgpu skips for cubecl's kernels (bounds clamps, zero-filled workgroup memory): what of
        // the gap is the page's own (docs/performance.md, "In the tab", twenty-ninth session).
        say("tiny again, with Dawn's bounds checks and workgroup zero-fill turned off (Chromium flags for measuring; a page cannot)");
        let unsafe_flags = "--enable-dawn-features=disable_robustness,disable_workgroup_init";
        let tab_tiny_unchecked = json_number(&browser_bench_with("tiny&log_every=20", "gpu", tiny_steps, "1", unsafe_flags)?, "steps_per_s");
        let native_tiny = tab_against_native_on_swiftshader(&objlab, &data, "tiny", tiny_steps, tab_tiny);
        say_tab_against_native("tiny without Dawn's two transforms", tab_tiny_unchecked, native_tiny);
    }
    Ok(())
}

/// Chromium's software GPU, SwiftShader, as a Vulkan driver native wgpu can load.
const SWIFTSHADER_ICD: &str = "/usr/lib/chromium/vk_swiftshader_icd.json";

/// Issue 5's "tab on WebGPU within 1.5× of native wgpu" on the one device both can run on here:
/// native wgpu on Chromium's own SwiftShader (its Vulkan driver), beside the tab's figure for
/// `preset` on the same SwiftShader. A CPU rasteriser, so a comparison of the two hosts'
/// overheads, not a GPU figure (docs/performance.md, "In the tab").
/// Returns the native figure.
fn tab_against_native_on_swiftshader(objlab: &Path, data: &Path, preset: &str, steps: &str, tab: Option<f64>) -> Option<f64> {
    if !Path::new(SWIFTSHADER_ICD).exists() {
        say(&format!("no {SWIFTSHADER_ICD}: no native figure on the tab's software GPU"));
        return None;
    }
    say(&format!("{preset} natively on the same SwiftShader (its Vulkan driver), {steps} timed steps"));
    let mut c = Command::new(objlab);
    c.args(["bench", "--preset", preset, "--device", "gpu", "--software", "--steps", steps])
        .arg("--data")
        .arg(data)
        .env("VK_DRIVER_FILES", SWIFTSHADER_ICD);
    let native = report_of(c).ok().and_then(|r| json_number(&r, "steps_per_s"));
    say_tab_against_native(preset, tab, native);
    native
}

/// One line of the tab's steps/s on SwiftShader beside native wgpu's, and their ratio.
fn say_tab_against_native(what: &str, tab: Option<f64>, native: Option<f64>) {
    let f = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
    say(&format!("{what} steps/s on SwiftShader:  tab (WebGPU) {} | native wgpu {} | tab/native {}", f(tab), f(native), ratio(tab, native)));
}

/// Steps/s of one baby-GPT run of `objlab bench` on `device` ("cpu" or "gpu") for `steps`
/// timed steps of `data`; `None` where it has no figure (no such device here).
fn objlab_speed(objlab: &Path, device: &str, steps: &str, data: &Path) -> Option<f64> {
    let mut c = Command::new(objlab);
    c.args(["bench", "--preset", "baby-gpt", "--device", device, "--steps", steps]).arg("--data").arg(data);
    report_of(c).ok().and_then(|r| json_number(&r, "steps_per_s"))
}

/// Presses of the page's benchmark button per round, and the first one timed: the first two
/// still pay for V8 compiling the worker's hot loops, so the tab's figure is the median of
/// presses 3 to 6 (docs/performance.md, "Issue 5's targets at a glance").
const PRESSES: usize = 6;
const FIRST_TIMED_PRESS: usize = 3;

/// Issue 5's "tab on CPU ≥ 0.5× native CPU" for baby GPT: the page's benchmark button in
/// headless Chromium without WebGPU (flex in wasm, one worker per core), against native flex
/// for `steps` steps, in `rounds` alternated rounds ([`rounds`] says why), on the page in
/// `dist`. Fails when no round has both figures.
fn tab_cpu_against_native(objlab: &Path, data: &Path, steps: &str, rounds: usize, dist: &Path) -> Result<(), String> {
    let tab = || {
        say(&format!("baby GPT in headless Chromium without WebGPU: the page's benchmark button, {PRESSES} presses"));
        let out = stdout_of(browser_bench_command(dist, &["baby-gpt", "cpu", "button", &PRESSES.to_string()])).map_err(|e| say(&format!("browser benchmark: {e}"))).ok()?;
        print!("{out}");
        let (speed, presses) = rounds::tab_speed(&out, FIRST_TIMED_PRESS)?;
        let presses: Vec<String> = presses.iter().map(|p| format!("{p:.2}")).collect();
        say(&format!("the tab: {speed:.2} steps/s, the median of presses {FIRST_TIMED_PRESS}–{PRESSES} ({})", presses.join(", ")));
        Some(speed)
    };
    let native = || {
        say(&format!("baby GPT natively on the CPU: objlab, {steps} timed steps"));
        objlab_speed(objlab, "cpu", steps, data)
    };
    let mut pairs = rounds::Rounds::default();
    for r in 0..rounds {
        say(&format!("the tab on CPU against native CPU, round {} of {rounds}", r + 1));
        let (a, b) = rounds::one_round(r, tab, native);
        if let (Some(a), Some(b)) = (a, b) {
            say(&format!("round {}: the tab {a:.2} | native {b:.2} steps/s | {:.2}×", r + 1, a / b));
        }
        pairs.push(a, b);
    }
    say(&format!("baby GPT, the tab on CPU against native CPU: {}", pairs.summary("the tab", "native", 0.5)));
    if pairs.is_empty() {
        return Err("no round of the tab against native CPU had both figures".into());
    }
    Ok(())
}

/// `a / b` as "0.71×", or "—" without both figures.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_name_section() {
        // header, a type section (id 1) with one byte, a "name" custom section, a "keep" one
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        wasm.extend([1, 1, 0]);
        wasm.extend([0, 7, 4, b'n', b'a', b'm', b'e', 9, 9]);
        wasm.extend([0, 6, 4, b'k', b'e', b'e', b'p', 5]);
        let out = strip_name_section(&wasm).unwrap();
        let mut want = b"\0asm\x01\0\0\0".to_vec();
        want.extend([1, 1, 0]);
        want.extend([0, 6, 4, b'k', b'e', b'e', b'p', 5]);
        assert_eq!(out, want);
        assert!(strip_name_section(b"not wasm").is_none());
        // a section running past the end is refused, not cut
        assert!(strip_name_section(b"\0asm\x01\0\0\0\x01\x09\0").is_none());
    }

    #[test]
    fn reads_numbers_from_a_json_line() {
        let r = r#"{"device":"cpu","steps_per_s":4.25,"tflops":1e-2}"#;
        assert_eq!(json_number(r, "steps_per_s"), Some(4.25));
        assert_eq!(json_number(r, "tflops"), Some(0.01));
        assert_eq!(json_number(r, "missing"), None);
    }
}
