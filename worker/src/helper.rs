//! The second worker of a CPU run: half of each step's rows on another core.
//!
//! Why: the tab's WebAssembly runs on one thread (threads need a cross-origin-isolated page and
//! a standard library rebuilt with atomics), so a CPU run used one core of a machine that has
//! several. The training worker starts a copy of itself (`new Worker(self.location.href)`, the
//! same loader shim) as its *helper*; for each step it sends the current weights and the second
//! half of the batch's rows, computes the first half meanwhile, and adds the two gradients
//! (`objlab_engine::train::data_parallel`, where the split is shown to equal one batch). The
//! helper keeps no state of the run, so every run of the workspace can use it in turn.
//!
//! Messages to the helper are objects, not the page's JSON text: `{work, params}` with the
//! weights as a transferred `Float32Array`, answered by `{grads, present, loss, busy}` (`busy`:
//! its milliseconds on the job, for the benchmark's profile) or `{error}`. A helper that
//! fails, crashes or stays silent for [`ANSWER_TIMEOUT_MS`] is stopped for good and its half
//! computed here, so no step is lost; the device line says so.

use std::cell::RefCell;
use std::future::Future;

use js_sys::{Array, Float32Array, Object, Promise, Reflect};
use objlab_engine::burn::tensor::Device;
use objlab_engine::protocol::FromWorker;
use objlab_engine::train::data_parallel::{Answer, Helper, HelperLink, HelperReply, HelperUpdate, HelperWork};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent, Worker};

/// How long a step waits for the helper's half before computing it here (a baby-GPT half
/// takes about 0.1 s; a large model's, a few seconds).
const ANSWER_TIMEOUT_MS: i32 = 60_000;

/// Where the training worker stands with its helper.
enum Link {
    /// Not asked for yet.
    Unstarted,
    /// Loading its WebAssembly: steps run here alone until it says `Ready`.
    Starting(Worker),
    Ready(Worker),
    /// Not available here (one core): steps run here alone, nothing to report.
    Unavailable,
    /// Failed, to start or later: why (steps run here alone from then on; the device line says it).
    Failed(String),
}

thread_local! {
    static LINK: RefCell<Link> = const { RefCell::new(Link::Unstarted) };
    /// Resolves the job in flight with the helper's answer (its message's data).
    static WAITING: RefCell<Option<js_sys::Function>> = const { RefCell::new(None) };
    /// In the helper: the engine's side, kept between jobs (its copies of the runs).
    static ENGINE: RefCell<Option<Helper>> = const { RefCell::new(None) };
    /// In the helper: messages not yet handled, handled one at a time in order (an update
    /// must follow its job).
    static QUEUE: RefCell<(bool, std::collections::VecDeque<JsValue>)> = const { RefCell::new((false, std::collections::VecDeque::new())) };
    /// Handlers of the helper's events, kept alive while it lives.
    static HANDLERS: RefCell<Vec<Closure<dyn FnMut(JsValue)>>> = const { RefCell::new(Vec::new()) };
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Starts the helper if this machine has a core to spare and none was started (or refused)
/// yet. Returns at once; the helper is used from its first `Ready`.
pub fn start() {
    if !LINK.with(|l| matches!(*l.borrow(), Link::Unstarted)) {
        return;
    }
    let cores = scope().navigator().hardware_concurrency();
    if cores < 2.0 {
        LINK.with(|l| *l.borrow_mut() = Link::Unavailable);
        return;
    }
    let url = scope().location().href();
    let worker = match Worker::new(&url) {
        Ok(w) => w,
        Err(e) => return fail(&format!("the second worker could not start ({e:?})")),
    };
    let on_message = Closure::<dyn FnMut(JsValue)>::new(|event: JsValue| {
        let data = event.unchecked_into::<MessageEvent>().data();
        match data.as_string() {
            // The helper's own start-up and crash reports are the page's messages.
            Some(text) => match FromWorker::from_json(&text) {
                Ok(FromWorker::Ready) => {
                    LINK.with(|l| {
                        let mut l = l.borrow_mut();
                        if let Link::Starting(w) = &*l {
                            *l = Link::Ready(w.clone());
                        }
                    });
                    crate::worker::device_changed();
                }
                Ok(FromWorker::Error { message, .. }) => fail(&format!("the second worker failed: {message}")),
                _ => {}
            },
            None => answer(data),
        }
    });
    let on_error = Closure::<dyn FnMut(JsValue)>::new(|event: JsValue| {
        let message = event.dyn_ref::<web_sys::ErrorEvent>().map(|e| e.message()).unwrap_or_default();
        fail(&format!("the second worker stopped: {message}"));
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    HANDLERS.with(|h| h.borrow_mut().extend([on_message, on_error]));
    LINK.with(|l| *l.borrow_mut() = Link::Starting(worker));
}

/// Whether a step can be given half to the helper now.
pub fn ready() -> bool {
    LINK.with(|l| matches!(*l.borrow(), Link::Ready(_)))
}

/// What the device line says of the helper: two workers, or why only one.
pub fn status() -> Option<String> {
    LINK.with(|l| match &*l.borrow() {
        Link::Ready(_) => Some("2 workers share each step".to_string()),
        Link::Failed(why) => Some(format!("1 worker: {why}")),
        _ => None,
    })
}

/// Stops the helper for good (the steps go on here alone) and ends the job in flight.
pub fn fail(why: &str) {
    let old = LINK.with(|l| std::mem::replace(&mut *l.borrow_mut(), Link::Failed(why.to_string())));
    if let Link::Starting(w) | Link::Ready(w) = old {
        w.terminate();
    }
    web_sys::console::warn_1(&why.into());
    let error = Object::new();
    let _ = Reflect::set(&error, &"error".into(), &why.into());
    answer(error.into());
    crate::worker::device_changed();
}

/// Hands the helper's answer (or an error object) to the step waiting for it.
fn answer(data: JsValue) {
    if let Some(resolve) = WAITING.with(|w| w.borrow_mut().take()) {
        let _ = resolve.call1(&JsValue::NULL, &data);
    }
}

/// The training worker's link to its helper, for `Trainer::split_step`.
pub struct SecondWorker;

impl HelperLink for SecondWorker {
    fn ask(&self, work: &HelperWork) -> Answer {
        Box::pin(ask(work))
    }

    fn update(&self, update: HelperUpdate) -> Result<(), String> {
        let worker = ready_worker().ok_or("the second worker is not ready")?;
        let json = serde_json::to_string(&update).map_err(|e| format!("the step's gradients could not be written: {e}"))?;
        let grads = Float32Array::from(&update.grads[..]);
        let message = Object::new();
        let _ = Reflect::set(&message, &"update".into(), &json.into());
        let _ = Reflect::set(&message, &"grads".into(), &grads);
        worker
            .post_message_with_transfer(&message, &Array::of1(&grads.buffer()))
            .map_err(|e| format!("the second worker could not be sent the gradients: {e:?}"))
    }
}

fn ready_worker() -> Option<Worker> {
    LINK.with(|l| match &*l.borrow() {
        Link::Ready(w) => Some(w.clone()),
        _ => None,
    })
}

/// Sends `work` to the helper now; the future is its answer. (Called by
/// `Trainer::split_step` before this worker's own half, so both halves run at once.) Any
/// error stops the helper for good ([`fail`]) before it is returned.
pub fn ask(work: &HelperWork) -> impl Future<Output = Result<HelperReply, String>> + use<> {
    let sent = send(work).inspect_err(|why| fail(why));
    async move {
        let answer = sent?;
        let timeout = Promise::new(&mut |resolve, _| {
            let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ANSWER_TIMEOUT_MS);
        });
        let data = JsFuture::from(Promise::race(&Array::of2(&answer, &timeout)))
            .await
            .map_err(|e| format!("the second worker's answer failed: {e:?}"))?;
        if data.is_undefined() {
            let why = format!("the second worker did not answer within {} s", ANSWER_TIMEOUT_MS / 1000);
            fail(&why);
            return Err(why);
        }
        read_reply(&data).inspect_err(|why| fail(why))
    }
}

fn send(work: &HelperWork) -> Result<Promise, String> {
    let worker = ready_worker().ok_or("the second worker is not ready")?;
    let json = serde_json::to_string(work).map_err(|e| format!("the step's rows could not be written: {e}"))?;
    let state = Float32Array::from(&work.state[..]);
    let message = Object::new();
    let _ = Reflect::set(&message, &"work".into(), &json.into());
    let _ = Reflect::set(&message, &"state".into(), &state);
    let promise = Promise::new(&mut |resolve, _| WAITING.with(|w| *w.borrow_mut() = Some(resolve)));
    worker
        .post_message_with_transfer(&message, &Array::of1(&state.buffer()))
        .map_err(|e| format!("the second worker could not be sent the step: {e:?}"))?;
    Ok(promise)
}

fn read_reply(data: &JsValue) -> Result<HelperReply, String> {
    let get = |key: &str| Reflect::get(data, &key.into()).unwrap_or(JsValue::UNDEFINED);
    if let Some(error) = get("error").as_string() {
        return Err(error);
    }
    if get("stale").is_truthy() {
        return Ok(HelperReply { stale: true, ..Default::default() });
    }
    let grads = get("grads").dyn_into::<Float32Array>().map_err(|_| "the second worker's answer has no gradients")?.to_vec();
    let present = get("present").as_string().ok_or("the second worker's answer has no parameter list")?;
    let present: Vec<bool> = serde_json::from_str(&present).map_err(|e| format!("the second worker's parameter list: {e}"))?;
    let loss = get("loss").as_f64().ok_or("the second worker's answer has no loss")? as f32;
    let busy_ms = get("busy").as_f64().unwrap_or(0.0);
    Ok(HelperReply { grads, present, loss, busy_ms, stale: false })
}

/// In the helper: a message from the training worker (one that is not text), queued and handled
/// in order: a job, answered when its gradients are computed, or the run's half of that step.
pub fn serve(data: JsValue) {
    let start = QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        q.1.push_back(data);
        !std::mem::replace(&mut q.0, true)
    });
    if start {
        wasm_bindgen_futures::spawn_local(async {
            while let Some(data) = QUEUE.with(|q| q.borrow_mut().1.pop_front()) {
                handle(data).await;
            }
            QUEUE.with(|q| q.borrow_mut().0 = false);
        });
    }
}

async fn handle(data: JsValue) {
    let received = crate::worker::precise_ms();
    if let Some(json) = Reflect::get(&data, &"update".into()).ok().and_then(|u| u.as_string()) {
        // The run's half: a copy that cannot take it is dropped, and the run's next job is
        // answered stale, so nothing is reported here but a warning.
        if let Err(e) = update(&json, &data) {
            web_sys::console::warn_1(&format!("the second worker dropped a run's copy: {e}").into());
        }
        return;
    }
    {
        let reply = Object::new();
        let mut transfer = Array::new();
        match gradients(&data).await {
            Ok(r) if r.stale => {
                let _ = Reflect::set(&reply, &"stale".into(), &true.into());
            }
            Ok(r) => {
                let grads = Float32Array::from(&r.grads[..]);
                let present = serde_json::to_string(&r.present).unwrap_or_default();
                let _ = Reflect::set(&reply, &"grads".into(), &grads);
                let _ = Reflect::set(&reply, &"present".into(), &present.into());
                let _ = Reflect::set(&reply, &"loss".into(), &f64::from(r.loss).into());
                // its time on the job, for the benchmark's profile
                let _ = Reflect::set(&reply, &"busy".into(), &(crate::worker::precise_ms() - received).into());
                transfer = Array::of1(&grads.buffer());
            }
            Err(e) => {
                let _ = Reflect::set(&reply, &"error".into(), &format!("the second worker failed: {e}").into());
            }
        }
        let _ = scope().post_message_with_transfer(&reply, &transfer);
    }
}

fn update(json: &str, data: &JsValue) -> Result<(), String> {
    let mut update: HelperUpdate = serde_json::from_str(json).map_err(|e| format!("unreadable gradients: {e}"))?;
    update.grads = Reflect::get(data, &"grads".into())
        .ok()
        .and_then(|p| p.dyn_into::<Float32Array>().ok())
        .ok_or("an update without gradients")?
        .to_vec();
    ENGINE.with(|h| h.borrow_mut().get_or_insert_with(|| Helper::new(Device::flex())).update(&update))
}

async fn gradients(data: &JsValue) -> Result<HelperReply, String> {
    let json = Reflect::get(data, &"work".into()).ok().and_then(|w| w.as_string()).ok_or("a message without work")?;
    let mut work: HelperWork = serde_json::from_str(&json).map_err(|e| format!("unreadable work: {e}"))?;
    work.state = Reflect::get(data, &"state".into())
        .ok()
        .and_then(|p| p.dyn_into::<Float32Array>().ok())
        .ok_or("work without its state array")?
        .to_vec();
    let mut helper = ENGINE.with(|h| h.borrow_mut().take()).unwrap_or_else(|| Helper::new(Device::flex()));
    let reply = helper.gradients(&work).await;
    ENGINE.with(|h| *h.borrow_mut() = Some(helper));
    reply
}
