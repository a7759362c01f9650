//! The second worker of a CPU run: half of each step's rows on another core.
//!
//! Why: the tab's WebAssembly runs on one thread (threads need a cross-origin-isolated page and
//! a standard library rebuilt with atomics), so a CPU run used one core of a machine that has
//! several. The training worker starts a copy of itself (`new Worker(self.location.href)`, the
//! same loader shim) as its *helper*; for each step it sends the second half of the batch's
//! rows, computes the first half meanwhile, and adds the two gradients
//! (`objlab_engine::train::data_parallel`, where the split is shown to equal one batch). The
//! helper keeps a copy of each run it serves (weights and AdamW moments) and takes the same
//! step on it with the run's half of the gradients, so the run's state travels only when the
//! copy is missing or out of step.
//!
//! Every message between the two workers is an object of two fields: `json`, a header as JSON
//! text ([`Outgoing`], read back as [`Incoming`]), and `floats`, one transferred
//! `Float32Array` (the run's state, or gradients). So few values because in this worker every
//! JavaScript value that Rust makes or receives costs ~0.6 ms (Chromium 156; wasm-bindgen's
//! externref table), while a borrowed one costs microseconds: the keys, the message object,
//! the transfer list and the answer's watchdog are made once, arrays received are reused for
//! the next ones sent, and the step waits for its answer on a Rust future, not a `Promise`.
//!
//! A helper that fails, crashes or stays silent for [`ANSWER_TIMEOUT_MS`] is stopped for good
//! and its half computed here, so no step is lost; the device line says so.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use js_sys::{Array, Float32Array, Object, Reflect};
use objlab_engine::burn::tensor::Device;
use objlab_engine::protocol::FromWorker;
use objlab_engine::train::data_parallel::{Answer, Helper, HelperLink, HelperReply, HelperUpdate, HelperWork};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker};

use crate::worker::with_scope;

/// How long a step waits for the helper's half before computing it here (a baby-GPT half
/// takes about 0.1 s; a large model's, a few seconds).
const ANSWER_TIMEOUT_MS: i32 = 60_000;

/// A message's header, as sent (borrowing what it says).
#[derive(Serialize)]
enum Outgoing<'a> {
    /// To the helper: the gradients of these rows, please (floats: the run's state when
    /// `work.copy` says so, else none).
    Work(&'a HelperWork),
    /// To the helper: the run's half of the step, for its copy (floats: the gradients).
    Update(&'a HelperUpdate),
    /// To the training worker: the helper's half (floats: its gradients).
    Reply(&'a HelperReply),
    /// To the training worker: the job failed.
    Error(&'a str),
}

/// A message's header, as received: the same variants as [`Outgoing`], owned.
#[derive(Deserialize)]
enum Incoming {
    Work(HelperWork),
    Update(HelperUpdate),
    Reply(HelperReply),
    Error(String),
}

/// The values every message is built from, made once per worker.
struct Wire {
    json: JsValue,
    floats: JsValue,
    /// The message object, refilled for each message (posting copies it).
    message: Object,
    /// `[the floats' buffer]`, refilled likewise.
    transfer: Array,
    /// Arrays received, reused for the next ones sent of the same length (a step's gradients
    /// come and go at one length).
    spares: RefCell<Vec<Float32Array>>,
}

/// How many received arrays are kept for reuse.
const SPARES: usize = 2;

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

/// The job in flight with the helper, as the training worker sees it.
#[derive(Default)]
struct Pending {
    /// A job was sent and its answer not yet handed over.
    asked: bool,
    answer: Option<Result<HelperReply, String>>,
    /// The step waiting for the answer.
    waker: Option<Waker>,
    /// The watchdog's timer for this job.
    timer: Option<i32>,
}

thread_local! {
    static WIRE: Wire = Wire {
        json: JsValue::from_str("json"),
        floats: JsValue::from_str("floats"),
        message: Object::new(),
        transfer: Array::new(),
        spares: RefCell::new(Vec::new()),
    };
    static LINK: RefCell<Link> = const { RefCell::new(Link::Unstarted) };
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
    /// In the helper: the engine's side, kept between jobs (its copies of the runs).
    static ENGINE: RefCell<Option<Helper>> = const { RefCell::new(None) };
    /// In the helper: messages not yet handled, handled one at a time in order (an update
    /// must follow its job); and whether they are being handled.
    static QUEUE: RefCell<(bool, VecDeque<(Incoming, Vec<f32>)>)> = const { RefCell::new((false, VecDeque::new())) };
    /// Handlers of the helper's events, kept alive while it lives.
    static HANDLERS: RefCell<Vec<Closure<dyn FnMut(JsValue)>>> = const { RefCell::new(Vec::new()) };
    /// Fires when a job's answer is late (its timer is cleared when the answer comes).
    static WATCHDOG: Closure<dyn FnMut(JsValue)> = Closure::new(|_| {
        if PENDING.with(|p| p.borrow().asked) {
            fail(&format!("the second worker did not answer within {} s", ANSWER_TIMEOUT_MS / 1000));
        }
    });
}

/// Posts `header` and `floats` with `send` (a worker's `postMessage` with a transfer list).
fn post(
    header: &Outgoing,
    floats: &[f32],
    send: impl FnOnce(&JsValue, &JsValue) -> Result<(), JsValue>,
) -> Result<(), String> {
    let json = serde_json::to_string(header).map_err(|e| format!("a message could not be written: {e}"))?;
    WIRE.with(|w| {
        let spare = {
            let mut spares = w.spares.borrow_mut();
            spares.iter().position(|a| a.length() as usize == floats.len()).map(|i| spares.remove(i))
        };
        let array = spare.unwrap_or_else(|| Float32Array::new_with_length(floats.len() as u32));
        array.copy_from(floats);
        let _ = Reflect::set(&w.message, &w.json, &JsValue::from(json));
        let _ = Reflect::set(&w.message, &w.floats, &array);
        w.transfer.set(0, array.buffer().into());
        send(&w.message, &w.transfer).map_err(|e| format!("{e:?}"))
    })
}

/// Reads a message posted by [`post`]: its header and its floats (whose array is kept for
/// reuse).
fn received(data: &JsValue) -> Result<(Incoming, Vec<f32>), String> {
    WIRE.with(|w| {
        let json = Reflect::get(data, &w.json).ok().and_then(|j| j.as_string()).ok_or("a message without its header")?;
        let header: Incoming = serde_json::from_str(&json).map_err(|e| format!("an unreadable message: {e}"))?;
        let array: Float32Array = Reflect::get(data, &w.floats)
            .ok()
            .and_then(|a| a.dyn_into().ok())
            .ok_or("a message without its array")?;
        let floats = array.to_vec();
        let mut spares = w.spares.borrow_mut();
        spares.push(array);
        if spares.len() > SPARES {
            spares.remove(0);
        }
        Ok((header, floats))
    })
}

/// Starts the helper if this machine has a core to spare and none was started (or refused)
/// yet. Returns at once; the helper is used from its first `Ready`.
pub fn start() {
    if !LINK.with(|l| matches!(*l.borrow(), Link::Unstarted)) {
        return;
    }
    let cores = with_scope(|s| s.navigator().hardware_concurrency());
    if cores < 2.0 {
        LINK.with(|l| *l.borrow_mut() = Link::Unavailable);
        return;
    }
    let url = with_scope(|s| s.location().href());
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
            None => match received(&data) {
                Ok((Incoming::Reply(mut reply), grads)) => {
                    reply.grads = grads;
                    answer(Ok(reply));
                }
                Ok((Incoming::Error(why), _)) => answer(Err(why)),
                Ok(_) => answer(Err("the second worker answered with a job".into())),
                Err(why) => answer(Err(format!("the second worker's answer: {why}"))),
            },
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
    answer(Err(why.to_string()));
    crate::worker::device_changed();
}

/// Hands the answer of the job in flight to the step waiting for it (nothing when no job is:
/// a late answer, or a second failure).
fn answer(result: Result<HelperReply, String>) {
    let (waker, timer) = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if !std::mem::take(&mut p.asked) {
            return (None, None);
        }
        p.answer = Some(result);
        (p.waker.take(), p.timer.take())
    });
    if let Some(timer) = timer {
        with_scope(|s| s.clear_timeout_with_handle(timer));
    }
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The answer to the job in flight, once [`answer`] has it.
struct Answered;

impl Future for Answered {
    type Output = Result<HelperReply, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            match p.answer.take() {
                Some(answer) => Poll::Ready(answer),
                None => {
                    p.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }
}

/// Posts to the helper when it is ready.
fn post_to_helper(header: &Outgoing, floats: &[f32]) -> Result<(), String> {
    LINK.with(|l| match &*l.borrow() {
        Link::Ready(worker) => post(header, floats, |m, t| worker.post_message_with_transfer(m, t)),
        _ => Err("the second worker is not ready".into()),
    })
}

/// The training worker's link to its helper, for `Trainer::split_step`.
pub struct SecondWorker;

impl HelperLink for SecondWorker {
    fn ask(&self, work: &HelperWork) -> Answer {
        Box::pin(ask(work))
    }

    fn update(&self, update: HelperUpdate) -> Result<(), String> {
        post_to_helper(&Outgoing::Update(&update), &update.grads)
            .map_err(|e| format!("the second worker could not be sent the gradients: {e}"))
    }
}

/// Sends `work` to the helper now; the future is its answer. (Called by
/// `Trainer::split_step` before this worker's own half, so both halves run at once.) Any
/// error stops the helper for good ([`fail`]) before it is returned.
pub fn ask(work: &HelperWork) -> impl Future<Output = Result<HelperReply, String>> + use<> {
    PENDING.with(|p| *p.borrow_mut() = Pending { asked: true, ..Pending::default() });
    let sent = post_to_helper(&Outgoing::Work(work), &work.state)
        .map_err(|e| format!("the second worker could not be sent the step: {e}"));
    match &sent {
        Ok(()) => {
            let timer = WATCHDOG.with(|dog| {
                with_scope(|s| s.set_timeout_with_callback_and_timeout_and_arguments_0(dog.as_ref().unchecked_ref(), ANSWER_TIMEOUT_MS))
            });
            PENDING.with(|p| p.borrow_mut().timer = timer.ok());
        }
        Err(why) => fail(why),
    }
    async move {
        sent?;
        Answered.await.inspect_err(|why| fail(why))
    }
}

/// In the helper: a message from the training worker (one that is not text), queued and handled
/// in order: a job, answered when its gradients are computed, or the run's half of that step.
pub fn serve(data: JsValue) {
    let message = match received(&data) {
        Ok(message) => message,
        Err(why) => return reply_error(&format!("the second worker got {why}")),
    };
    let start = QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        q.1.push_back(message);
        !std::mem::replace(&mut q.0, true)
    });
    if start {
        wasm_bindgen_futures::spawn_local(async {
            while let Some((header, floats)) = QUEUE.with(|q| q.borrow_mut().1.pop_front()) {
                handle(header, floats).await;
            }
            QUEUE.with(|q| q.borrow_mut().0 = false);
        });
    }
}

fn reply(header: &Outgoing, floats: &[f32]) {
    let sent = with_scope(|s| post(header, floats, |m, t| s.post_message_with_transfer(m, t)));
    if let Err(e) = sent {
        web_sys::console::warn_1(&format!("the second worker could not answer: {e}").into());
    }
}

fn reply_error(why: &str) {
    reply(&Outgoing::Error(why), &[]);
}

async fn handle(header: Incoming, floats: Vec<f32>) {
    let received = crate::worker::precise_ms();
    match header {
        Incoming::Update(mut update) => {
            // The run's half: a copy that cannot take it is dropped, and the run's next job is
            // answered stale, so nothing is reported here but a warning.
            update.grads = floats;
            let updated = ENGINE.with(|h| h.borrow_mut().get_or_insert_with(|| Helper::new(Device::flex())).update(&update));
            if let Err(e) = updated {
                web_sys::console::warn_1(&format!("the second worker dropped a run's copy: {e}").into());
            }
        }
        Incoming::Work(mut work) => {
            work.state = floats;
            let mut helper = ENGINE.with(|h| h.borrow_mut().take()).unwrap_or_else(|| Helper::new(Device::flex()));
            let result = helper.gradients(&work).await;
            ENGINE.with(|h| *h.borrow_mut() = Some(helper));
            match result {
                Ok(mut r) => {
                    // its time on the job, for the benchmark's profile
                    r.busy_ms = crate::worker::precise_ms() - received;
                    let grads = std::mem::take(&mut r.grads);
                    reply(&Outgoing::Reply(&r), &grads);
                }
                Err(e) => reply_error(&format!("the second worker failed: {e}")),
            }
        }
        Incoming::Reply(_) | Incoming::Error(_) => reply_error("the second worker was sent an answer"),
    }
}
