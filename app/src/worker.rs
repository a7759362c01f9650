//! The training worker: runs the engine off the main thread.
//!
//! It owns at most one run. Commands arrive as [`ToWorker`] messages; progress leaves as
//! [`FromWorker`] messages. Every start, stop and reset bumps a generation counter, and the
//! training task of an older generation ends at its next check, so a reset never mixes runs.
//! The loop reads the device only every `log_every` steps (one batched read), and yields to
//! the event loop after every step so pause and stop take effect at once.

use std::cell::RefCell;
use std::sync::Arc;

use objlab_engine::burn::tensor::Device;
use objlab_engine::data::Corpus;
use objlab_engine::protocol::{DeviceKind, FromWorker, RunState, ToWorker};
use objlab_engine::spec::{CORPORA, DeviceChoice, ExperimentSpec};
use objlab_engine::train::Trainer;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent, Response};

const CPU_NAME: &str = "flex backend in WebAssembly";

#[derive(Default)]
struct Shared {
    generation: u64,
    paused: bool,
    /// The WebGPU device, once acquired (wgpu initialises once per worker).
    gpu: Option<(Device, String)>,
    corpora: Vec<(String, Arc<Corpus>)>,
}

thread_local! {
    static SHARED: RefCell<Shared> = RefCell::new(Shared::default());
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(message: &FromWorker) {
    let _ = scope().post_message(&message.to_json().into());
}

fn post_state(state: RunState) {
    post(&FromWorker::State { state });
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

/// The worker's entry point: installs the panic reporter and the message handler.
pub fn start() {
    if log::set_logger(&CONSOLE_LOG).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    std::panic::set_hook(Box::new(|info| {
        // The run cannot go on (its device may be lost): end its training task at once.
        SHARED.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                s.generation += 1;
                s.gpu = None;
            }
        });
        post(&FromWorker::Error { message: format!("the training worker failed: {info}") });
        post_state(RunState::Failed);
        web_sys::console::error_1(&format!("{info}").into());
    }));
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        match event.data().as_string().map(|s| ToWorker::from_json(&s)) {
            Some(Ok(message)) => handle(message),
            Some(Err(e)) => post(&FromWorker::Error { message: e }),
            None => post(&FromWorker::Error { message: "the worker only understands text messages".into() }),
        }
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&FromWorker::Ready);
}

/// Starts a new generation (ending the running task, if any) and returns its number.
fn next_generation() -> u64 {
    SHARED.with(|s| {
        let mut s = s.borrow_mut();
        s.generation += 1;
        s.paused = false;
        s.generation
    })
}

fn is_current(generation: u64) -> bool {
    SHARED.with(|s| s.borrow().generation == generation)
}

fn is_paused() -> bool {
    SHARED.with(|s| s.borrow().paused)
}

fn handle(message: ToWorker) {
    match message {
        ToWorker::Start { spec } => {
            let generation = next_generation();
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(message) = train(spec, generation).await {
                    if is_current(generation) {
                        post(&FromWorker::Error { message });
                        post_state(RunState::Failed);
                    }
                }
            });
        }
        ToWorker::Pause => {
            SHARED.with(|s| s.borrow_mut().paused = true);
            post_state(RunState::Paused);
        }
        ToWorker::Resume => {
            SHARED.with(|s| s.borrow_mut().paused = false);
            post_state(RunState::Running);
        }
        ToWorker::Stop => {
            next_generation();
            post_state(RunState::Stopped);
        }
        ToWorker::Reset => {
            next_generation();
            post_state(RunState::Idle);
        }
    }
}

/// Resolves after `ms` milliseconds, letting the worker handle messages meanwhile.
async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(promise).await;
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

async fn fetch_text(url: &str) -> Result<String, String> {
    let response = JsFuture::from(scope().fetch_with_str(url))
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

/// The built-in corpus `name`, fetched from the page's assets once per worker.
async fn load_corpus(name: &str) -> Result<Arc<Corpus>, String> {
    if let Some(c) = SHARED.with(|s| s.borrow().corpora.iter().find(|(n, _)| n == name).map(|(_, c)| c.clone())) {
        return Ok(c);
    }
    let file = CORPORA
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("unknown corpus {name:?}"))?;
    let text = fetch_text(&format!("assets/{file}")).await.map_err(|e| format!("the corpus is missing: {e}"))?;
    let corpus = Arc::new(Corpus::from_text(name, &text)?);
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

/// Asks the browser for a WebGPU adapter (for its name) and initialises burn's wgpu runtime.
async fn webgpu() -> Result<(Device, String), String> {
    if let Some(gpu) = SHARED.with(|s| s.borrow().gpu.clone()) {
        return Ok(gpu);
    }
    let gpu = js_get(&scope().navigator().into(), "gpu");
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
    enable_subgroups_for_wgpu()?;
    let device = Device::wgpu_options().init_async().await.map_err(|e| format!("WebGPU initialisation failed: {e:?}"))?;
    SHARED.with(|s| s.borrow_mut().gpu = Some((device.clone(), name.clone())));
    Ok((device, name))
}

async fn pick_device(choice: DeviceChoice) -> Device {
    let (device, message) = match choice {
        DeviceChoice::Cpu => (
            Device::flex(),
            FromWorker::Device { kind: DeviceKind::Cpu, name: CPU_NAME.into(), note: Some("chosen in the settings".into()) },
        ),
        DeviceChoice::Auto | DeviceChoice::Gpu => match webgpu().await {
            Ok((device, name)) => (device, FromWorker::Device { kind: DeviceKind::WebGpu, name, note: None }),
            Err(why) => (
                Device::flex(),
                FromWorker::Device { kind: DeviceKind::Cpu, name: CPU_NAME.into(), note: Some(format!("WebGPU unavailable: {why}")) },
            ),
        },
    };
    post(&message);
    device
}

/// One run, start to finish (or until a newer generation replaces it).
async fn train(spec: ExperimentSpec, generation: u64) -> Result<(), String> {
    post_state(RunState::Loading);
    spec.validate()?;
    let corpus = load_corpus(&spec.corpus).await?;
    let device = pick_device(spec.device).await;
    let mut trainer = Trainer::new(&spec, 0, corpus, device)?;
    if !is_current(generation) {
        return Ok(());
    }
    post_state(if is_paused() { RunState::Paused } else { RunState::Running });
    let cfg = trainer.config().clone();
    let tokens_per_step = spec.tokens_per_step() as f64;
    // The teaching view refreshes every few steps (it is a small message, built on the CPU).
    let example_every = cfg.log_every.max(5);
    let mut window_start = now_ms();
    let mut window_steps = 0usize;
    loop {
        while is_paused() && is_current(generation) {
            sleep(100).await;
            window_start = now_ms();
            window_steps = 0;
        }
        if !is_current(generation) {
            return Ok(());
        }
        trainer.step();
        window_steps += 1;
        let step = trainer.step_count();
        let done = trainer.is_done();
        if step % cfg.log_every == 0 || done {
            let losses = trainer.read_losses().await?;
            if !is_current(generation) {
                return Ok(());
            }
            if let Some((s, l)) = losses.iter().find(|(_, l)| !l.is_finite()) {
                return Err(format!(
                    "training diverged at step {}: the loss became {l}; lower the learning rate and start again",
                    s + 1
                ));
            }
            let seconds = ((now_ms() - window_start) / 1000.0).max(1e-6);
            let steps_per_s = window_steps as f64 / seconds;
            post(&FromWorker::Metrics {
                step,
                steps: cfg.steps,
                train: losses,
                steps_per_s,
                tokens_per_s: steps_per_s * tokens_per_step,
                learning_rate: trainer.learning_rate(),
            });
            window_start = now_ms();
            window_steps = 0;
        }
        if step % cfg.eval_every == 0 || done {
            let loss = trainer.evaluate().await?;
            if !is_current(generation) {
                return Ok(());
            }
            post(&FromWorker::Validation { step, loss });
            window_start = now_ms();
            window_steps = 0;
        }
        if step == 1 || step % example_every == 0 || done {
            post(&FromWorker::Examples { step, examples: trainer.examples() });
        }
        if cfg.sample_every > 0 && trainer.generates() && (step % cfg.sample_every == 0 || done) {
            let text = trainer.sample("\n", cfg.sample_len).await?;
            if !is_current(generation) {
                return Ok(());
            }
            let bad_words = trainer.score_sample(&text);
            post(&FromWorker::Sample { step, text, bad_words });
            window_start = now_ms();
            window_steps = 0;
        }
        if done {
            post_state(RunState::Finished);
            return Ok(());
        }
        // Let pause/stop/reset messages in between steps.
        sleep(0).await;
    }
}
