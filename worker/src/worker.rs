//! The training worker: runs the engine off the main thread.
//!
//! It holds a workspace of runs (each its own spec, model, optimiser and random streams) and
//! one driving task that gives the next step to the run the [`Scheduler`] picks, so the runs'
//! curves advance together and a run's numbers are the same alone or beside others. Commands
//! arrive as [`ToWorker`] messages; progress leaves as [`FromWorker`] messages tagged with the
//! run. Every reset bumps a generation counter, and tasks of an older generation end at their
//! next check. The loop reads the device only every `log_every` steps of a run (one batched
//! read) and yields to the event loop after every step so commands take effect at once.
//!
//! Every `snapshot_every` steps a run's representations are read (token embeddings and the
//! probe set's pooled states, one read), projected by PCA and scored by a linear probe, and
//! the runs that reached that step are compared by linear CKA: the statistics run on the GPU
//! through `objlab-kernels`' WGSL when WebGPU is there, else on their CPU references.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use objlab_engine::burn::tensor::Device;
use objlab_engine::data::Corpus;
use objlab_engine::memory;
use objlab_engine::probe_set::ProbeSet;
use objlab_engine::protocol::{DeviceKind, FromWorker, RunId, RunState, Snapshot, ToWorker};
use objlab_engine::scheduler::{Scheduler, Slot};
use objlab_engine::spec::{CORPORA, DeviceChoice, ExperimentSpec, is_software_adapter};
use objlab_engine::train::Trainer;
use objlab_engine::train::data_parallel::{Absent, HelperLink};
use objlab_kernels::{Analyser, Matrix};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent, Response};

/// The CPU backend's name; the `fma` build (relaxed SIMD's fused multiply-add in the matrix
/// products) says so, which is how the page and its tests tell the two builds apart.
const CPU_NAME: &str = if cfg!(feature = "fma") {
    "flex backend in WebAssembly, relaxed-SIMD FMA"
} else {
    "flex backend in WebAssembly"
};
/// The benchmark's least warm-up: V8 optimises the workers' hot code in the first seconds of
/// stepping, and a press timed before was ~25 % slow (13.8 against 17–18 steps/s).
const BENCHMARK_WARMUP_MS: f64 = 2_500.0;
/// How long the benchmark waits for helper workers still loading (they come up in well under
/// a second from this worker's compiled module; one that never does is timed without).
const HELPERS_WAIT_MS: f64 = 10_000.0;
/// One run of the workspace.
struct RunSlot {
    id: RunId,
    spec: ExperimentSpec,
    /// `None` while the run loads, or while the driving task holds it for a step.
    trainer: Option<Trainer>,
    /// On the CPU backend (its steps can be split with the helper worker).
    cpu: bool,
    /// A state to tell the page once the step in flight is done: a pause pressed during a step
    /// (which waits for the helper worker, so commands arrive meanwhile) is announced after that
    /// step's figures, never before them.
    announce: Option<RunState>,
    /// Steps/s of this run over the current window.
    window_start: f64,
    window_steps: usize,
    /// When the teaching view's examples were last sent (ms; 0 before the first).
    examples_ms: f64,
}

#[derive(Default)]
struct Shared {
    generation: u64,
    /// Every run paused at once (the page's pause button).
    paused: bool,
    /// The WebGPU device, once acquired (wgpu initialises once per worker).
    gpu: Option<(Device, String)>,
    /// Whether a WebGPU initialisation is under way: a second caller (a run added while the
    /// first run's device is still being set up) waits for it instead of initialising again,
    /// which wgpu refuses ("a server is still registered"), and which fell back to the CPU.
    gpu_pending: bool,
    /// The CPU backend's name and why it was picked, once a run is on it (the device line,
    /// repeated with the helper worker's state when that changes).
    cpu: Option<(String, Option<String>)>,
    corpora: Vec<(String, Arc<Corpus>)>,
    runs: Vec<RunSlot>,
    scheduler: Scheduler,
    /// The generation whose driving task is running, if any.
    driving: Option<u64>,
    analyser: Option<Rc<Analyser>>,
    /// The probe set of each corpus (its letters are the corpus's own), by corpus name.
    probes: Vec<(String, Rc<ProbeSet>)>,
    /// Pooled probe representations by step, for CKA between the runs that reached it.
    pooled: BTreeMap<usize, Vec<(RunId, Matrix)>>,
    /// Snapshots whose statistics are still being computed, oldest first.
    jobs: VecDeque<SnapshotJob>,
    /// A benchmark is timing its own run: the workspace's runs wait.
    benchmarking: bool,
    /// Why the WebGPU device was lost, once it was ([`gpu_lost`]).
    gpu_lost: Option<String>,
    /// Reads waiting for their run's trainer between two steps ([`between_steps`]).
    reads_waiting: usize,
}

thread_local! {
    static SHARED: RefCell<Shared> = RefCell::new(Shared::default());
    /// This worker's global scope, looked up once: a borrowed JavaScript value is cheaper than a
    /// new one (which cost ~0.6 ms here while every call into the module reran the static
    /// constructors, see `run_static_constructors`).
    static SCOPE: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
}

/// Calls `f` with this worker's global scope (`self`).
pub fn with_scope<R>(f: impl FnOnce(&DedicatedWorkerGlobalScope) -> R) -> R {
    SCOPE.with(f)
}

fn post(message: &FromWorker) {
    with_scope(|s| {
        let _ = s.post_message(&message.to_json().into());
    });
}

fn post_state(run: RunId, state: RunState) {
    post(&FromWorker::State { run, state });
}

/// Sends warnings and errors of the `log` facade (burn, cubecl, wgpu) to the browser console,
/// where a developer looks when WebGPU misbehaves.
struct ConsoleLog;

impl log::Log for ConsoleLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let text = format!("[{}] {}", record.target(), record.args());
            match record.level() {
                log::Level::Error => web_sys::console::error_1(&text.into()),
                _ => web_sys::console::warn_1(&text.into()),
            }
        }
    }
    fn flush(&self) {}
}

static CONSOLE_LOG: ConsoleLog = ConsoleLog;

// The linker's function that runs every static constructor of the module once (the GPU
// backend's kernel compiler registers its IR dialects through `inventory`: ~4,900 of them).
#[cfg(target_family = "wasm")]
unsafe extern "C" {
    fn __wasm_call_ctors();
}

/// Runs the module's static constructors, once, before anything else.
///
/// Why by hand: the worker is a binary, and wasm-ld treats a binary that never calls
/// `__wasm_call_ctors` itself as a "command", wrapping *every* export so that each call from
/// JavaScript into the module runs all the constructors again first. wasm-bindgen's glue calls
/// exports for every JavaScript value Rust makes or drops (`__externref_table_alloc`/`_dealloc`),
/// so each WebGPU call paid for ~4,900 constructors: ~0.6 ms per value, ~9 ms per kernel launch
/// in Chromium (docs/performance.md, "In the tab"). Calling it from `main` tells the linker that
/// the module runs them itself, so no export is wrapped (the `inventory` crate's documentation
/// recommends exactly this). Checked by `each_wasm_runs_its_constructors_once`
/// (tests/tests/first_load.rs).
fn run_static_constructors() {
    // SAFETY: called once, first thing in `main`, before any code that reads what the
    // constructors register.
    #[cfg(target_family = "wasm")]
    unsafe {
        __wasm_call_ctors()
    }
}

/// The worker's entry point: runs the static constructors, installs the panic reporter and the
/// message handler.
pub fn start() {
    run_static_constructors();
    if log::set_logger(&CONSOLE_LOG).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    std::panic::set_hook(Box::new(|info| {
        // The runs cannot go on (the module or the device may be broken): end them at once.
        let ids = SHARED.with(|s| match s.try_borrow_mut() {
            Ok(mut s) => {
                s.generation += 1;
                s.gpu = None;
                s.runs.iter().map(|r| r.id).collect()
            }
            Err(_) => Vec::new(),
        });
        // a helper's report goes to the training worker, which names it ("the second worker failed: …")
        let message = match device_lost() {
            // wgpu panics on a lost device; say what happened first
            Some(why) => format!("{} ({info})", lost_message(&why, None)),
            None if crate::helper::serving() => info.to_string(),
            None => format!("the training worker failed: {info}"),
        };
        post(&FromWorker::Error { run: None, message });
        for id in ids {
            post_state(id, RunState::Failed);
        }
        web_sys::console::error_1(&format!("{info}").into());
    }));
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        let data = event.data();
        match data.as_string().map(|s| ToWorker::from_json(&s)) {
            Some(Ok(message)) => handle(message),
            Some(Err(e)) => post(&FromWorker::Error { run: None, message: e }),
            None => post(&FromWorker::Error { run: None, message: "the worker only understands text messages".into() }),
        }
    });
    // Binary messages come from a training worker to this one as its helper (`helper.rs`);
    // the rest go to `on_message`.
    if let Err(why) = crate::helper::listen(on_message.as_ref()) {
        web_sys::console::warn_1(&why.into());
        with_scope(|s| s.set_onmessage(Some(on_message.as_ref().unchecked_ref())));
    }
    on_message.forget();
    post(&FromWorker::Ready);
}

fn generation() -> u64 {
    SHARED.with(|s| s.borrow().generation)
}

fn is_current(generation: u64) -> bool {
    self::generation() == generation
}

fn run_ids() -> Vec<RunId> {
    SHARED.with(|s| s.borrow().runs.iter().map(|r| r.id).collect())
}

/// Whether run `id` is in the middle of a step (the driving task holds its trainer): then
/// `state` is kept to announce after the step, and true returned.
fn defer(s: &mut Shared, id: RunId, state: RunState) -> bool {
    match s.runs.iter_mut().find(|r| r.id == id) {
        Some(r) if r.trainer.is_none() => {
            r.announce = Some(state);
            true
        }
        _ => false,
    }
}

fn handle(message: ToWorker) {
    match message {
        ToWorker::AddRun { run, spec } => add_run(run, spec),
        ToWorker::AddCorpus { name, text } => match Corpus::from_text(&name, &text) {
            Ok(corpus) => SHARED.with(|s| {
                let mut s = s.borrow_mut();
                s.corpora.retain(|(n, _)| *n != name);
                s.corpora.push((name, Arc::new(corpus)));
            }),
            Err(message) => post(&FromWorker::Error { run: None, message }),
        },
        ToWorker::RemoveRun { run } => SHARED.with(|s| {
            let mut s = s.borrow_mut();
            s.runs.retain(|r| r.id != run);
            s.scheduler.remove(run);
            for runs in s.pooled.values_mut() {
                runs.retain(|(id, _)| *id != run);
            }
        }),
        ToWorker::PauseRun { run } => {
            let paused = SHARED.with(|s| {
                let mut s = s.borrow_mut();
                let active = s.scheduler.slot(run) == Some(Slot::Active);
                if active {
                    s.scheduler.set(run, Slot::Paused);
                }
                active && !defer(&mut s, run, RunState::Paused)
            });
            if paused {
                post_state(run, RunState::Paused);
            }
        }
        ToWorker::ResumeRun { run } => {
            let (resumed, all_paused) = SHARED.with(|s| {
                let mut s = s.borrow_mut();
                let paused = s.scheduler.slot(run) == Some(Slot::Paused);
                if paused {
                    s.scheduler.set(run, Slot::Active);
                }
                if let Some(r) = s.runs.iter_mut().find(|r| r.id == run) {
                    r.announce = None;
                }
                (paused, s.paused)
            });
            if resumed {
                post_state(run, if all_paused { RunState::Paused } else { RunState::Running });
            }
        }
        ToWorker::Pause | ToWorker::Resume => {
            let pause = matches!(message, ToWorker::Pause);
            let active: Vec<RunId> = SHARED.with(|s| {
                let mut s = s.borrow_mut();
                s.paused = pause;
                let active: Vec<RunId> = s.runs.iter().map(|r| r.id).filter(|id| s.scheduler.slot(*id) == Some(Slot::Active)).collect();
                if pause {
                    active.into_iter().filter(|id| !defer(&mut s, *id, RunState::Paused)).collect()
                } else {
                    for r in &mut s.runs {
                        r.announce = None;
                    }
                    active
                }
            });
            for id in active {
                post_state(id, if pause { RunState::Paused } else { RunState::Running });
            }
        }
        ToWorker::Stop => {
            let stopped: Vec<RunId> = SHARED.with(|s| {
                let mut s = s.borrow_mut();
                let ids: Vec<RunId> = s.runs.iter().map(|r| r.id).collect();
                let live: Vec<RunId> =
                    ids.into_iter().filter(|id| matches!(s.scheduler.slot(*id), Some(Slot::Active | Slot::Paused))).collect();
                for id in &live {
                    s.scheduler.set(*id, Slot::Done);
                }
                live
            });
            for id in stopped {
                post_state(id, RunState::Stopped);
            }
        }
        ToWorker::Reset => SHARED.with(|s| {
            let mut s = s.borrow_mut();
            s.generation += 1;
            s.paused = false;
            s.runs.clear();
            s.scheduler = Scheduler::default();
            s.pooled.clear();
            s.jobs.clear();
        }),
        ToWorker::Benchmark { spec, steps } => {
            let busy = SHARED.with(|s| std::mem::replace(&mut s.borrow_mut().benchmarking, true));
            if busy {
                post(&FromWorker::BenchmarkFailed { message: "a benchmark is already running".into() });
                return;
            }
            wasm_bindgen_futures::spawn_local(async move {
                let result = benchmark(spec, steps).await;
                SHARED.with(|s| s.borrow_mut().benchmarking = false);
                if let Err(message) = result {
                    post(&FromWorker::BenchmarkFailed { message: format!("the benchmark failed: {message}") });
                }
            });
        }
        ToWorker::Attention { run, text } => {
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(message) = attention(run, &text).await {
                    post(&FromWorker::Error { run: None, message });
                }
            });
        }
        ToWorker::Ask { run, text } => wasm_bindgen_futures::spawn_local(ask(run, text)),
    }
}

/// Checks the workspace's memory with `spec` added, then loads the run and starts driving.
fn add_run(id: RunId, spec: ExperimentSpec) {
    if let Err(e) = spec.validate() {
        post(&FromWorker::Error { run: Some(id), message: e });
        post_state(id, RunState::Failed);
        return;
    }
    let fits = SHARED.with(|s| {
        let s = s.borrow();
        let mut specs: Vec<&ExperimentSpec> = s.runs.iter().filter(|r| r.id != id).map(|r| &r.spec).collect();
        specs.push(&spec);
        // The vocabulary is not known before the corpus loads: 128 bounds it for the built-in
        // one, and a text of one's own is loaded already.
        let vocab = s.corpora.iter().map(|(_, c)| c.tokenizer.vocab_size()).fold(128, usize::max);
        memory::check_workspace(&specs, vocab, memory::DEVICE_BUDGET)
    });
    if let Err(e) = fits {
        post(&FromWorker::Error { run: Some(id), message: e });
        post_state(id, RunState::Failed);
        return;
    }
    let generation = SHARED.with(|s| {
        let mut s = s.borrow_mut();
        s.runs.retain(|r| r.id != id);
        s.runs.push(RunSlot { id, spec: spec.clone(), trainer: None, cpu: false, announce: None, window_start: 0.0, window_steps: 0, examples_ms: 0.0 });
        s.generation
    });
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(message) = load_run(id, spec, generation).await
            && is_current(generation)
        {
            post(&FromWorker::Error { run: Some(id), message });
            post_state(id, RunState::Failed);
        }
    });
}

/// Lets the worker handle the messages that came meanwhile (the page's commands, the
/// helper's answers), then goes on: a message to itself through a `MessageChannel`, made once.
/// Not `sleep(0)`: `setTimeout` waits at least 4 ms once nested five deep, as a loop of steps
/// is, and a `Promise` per call costs ~3 ms of new JavaScript values here (`helper.rs`).
fn yield_now() -> impl Future<Output = ()> {
    struct Yield {
        /// The round of [`YIELDS`] this call waits for to pass, once posted.
        round: Option<u64>,
    }
    impl Future for Yield {
        type Output = ();
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
            YIELDS.with(|y| {
                let passed = y.passed.get();
                match self.round {
                    Some(round) if passed > round => return std::task::Poll::Ready(()),
                    Some(_) => {}
                    None => {
                        self.round = Some(passed);
                        let _ = y.sender.post_message(&JsValue::UNDEFINED);
                    }
                }
                y.waiting.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            })
        }
    }
    Yield { round: None }
}

/// The channel of [`yield_now`]: each message through it ends a round and wakes the callers.
struct Yields {
    /// The channel's two ends, kept (each getter call would make a new JavaScript value).
    sender: web_sys::MessagePort,
    _receiver: web_sys::MessagePort,
    passed: std::cell::Cell<u64>,
    waiting: RefCell<Vec<std::task::Waker>>,
    _on_message: Closure<dyn FnMut(JsValue)>,
}

thread_local! {
    static YIELDS: Yields = {
        let channel = web_sys::MessageChannel::new().expect("a worker can make a MessageChannel");
        let on_message = Closure::<dyn FnMut(JsValue)>::new(|_| {
            let waiting = YIELDS.with(|y| {
                y.passed.set(y.passed.get() + 1);
                std::mem::take(&mut *y.waiting.borrow_mut())
            });
            waiting.into_iter().for_each(std::task::Waker::wake);
        });
        let receiver = channel.port1();
        receiver.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Yields { sender: channel.port2(), _receiver: receiver, passed: std::cell::Cell::new(0), waiting: RefCell::new(Vec::new()), _on_message: on_message }
    };
}

/// Resolves after `ms` milliseconds, letting the worker handle messages meanwhile.
async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = with_scope(|s| s.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms));
    });
    let _ = JsFuture::from(promise).await;
}

/// The worker's one clock: milliseconds with a fraction (`performance.now()`, monotonic), for
/// every duration it reports, down to the parts of a benchmark step that take under a
/// millisecond.
///
/// The `Performance` object is looked up once: the lookup makes two new `JsValue`s (`self` and
/// `performance()`), which made each clock read cost ~1.2 ms while every call into the module
/// reran the static constructors (`run_static_constructors`), a split step's 11 reads ~13 ms.
pub fn precise_ms() -> f64 {
    thread_local! {
        static PERFORMANCE: Option<web_sys::Performance> = with_scope(|s| s.performance());
    }
    PERFORMANCE.with(|p| p.as_ref().map_or_else(js_sys::Date::now, |p| p.now()))
}

async fn fetch_text(url: &str) -> Result<String, String> {
    let response = JsFuture::from(with_scope(|s| s.fetch_with_str(url)))
        .await
        .map_err(|e| format!("could not load {url}: {e:?}"))?;
    let response: Response = response.unchecked_into();
    if !response.ok() {
        return Err(format!("could not load {url}: HTTP {} {}", response.status(), response.status_text()));
    }
    let text = JsFuture::from(response.text().map_err(|e| format!("could not read {url}: {e:?}"))?)
        .await
        .map_err(|e| format!("could not read {url}: {e:?}"))?;
    text.as_string().ok_or_else(|| format!("{url} is not text"))
}

/// Corpus `name`: a text of one's own the page sent (`AddCorpus`), or a built-in one, fetched
/// from the page's assets once per worker.
async fn load_corpus(name: &str) -> Result<Arc<Corpus>, String> {
    if let Some(c) = SHARED.with(|s| s.borrow().corpora.iter().find(|(n, _)| n == name).map(|(_, c)| c.clone())) {
        return Ok(c);
    }
    if objlab_engine::data::is_upload(name) {
        return Err(format!(
            "this run trains on your own file {:?}, which the page does not hold: choose the file again under Text",
            objlab_engine::data::upload_file_name(name)
        ));
    }
    let file = CORPORA
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("unknown corpus {name:?}"))?;
    let text = fetch_text(&format!("assets/{file}")).await.map_err(|e| format!("the corpus is missing: {e}"))?;
    let corpus = Arc::new(Corpus::builtin(name, &text)?);
    SHARED.with(|s| s.borrow_mut().corpora.push((name.to_string(), corpus.clone())));
    Ok(corpus)
}

fn js_get(target: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(target, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

/// Makes the device wgpu creates enable `subgroups` when the adapter offers it. cubecl's
/// kernels (cubek's gemv, for one) use `enable subgroups;`, but the device wgpu requests in the
/// browser does not get the feature even though the adapter lists it (Chromium 156: a device
/// requested with `subgroups` compiles those shaders; wgpu's device rejects them), and on wasm
/// cubecl cannot check a compile error before using the module, so the first such kernel
/// poisoned the device. The patch adds `subgroups` to wgpu's `requestDevice` call. The same
/// gemv kernel calls `subgroupAdd` after a bounds check, which WGSL's uniformity analysis
/// rejects although the lanes that leave contribute nothing; the patch turns that one
/// diagnostic off (`diagnostic(off, subgroup_uniformity)`) in shaders that enable subgroups.
fn enable_subgroups_for_wgpu() -> Result<(), String> {
    const PATCH: &str = r#"
        const gpu = self.navigator.gpu;
        if (!gpu || gpu.__objlabSubgroups) return;
        const request = gpu.requestAdapter.bind(gpu);
        gpu.requestAdapter = async (options) => {
            const adapter = await request(options);
            if (adapter && adapter.features.has("subgroups")) {
                const requestDevice = adapter.requestDevice.bind(adapter);
                adapter.requestDevice = async (descriptor) => {
                    const d = Object.assign({}, descriptor || {});
                    d.requiredFeatures = [...new Set([...(d.requiredFeatures || []), "subgroups"])];
                    const device = await requestDevice(d);
                    const createShaderModule = device.createShaderModule.bind(device);
                    device.createShaderModule = (module) => {
                        const code = module && module.code;
                        if (typeof code === "string" && code.startsWith("enable subgroups;") && !code.includes("subgroup_uniformity")) {
                            module = Object.assign({}, module, {
                                code: code.replace("enable subgroups;", "enable subgroups;\ndiagnostic(off, subgroup_uniformity);"),
                            });
                        }
                        return createShaderModule(module);
                    };
                    return device;
                };
            }
            return adapter;
        };
        gpu.__objlabSubgroups = true;
    "#;
    // A syntax error in the constant would throw here, uncaught, and reach the page through the
    // worker's error event; the WebGPU browser tests run this code.
    js_sys::Function::new_no_args(PATCH).call0(&JsValue::NULL).map_err(|e| format!("could not prepare WebGPU: {e:?}"))?;
    Ok(())
}

/// Keeps every WebGPU device this worker is given (`self.__objlabDevices`) and notes when one
/// is lost (`self.__objlabLost`: the browser's reason), so that a lost device (a driver reset,
/// a crashed GPU process, fault injection's `lose_device_at`) is reported as what it is
/// ([`device_lost`]) rather than as whatever wgpu does next.
fn watch_devices() -> Result<(), String> {
    const WATCH: &str = r#"
        if (self.__objlabDevices || !self.GPUAdapter) return;
        self.__objlabDevices = [];
        const requestDevice = GPUAdapter.prototype.requestDevice;
        GPUAdapter.prototype.requestDevice = async function (descriptor) {
            const device = await requestDevice.call(this, descriptor);
            self.__objlabDevices.push(device);
            device.lost.then((info) => {
                self.__objlabLost = (info && info.message) || ("the device was " + ((info && info.reason) || "lost"));
            });
            return device;
        };
    "#;
    js_sys::Function::new_no_args(WATCH).call0(&JsValue::NULL).map_err(|e| format!("could not prepare WebGPU: {e:?}"))?;
    Ok(())
}

/// Why this worker's WebGPU device was lost, if it was.
fn device_lost() -> Option<String> {
    with_scope(|s| js_get(s, "__objlabLost")).as_string()
}

/// Fault injection ([`objlab_engine::spec::TrainConfig::lose_device_at`]): destroys this
/// worker's WebGPU devices, as a lost GPU would take them.
fn lose_devices() {
    let _ = js_sys::Function::new_no_args("for (const d of self.__objlabDevices || []) d.destroy();").call0(&JsValue::NULL);
}

/// The WebGPU device is lost: the runs on it stop (their weights were on it), each with a
/// message that says so; the CPU runs go on. WebGPU is not initialised again in this worker
/// (wgpu initialises once per worker): a reset starts a fresh worker.
fn gpu_lost(why: &str) {
    let ids: Vec<RunId> = SHARED.with(|s| {
        let mut s = s.borrow_mut();
        if s.gpu_lost.is_some() {
            return Vec::new();
        }
        s.gpu_lost = Some(why.to_string());
        s.gpu = None;
        s.analyser = None;
        let ids: Vec<RunId> = s.runs.iter().filter(|r| !r.cpu).map(|r| r.id).collect();
        for id in &ids {
            s.scheduler.set(*id, Slot::Diverged);
        }
        ids
    });
    for id in ids {
        post(&FromWorker::Error { run: Some(id), message: lost_message(why, Some(id)) });
        post_state(id, RunState::Failed);
    }
}

/// What the page says of a lost GPU device.
fn lost_message(why: &str, run: Option<RunId>) -> String {
    let (who, whose) = run.map_or(("the runs on it".to_string(), "their"), |id| (format!("run {id}"), "its"));
    format!("the GPU device was lost ({why}), and {who} with it: {whose} weights were on the GPU. Press Reset to start again (the address keeps the workspace)")
}

/// Asks the browser for a WebGPU adapter (for its name) and initialises burn's wgpu runtime,
/// once: callers meanwhile wait for that initialisation (and try again should it fail).
async fn webgpu() -> Result<(Device, String), String> {
    if let Some(why) = SHARED.with(|s| s.borrow().gpu_lost.clone()) {
        return Err(format!("this worker's GPU device was lost ({why}); Reset starts a fresh one"));
    }
    loop {
        if let Some(gpu) = SHARED.with(|s| s.borrow().gpu.clone()) {
            return Ok(gpu);
        }
        if !SHARED.with(|s| s.borrow().gpu_pending) {
            break;
        }
        sleep(20).await;
    }
    SHARED.with(|s| s.borrow_mut().gpu_pending = true);
    let result = init_webgpu().await;
    SHARED.with(|s| {
        let mut s = s.borrow_mut();
        s.gpu_pending = false;
        if let Ok(gpu) = &result {
            s.gpu = Some(gpu.clone());
        }
    });
    result
}

async fn init_webgpu() -> Result<(Device, String), String> {
    let gpu = js_get(&with_scope(|s| s.navigator()).into(), "gpu");
    if gpu.is_undefined() || gpu.is_null() {
        return Err("this browser does not offer WebGPU".into());
    }
    let request: js_sys::Function = js_get(&gpu, "requestAdapter").dyn_into().map_err(|_| "navigator.gpu.requestAdapter is missing")?;
    let promise: js_sys::Promise = request.call0(&gpu).map_err(|e| format!("{e:?}"))?.dyn_into().map_err(|_| "requestAdapter did not return a promise")?;
    let adapter = JsFuture::from(promise).await.map_err(|e| format!("the adapter request failed: {e:?}"))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("no WebGPU adapter".into());
    }
    let info = js_get(&adapter, "info");
    let name: Vec<String> = ["vendor", "architecture", "description"]
        .iter()
        .filter_map(|k| js_get(&info, k).as_string())
        .filter(|s| !s.is_empty())
        .collect();
    let name = if name.is_empty() { "WebGPU adapter".to_string() } else { name.join(" ") };
    watch_devices()?;
    enable_subgroups_for_wgpu()?;
    let device = Device::wgpu_options().init_async().await.map_err(|e| format!("WebGPU initialisation failed: {e:?}"))?;
    Ok((device, name))
}

/// The device `choice` asks for (the CPU backend when WebGPU is missing), its name and kind.
/// On the CPU the helper workers are started (once: `workers` in all, 0 for one per core) to
/// share the steps.
async fn pick_device(choice: DeviceChoice, workers: usize) -> (Device, String, DeviceKind) {
    let (device, kind, name, note) = match choice {
        DeviceChoice::Cpu => (Device::flex(), DeviceKind::Cpu, CPU_NAME.to_string(), Some("chosen in the settings".to_string())),
        DeviceChoice::Auto | DeviceChoice::Gpu => match webgpu().await {
            Ok((_, name)) if choice == DeviceChoice::Auto && is_software_adapter(&name) => (
                Device::flex(),
                DeviceKind::Cpu,
                CPU_NAME.to_string(),
                Some(format!("this browser's WebGPU is a software renderer ({name}), slower than the CPU; choose WebGPU in the settings to use it anyway")),
            ),
            Ok((device, name)) => (device, DeviceKind::WebGpu, name, None),
            Err(why) => (Device::flex(), DeviceKind::Cpu, CPU_NAME.to_string(), Some(format!("WebGPU unavailable: {why}"))),
        },
    };
    if kind == DeviceKind::Cpu {
        SHARED.with(|s| s.borrow_mut().cpu = Some((name.clone(), note.clone())));
        crate::helper::start(workers);
        device_changed();
    } else {
        post(&FromWorker::Device { kind, name: name.clone(), note });
    }
    (device, name, kind)
}

/// Tells the page the CPU device line again: the backend, why, and how many workers train.
pub fn device_changed() {
    let Some((name, note)) = SHARED.with(|s| s.borrow().cpu.clone()) else { return };
    let note = match (note, crate::helper::status()) {
        (Some(note), Some(helper)) => Some(format!("{note}; {helper}")),
        (note, helper) => note.or(helper),
    };
    post(&FromWorker::Device { kind: DeviceKind::Cpu, name, note });
}

/// The benchmark button: a fresh run of `spec` alone for `steps` timed steps (the
/// workspace's runs wait), reported with its kernel launches and host reads per step.
async fn benchmark(spec: ExperimentSpec, steps: usize) -> Result<(), String> {
    spec.validate()?;
    post(&FromWorker::BenchmarkProgress { done: 0, steps });
    let corpus = load_corpus(&spec.corpus).await?;
    let (device, name, kind) = pick_device(spec.device, spec.train.workers).await;
    let links = if kind == DeviceKind::Cpu {
        // The helpers `pick_device` started time their share too: a benchmark pressed as the
        // page opened timed one worker while the others loaded (a run's steps do not wait).
        let since = precise_ms();
        while !crate::helper::settled(spec.train.workers) && precise_ms() - since < HELPERS_WAIT_MS {
            sleep(20).await;
        }
        crate::helper::ready_links(spec.train.workers)
    } else {
        Vec::new()
    };
    let helpers: Vec<&dyn HelperLink> = links.iter().map(|link| link as &dyn HelperLink).collect();
    let report = objlab_engine::benchmark::benchmark(&spec, corpus, device, &name, steps, helpers, precise_ms, BENCHMARK_WARMUP_MS, |done| {
        if done % 5 == 0 {
            post(&FromWorker::BenchmarkProgress { done, steps });
        }
    })
    .await?;
    post(&FromWorker::Benchmark(report));
    Ok(())
}

/// Builds run `id` (corpus, device, model), takes its first snapshot and hands it to the
/// driving task.
async fn load_run(id: RunId, spec: ExperimentSpec, generation: u64) -> Result<(), String> {
    post_state(id, RunState::Loading);
    let corpus = load_corpus(&spec.corpus).await?;
    let (device, _, kind) = pick_device(spec.device, spec.train.workers).await;
    let trainer = Trainer::new(&spec, 0, corpus, device)?;
    if !is_current(generation) {
        return Ok(());
    }
    // The snapshot at step 0, in full (nothing trains yet).
    start_snapshot(id, &trainer, generation).await?;
    while work_on_snapshots().await? {
        // the other runs step between the stages
        yield_now().await;
    }
    let (placed, paused) = SHARED.with(|s| {
        let mut s = s.borrow_mut();
        let now = precise_ms();
        let Some(slot) = s.runs.iter_mut().find(|r| r.id == id) else { return (false, false) };
        slot.trainer = Some(trainer);
        slot.cpu = kind == DeviceKind::Cpu;
        slot.window_start = now;
        s.scheduler.add(id);
        (true, s.paused)
    });
    if !placed || !is_current(generation) {
        return Ok(());
    }
    post_state(id, if paused { RunState::Paused } else { RunState::Running });
    let start = SHARED.with(|s| {
        let mut s = s.borrow_mut();
        let start = s.driving != Some(generation);
        s.driving = Some(generation);
        start
    });
    if start {
        wasm_bindgen_futures::spawn_local(drive(generation));
    }
    Ok(())
}

/// The driving task of one generation: steps the run the scheduler picks, one at a time.
async fn drive(generation: u64) {
    loop {
        if !is_current(generation) {
            return;
        }
        if let Some(why) = device_lost() {
            gpu_lost(&why);
        }
        if SHARED.with(|s| s.borrow().benchmarking) {
            // the benchmark has the device to itself
            sleep(50).await;
            continue;
        }
        let picked = SHARED.with(|s| {
            let mut s = s.borrow_mut();
            if s.paused {
                return None;
            }
            let id = s.scheduler.next()?;
            let slot = s.runs.iter_mut().find(|r| r.id == id)?;
            Some((id, slot.trainer.take()?))
        });
        // One stage of a queued snapshot between two training steps.
        let worked = match work_on_snapshots().await {
            Ok(worked) => worked,
            Err(message) => {
                post(&FromWorker::Error { run: None, message: format!("a representation snapshot failed: {message}") });
                true
            }
        };
        let Some((id, mut trainer)) = picked else {
            if !worked {
                sleep(50).await;
            }
            continue;
        };
        let outcome = advance(id, &mut trainer, generation).await;
        if !is_current(generation) {
            return;
        }
        let announce = SHARED.with(|s| {
            let mut s = s.borrow_mut();
            let slot = match &outcome {
                Ok(None) => None,
                Ok(Some(slot)) | Err((slot, _)) => Some(*slot),
            };
            if let Some(slot) = slot {
                s.scheduler.set(id, slot);
            }
            // a run removed meanwhile is dropped here
            s.runs.iter_mut().find(|r| r.id == id).and_then(|r| {
                r.trainer = Some(trainer);
                r.announce.take()
            })
        });
        match outcome {
            Ok(Some(Slot::Done)) => post_state(id, RunState::Finished),
            Ok(None) => {
                if let Some(state) = announce {
                    post_state(id, state);
                }
            }
            Err((_, message)) => match device_lost() {
                // the step failed because the device went: every GPU run stops, saying so
                Some(why) => gpu_lost(&why),
                None => {
                    post(&FromWorker::Error { run: Some(id), message });
                    post_state(id, RunState::Failed);
                }
            },
            _ => {}
        }
        // Let commands in between steps. A read waiting for a trainer polls every
        // READ_POLL_MS: leave it a gap it cannot miss. (On a GPU a step awaits the device for
        // most of its time, so a gap of one yield was almost never the moment a poll came,
        // and attention maps and questions waited in vain.)
        if SHARED.with(|s| s.borrow().reads_waiting > 0) {
            sleep(READ_POLL_MS + 10).await;
        } else {
            yield_now().await;
        }
    }
}

/// Least time between two refreshes of a run's teaching view (examples and answers), ms.
const EXAMPLES_GAP_MS: f64 = 500.0;

/// One step of run `id` and whatever falls due after it (losses, validation, examples,
/// samples, snapshot). Returns the run's new slot when it changes (finished), or the slot and
/// message of a failure (divergence stops this run alone).
async fn advance(id: RunId, trainer: &mut Trainer, generation: u64) -> Result<Option<Slot>, (Slot, String)> {
    let fail = |e: String| (Slot::Diverged, e);
    let cpu = SHARED.with(|s| s.borrow().runs.iter().any(|r| r.id == id && r.cpu));
    // A share of the rows for each worker the run counts on, on that helper's core where it is
    // ready, else computed here (`Absent`: one still loading or stopped), so that the run's
    // arithmetic does not depend on when its helpers come and go; a failed helper costs no
    // step (its share was computed here) and is not asked again (the link's `stop`).
    let links = if cpu { crate::helper::links(trainer.config().workers) } else { Vec::new() };
    let helpers: Vec<&dyn HelperLink> = links.iter().map(|link| link.as_ref().map_or(&Absent as &dyn HelperLink, |l| l as &dyn HelperLink)).collect();
    trainer.step_with(&helpers).await;
    let window = SHARED.with(|s| {
        let mut s = s.borrow_mut();
        s.scheduler.stepped(id);
        s.runs.iter_mut().find(|r| r.id == id).map(|r| {
            r.window_steps += 1;
            (r.window_start, r.window_steps, r.spec.tokens_per_step() as f64)
        })
    });
    let cfg = trainer.config().clone();
    let step = trainer.step_count();
    let done = trainer.is_done();
    if !cpu && cfg.lose_device_at == step {
        lose_devices();
    }
    // Also after the first step, so the page can report how long the first step took to come.
    if step.is_multiple_of(cfg.log_every) || done || step == 1 {
        let losses = trainer.read_losses().await.map_err(fail)?;
        if !is_current(generation) {
            return Ok(None);
        }
        if let Some(why) = objlab_engine::train::divergence(&losses) {
            return Err(fail(format!("run {id} {why}")));
        }
        let (start, steps, tokens_per_step) = window.unwrap_or((precise_ms(), 0, 0.0));
        let seconds = ((precise_ms() - start) / 1000.0).max(1e-6);
        let steps_per_s = steps as f64 / seconds;
        post(&FromWorker::Metrics {
            run: id,
            step,
            steps: cfg.steps,
            train: losses,
            steps_per_s,
            tokens_per_s: steps_per_s * tokens_per_step,
            learning_rate: trainer.learning_rate(),
        });
        restart_window(id);
    }
    if step.is_multiple_of(cfg.eval_every) || done {
        let loss = trainer.evaluate().await.map_err(fail)?;
        if !is_current(generation) {
            return Ok(None);
        }
        post(&FromWorker::Validation { run: id, step, loss });
        restart_window(id);
    }
    // The teaching view refreshes every few steps, and at most every EXAMPLES_GAP_MS: a small
    // message, built on the CPU, and the model's answers on one row per objective (one small
    // read). Refreshed faster (a fast run's every 10 steps is many times a second) it cannot
    // be read, and the reads and the page's redraws would cost the runs for nothing.
    let last_examples = SHARED.with(|s| s.borrow().runs.iter().find(|r| r.id == id).map_or(0.0, |r| r.examples_ms));
    let now = precise_ms();
    let due = step.is_multiple_of(cfg.log_every.max(5)) && (last_examples == 0.0 || now - last_examples >= EXAMPLES_GAP_MS);
    if step == 1 || due || done {
        let examples = trainer.examples_answered().await.map_err(fail)?;
        if !is_current(generation) {
            return Ok(None);
        }
        post(&FromWorker::Examples { run: id, step, examples });
        SHARED.with(|s| {
            if let Some(r) = s.borrow_mut().runs.iter_mut().find(|r| r.id == id) {
                r.examples_ms = now;
            }
        });
        restart_window(id);
    }
    if cfg.sample_every > 0 && trainer.generates() && (step.is_multiple_of(cfg.sample_every) || done) {
        let text = trainer.sample(&trainer.corpus().tokenizer.sample_prompt(), cfg.sample_len).await.map_err(fail)?;
        if !is_current(generation) {
            return Ok(None);
        }
        let bad_words = trainer.score_sample(&text);
        post(&FromWorker::Sample { run: id, step, text, bad_words });
        restart_window(id);
    }
    if step.is_multiple_of(cfg.snapshot_every) || done {
        start_snapshot(id, trainer, generation).await.map_err(fail)?;
        restart_window(id);
    }
    Ok(done.then_some(Slot::Done))
}

/// Starts a new steps/s window for run `id` (after a pause for a read, validation, sample or
/// snapshot, so the figure is the training speed).
fn restart_window(id: RunId) {
    SHARED.with(|s| {
        if let Some(r) = s.borrow_mut().runs.iter_mut().find(|r| r.id == id) {
            r.window_start = precise_ms();
            r.window_steps = 0;
        }
    });
}

/// The GPU analyser when the runs have WebGPU, else the CPU references (made once).
async fn analyser() -> Rc<Analyser> {
    if let Some(a) = SHARED.with(|s| s.borrow().analyser.clone()) {
        return a;
    }
    let has_gpu = SHARED.with(|s| s.borrow().gpu.is_some());
    let analyser = if has_gpu {
        match Analyser::new().await {
            (a, None) => a,
            (a, Some(why)) => {
                web_sys::console::warn_1(&format!("representation statistics on the CPU: {why}").into());
                a
            }
        }
    } else {
        Analyser::Cpu
    };
    let analyser = Rc::new(analyser);
    SHARED.with(|s| s.borrow_mut().analyser = Some(analyser.clone()));
    analyser
}

fn probe_set(trainer: &Trainer) -> Result<Rc<ProbeSet>, String> {
    let name = &trainer.corpus().name;
    if let Some(p) = SHARED.with(|s| s.borrow().probes.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone())) {
        return Ok(p);
    }
    let probe = Rc::new(ProbeSet::of_views(trainer.corpus())?);
    SHARED.with(|s| s.borrow_mut().probes.push((name.clone(), probe.clone())));
    Ok(probe)
}

/// A snapshot in progress. Its device read happens at the step it belongs to; the statistics
/// then run one stage at a time between training steps (token PCA, probe PCA, probe fit, CKA),
/// so a snapshot never stalls training for much more than one of its stages.
struct SnapshotJob {
    id: RunId,
    step: usize,
    generation: u64,
    tokens: Vec<String>,
    embeddings: Matrix,
    pooled: Matrix,
    token_points: Vec<[f32; 2]>,
    probe_points: Vec<[f32; 2]>,
    effective_rank: f32,
    accuracy: f32,
    /// What the probe read: [classes (label), classes (read)].
    confusion: Vec<u32>,
    /// The probe set its run reads (its corpus's).
    probe: Rc<ProbeSet>,
    stage: u8,
    /// Milliseconds of work so far, and the longest single piece (the stall training sees).
    work_ms: f64,
    stall_ms: f64,
}

/// Reads run `id`'s representations at its current step (one device read) and queues the
/// statistics.
async fn start_snapshot(id: RunId, trainer: &Trainer, generation: u64) -> Result<(), String> {
    let started = precise_ms();
    let probe = probe_set(trainer)?;
    let f = trainer.features(&probe).await?;
    let d = f.d_model;
    let read_ms = precise_ms() - started;
    let job = SnapshotJob {
        id,
        step: f.step,
        generation,
        embeddings: Matrix::new(f.tokens.len(), d, f.embeddings),
        pooled: Matrix::new(probe.rows.len(), d, f.pooled),
        probe: probe.clone(),
        tokens: f.tokens,
        token_points: Vec::new(),
        probe_points: Vec::new(),
        effective_rank: 0.0,
        accuracy: 0.0,
        confusion: Vec::new(),
        stage: 0,
        work_ms: read_ms,
        stall_ms: read_ms,
    };
    SHARED.with(|s| s.borrow_mut().jobs.push_back(job));
    Ok(())
}

/// Does one stage of the oldest queued snapshot; returns whether there was one.
async fn work_on_snapshots() -> Result<bool, String> {
    let Some(mut job) = SHARED.with(|s| s.borrow_mut().jobs.pop_front()) else { return Ok(false) };
    if !is_current(job.generation) {
        return Ok(true);
    }
    let started = precise_ms();
    let analyser = analyser().await;
    match job.stage {
        0 => job.token_points = analyser.pca(&job.embeddings).await?.points,
        1 => {
            let pca = analyser.pca(&job.pooled).await?;
            job.effective_rank = pca.effective_rank();
            job.probe_points = pca.points;
        }
        2 => {
            let read = objlab_kernels::probe::probe(&job.pooled, &job.probe.labels, job.probe.classes);
            (job.accuracy, job.confusion) = (read.accuracy, read.confusion);
        }
        _ => {
            let took = precise_ms() - started;
            finish_snapshot(job, analyser, took).await?;
            return Ok(true);
        }
    }
    let took = precise_ms() - started;
    job.work_ms += took;
    job.stall_ms = job.stall_ms.max(took);
    job.stage += 1;
    SHARED.with(|s| s.borrow_mut().jobs.push_front(job));
    Ok(true)
}

/// Posts the snapshot, then compares the runs that reached its step by CKA.
async fn finish_snapshot(job: SnapshotJob, analyser: Rc<Analyser>, so_far: f64) -> Result<(), String> {
    let started = precise_ms();
    let (id, step) = (job.id, job.step);
    let probe = job.probe.clone();
    // CKA between the runs (in the order they were added) that have reached this step.
    let order = run_ids();
    let here: Vec<(RunId, Matrix)> = SHARED.with(|s| {
        let mut s = s.borrow_mut();
        let entry = s.pooled.entry(step).or_default();
        entry.retain(|(r, _)| *r != id);
        entry.push((id, job.pooled.clone()));
        let mut here: Vec<(RunId, Matrix)> = entry.iter().filter(|(r, _)| order.contains(r)).cloned().collect();
        here.sort_by_key(|(r, _)| order.iter().position(|o| o == r));
        // a run added later reaches these steps later: keep the recent 32 snapshot steps
        while s.pooled.len() > 32 {
            let oldest = *s.pooled.keys().next().expect("not empty");
            s.pooled.remove(&oldest);
        }
        here
    });
    let runs: Vec<RunId> = here.iter().map(|(r, _)| *r).collect();
    let matrices: Vec<&Matrix> = here.iter().map(|(_, m)| m).collect();
    let mut matrix = analyser.cka_matrix(&matrices).await?;
    // runs on different texts read different probe sequences: nothing to compare
    let corpora: Vec<Option<String>> =
        SHARED.with(|s| runs.iter().map(|r| s.borrow().runs.iter().find(|slot| slot.id == *r).map(|slot| slot.spec.corpus.clone())).collect());
    let m = runs.len();
    for (i, j) in (0..m).flat_map(|i| (0..m).map(move |j| (i, j))) {
        if corpora[i] != corpora[j] {
            matrix[i * m + j] = objlab_engine::protocol::NOT_COMPARABLE;
        }
    }
    let took = so_far + precise_ms() - started;
    if !is_current(job.generation) || !run_ids().contains(&id) {
        return Ok(());
    }
    post(&FromWorker::Snapshot(Snapshot {
        run: id,
        step,
        tokens: job.tokens,
        token_points: job.token_points,
        probe_points: job.probe_points,
        probe_labels: probe.labels.clone(),
        probe_accuracy: job.accuracy,
        probe_confusion: job.confusion,
        probe_classes: probe.classes,
        effective_rank: job.effective_rank,
        millis: job.work_ms + took,
        stall_ms: job.stall_ms.max(took),
        analyser: analyser.name().to_string(),
    }));
    post(&FromWorker::Cka { step, runs, matrix });
    Ok(())
}

/// How often a read waiting for a trainer looks again, ms.
const READ_POLL_MS: i32 = 50;

/// Counts a read waiting for a trainer while it lives, so that the driving loop leaves a gap
/// between steps for it (see the end of [`drive`]).
struct WaitingRead;

impl WaitingRead {
    fn new() -> Self {
        SHARED.with(|s| s.borrow_mut().reads_waiting += 1);
        Self
    }
}

impl Drop for WaitingRead {
    fn drop(&mut self) {
        SHARED.with(|s| s.borrow_mut().reads_waiting -= 1);
    }
}

/// Takes run `id`'s trainer from the workspace for a read between its steps (waits while the
/// run is mid-step), runs `read` on it and puts it back. `what` names the read in the message
/// when the run stays busy.
async fn between_steps<T>(id: RunId, what: &str, read: impl AsyncFnOnce(&mut Trainer) -> T) -> Result<T, String> {
    let _waiting = WaitingRead::new();
    for _ in 0..30_000 / READ_POLL_MS {
        let taken = SHARED.with(|s| {
            let mut s = s.borrow_mut();
            s.runs.iter_mut().find(|r| r.id == id).map(|r| r.trainer.take())
        });
        match taken {
            None => return Err(format!("run {id} is not in the workspace")),
            Some(None) => sleep(READ_POLL_MS).await,
            Some(Some(mut trainer)) => {
                let out = read(&mut trainer).await;
                SHARED.with(|s| {
                    if let Some(r) = s.borrow_mut().runs.iter_mut().find(|r| r.id == id) {
                        r.trainer = Some(trainer);
                    }
                });
                return Ok(out);
            }
        }
    }
    Err(format!("run {id} stayed busy; try {what} again"))
}

/// Answers the page's attention-map request for run `id`.
async fn attention(id: RunId, text: &str) -> Result<(), String> {
    let maps = between_steps(id, "the attention map", async |t: &mut Trainer| t.attention_maps(text).await).await??;
    post(&FromWorker::Attention { run: id, tokens: maps.tokens, reads: maps.reads, layers: maps.layers, heads: maps.heads, weights: maps.weights });
    Ok(())
}

/// Answers the page's "ask the model" for run `id`: its answers, or why it has none.
async fn ask(id: RunId, text: String) {
    let answers = between_steps(id, "asking", async |t: &mut Trainer| t.ask(&text).await).await.and_then(|a| a);
    post(&match answers {
        Ok(answers) => FromWorker::Answers { run: id, text, answers },
        Err(message) => FromWorker::AskFailed { run: id, text, message },
    });
}
