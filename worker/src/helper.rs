//! The helper workers of a CPU run: a share of each step's rows on each other core.
//!
//! Why: the tab's WebAssembly runs on one thread (threads need a cross-origin-isolated page and
//! a standard library rebuilt with atomics), so a CPU run used one core of a machine that has
//! several. The training worker starts copies of itself, on its own compiled module
//! ([`sharing_this_module`]), as its *helpers*: one per core beside its own, up to
//! `AUTO_WORKERS` workers in all, or as many as the run's `workers` option says. For each step
//! it sends each helper a share of the batch's rows, computes its own share meanwhile, and adds
//! the gradients (`objlab_engine::train::data_parallel`, where the split is shown to equal one
//! batch). Each helper keeps a copy of each run it serves (weights and AdamW moments) and takes
//! the same step on it with the run's gradients, so the run's state travels only when a copy
//! is missing or out of step. The helpers do not know of each other: each has its own channel,
//! jobs and watchdog here, by its index.
//!
//! Every message between the two workers is one transferred `ArrayBuffer`: a JSON header
//! ([`Outgoing`], read back as [`Incoming`]) followed by one array of floats (the run's state,
//! or gradients), laid out by [`Port::post`]. A few lines of JavaScript ([`PORT_JS`]) copy it
//! between the buffer and this module's memory, so Rust hands over and receives only numbers
//! (addresses and lengths); the floats are copied straight from the slices being sent (a
//! step's gradients: one per parameter, where they lie, `Floats`) and into the `Vec` that the
//! receiver keeps, so that Rust does not copy 3 MB of gradients again. The
//! layout is Rust's alone ([`floats_at`]): JavaScript is told where the floats start. Why: a
//! call with numbers is the cheapest way across, and a step's three messages had made or
//! received ~20 JavaScript values, each of which cost ~0.6 ms while every call into the module
//! reran its static constructors (fixed since: `worker.rs`, `run_static_constructors`).
//! The answer's watchdog is made once too, and the step waits for its answer on a Rust
//! future, not a `Promise`.
//!
//! A helper that fails, crashes or stays silent for [`ANSWER_TIMEOUT_MS`] is stopped for good
//! and its share computed here, so no step is lost; the device line says so.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use js_sys::Array;
use objlab_engine::burn::tensor::Device;
use objlab_engine::protocol::FromWorker;
use objlab_engine::spec::{AUTO_WORKERS, MAX_WORKERS};
use objlab_engine::train::data_parallel::{Answer, Floats, Helper, HelperLink, HelperReply, HelperUpdate, HelperWork};
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

/// A message as received: its header and its floats.
type Message = (Incoming, Vec<f32>);

/// Where the training worker stands with one of its helpers.
enum Link {
    /// Being started.
    Unstarted,
    /// Loading its WebAssembly: steps go on without it until it says `Ready`.
    Starting(Worker),
    Ready(Worker),
    /// Failed, to start or later: why (steps go on without it from then on; the device line
    /// says it).
    Failed(String),
}

/// A job sent to the helper, as the training worker sees it, from its sending until its
/// answer is taken. The helper answers its jobs in the order they were sent, and a run may
/// have sent its next step's job before this step's answer came (`sends_ahead`), so several
/// can wait, each for the first answer that comes after the answers of those sent before it.
struct Job {
    id: u64,
    answer: Option<Result<HelperReply, String>>,
    /// The step waiting for the answer.
    waker: Option<Waker>,
    /// The watchdog's timer for this job (cleared when the answer comes).
    timer: Option<i32>,
    /// Its step no longer waits for it (the run took that step alone, or is gone): its answer,
    /// when it comes, is dropped.
    dropped: bool,
}

/// The jobs sent and not yet taken, in the order sent; and the next job's id.
#[derive(Default)]
struct Jobs {
    list: VecDeque<Job>,
    next: u64,
}

/// The training worker's side of one helper: where it stands, its jobs, and its channel
/// (once started; kept after a failure: the stopped helper sends nothing more, and `link`
/// says not to post).
struct HelperSlot {
    link: Link,
    jobs: Jobs,
    port: Option<Port>,
}

/// A JavaScript event handler made from a Rust closure.
type Handler = Closure<dyn FnMut(JsValue)>;

thread_local! {
    /// The workers the latest CPU run asked for, as [`workers`] resolves them (the device line
    /// counts the helpers it uses).
    static WANTED: std::cell::Cell<usize> = const { std::cell::Cell::new(1) };
    /// The training worker's helpers, by index (the order they were started in).
    static HELPERS: RefCell<Vec<HelperSlot>> = const { RefCell::new(Vec::new()) };
    /// In the helper: the engine's side, kept between jobs (its copies of the runs).
    static ENGINE: RefCell<Option<Helper>> = const { RefCell::new(None) };
    /// In the helper: messages not yet handled, handled one at a time in order (an update
    /// must follow its job); and whether they are being handled.
    static QUEUE: RefCell<(bool, VecDeque<Message>)> = const { RefCell::new((false, VecDeque::new())) };
    /// Handlers of the helper's events, kept alive while it lives.
    static HANDLERS: RefCell<Vec<Handler>> = const { RefCell::new(Vec::new()) };
    /// Every worker's channel on its own `self`: in a helper, its jobs come and its answers
    /// leave through it ([`listen`]).
    static TO_PARENT: RefCell<Option<Port>> = const { RefCell::new(None) };
    /// Why the helper could not be started on this worker's compiled module
    /// ([`sharing_this_module`]) and compiles its own copy; the device line says it.
    static OWN_COPY: RefCell<Option<String>> = const { RefCell::new(None) };
    /// In the helper: whether it has been given a job ([`serving`]).
    static SERVING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Fires, with the helper's index, when a job's answer is late (its timer is cleared when
    /// the answer comes).
    static WATCHDOG: Handler = Closure::new(|index: JsValue| {
        let i = index.as_f64().map_or(0, |i| i as usize);
        if waits(i) {
            fail(i, &format!("{} did not answer within {} s", name(i), ANSWER_TIMEOUT_MS / 1000));
        }
    });
}

/// The JavaScript side of a [`Port`], called with `(target, memory, take, arrived, other)`:
/// `target` is the other worker (or `self`), `memory` this module's memory, `take(length,
/// header_length)` makes room for a received message of the layout [`Port::post`] writes and
/// returns where (the address of three words: where the header goes, where the floats go,
/// and where they start in the message; 0 for a message not of that layout), `arrived()` says
/// it is there, and `other(event)` gets every message that is not binary (the page's text).
/// Returns an object whose `send(header_at, header_length, parts_at, parts_count,
/// floats_length, floats_offset)` posts one message made of the header's range of the memory
/// and the floats' parts, one after the other from `floats_offset` in it (`parts_at`: each
/// part's address and length in bytes, two words each).
const PORT_JS: &str = r#"
// Buffers received, reused for the next sent: a new 3 MB ArrayBuffer cost ~2 ms (its pages
// are mapped and zeroed), copying into it 0.4. Buffers are made in sizes of 64 KiB, so a
// step's gradients, sent both ways with headers of slightly different lengths, find one.
const spares = [];
const size = (length) => Math.ceil(length / 65536) * 65536;
target.onmessage = (event) => {
  const data = event.data;
  if (data instanceof ArrayBuffer) {
    // the message's own length and its header's are its first two words (the buffer may be longer)
    const words = data.byteLength >= 8 ? new Uint32Array(data, 0, 2) : [data.byteLength, 0];
    const length = Math.min(words[0], data.byteLength), headerLength = words[1];
    const at = take(length, headerLength);
    if (at !== 0) {
      const [headerAt, floatsTo, from] = new Uint32Array(memory.buffer, at, 3);
      new Uint8Array(memory.buffer, headerAt, headerLength).set(new Uint8Array(data, 8, headerLength));
      new Uint8Array(memory.buffer, floatsTo, length - from).set(new Uint8Array(data, from, length - from));
    }
    spares.push(data);
    if (spares.length > 2) spares.shift();
    arrived();
  } else {
    other(event);
  }
};
return {
  send(headerAt, headerLength, partsAt, partsCount, floatsLength, from) {
    const length = from + floatsLength;
    const i = spares.findIndex((b) => b.byteLength === size(length));
    const buffer = i >= 0 ? spares.splice(i, 1)[0] : new ArrayBuffer(size(length));
    new Uint32Array(buffer, 0, 2).set([length, headerLength]);
    new Uint8Array(buffer, 8, headerLength).set(new Uint8Array(memory.buffer, headerAt, headerLength));
    // the floats, from where each part lies (address and length in bytes, two words each)
    const parts = new Uint32Array(memory.buffer, partsAt, 2 * partsCount);
    for (let p = 0, at = from; p < partsCount; at += parts[2 * p + 1], p++) {
      new Uint8Array(buffer, at, parts[2 * p + 1]).set(new Uint8Array(memory.buffer, parts[2 * p], parts[2 * p + 1]));
    }
    target.postMessage(buffer, [buffer]);
  },
};
"#;

#[wasm_bindgen]
extern "C" {
    /// The object [`PORT_JS`] returns.
    type BinaryPort;
    #[wasm_bindgen(method, structural, catch)]
    fn send(this: &BinaryPort, header_at: u32, header_length: u32, parts_at: u32, parts_count: u32, floats_length: u32, floats_offset: u32) -> Result<(), JsValue>;
}

/// A binary channel to another worker (see the module's doc).
struct Port {
    js: BinaryPort,
    /// Its handler of binary messages, kept alive with it.
    _arrived: Closure<dyn FnMut()>,
}

/// The message being received: its header's bytes and its floats, which JavaScript copies
/// straight into place (the floats into a `Vec` of their own, handed on as they are), or why
/// it is not of the workers' format; and the three words [`PORT_JS`] reads.
#[derive(Default)]
struct Inbox {
    header: Vec<u8>,
    floats: Vec<f32>,
    /// How many floats the message has (the `Vec`'s capacity may be more).
    count: usize,
    error: Option<String>,
    addresses: [u32; 3],
}

/// Where a message's floats start: after its two lengths (4 bytes each) and its header,
/// padded to a multiple of 4 bytes so that they are aligned.
fn floats_at(header_length: usize) -> usize {
    (8 + header_length).next_multiple_of(4)
}

thread_local! {
    static INBOX: RefCell<Inbox> = RefCell::new(Inbox::default());
    /// Where [`PORT_JS`] asks for room: one for every port of this worker, as a message is
    /// taken and handled before the next arrives.
    static TAKE: Closure<dyn FnMut(u32, u32) -> u32> = Closure::new(|length: u32, header_length: u32| {
        INBOX.with(|inbox| {
            let mut inbox = inbox.borrow_mut();
            let (length, header_length) = (length as usize, header_length as usize);
            let floats_at = floats_at(header_length);
            if !length.is_multiple_of(4) || length < 8 || floats_at > length {
                inbox.error = Some(format!("a message of {length} bytes with a header of {header_length}, not of the workers' format"));
                return 0;
            }
            inbox.error = None;
            inbox.header.clear();
            inbox.header.resize(header_length, 0);
            // Room for the floats, not zeroed (3 MB a step): JavaScript writes every one of
            // them before `arrived` sets the length.
            inbox.count = (length - floats_at) / 4;
            inbox.floats = Vec::with_capacity(inbox.count);
            inbox.addresses = [inbox.header.as_ptr() as u32, inbox.floats.as_ptr() as u32, floats_at as u32];
            inbox.addresses.as_ptr() as u32
        })
    });
    /// The header being sent and its floats' parts (address and length in bytes of each),
    /// kept between messages.
    static OUTBOX: RefCell<(Vec<u8>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl Port {
    /// Listens on `target` (a `Worker`, or this worker's `self`): `arrived` gets each binary
    /// message, `other` every other message event.
    fn open(target: &JsValue, arrived: impl Fn(Result<Message, String>) + 'static, other: &JsValue) -> Result<Port, String> {
        let arrived = Closure::<dyn FnMut()>::new(move || arrived(INBOX.with(|inbox| received(&mut inbox.borrow_mut()))));
        let make = js_sys::Function::new_with_args("target, memory, take, arrived, other", PORT_JS);
        let args = TAKE.with(|take| Array::of5(target, &wasm_bindgen::memory(), take.as_ref(), arrived.as_ref(), other));
        let js = make.apply(&JsValue::NULL, &args).map_err(|e| format!("the workers' channel could not be made: {e:?}"))?;
        Ok(Port { js: js.unchecked_into(), _arrived: arrived })
    }

    /// Posts `header` and `floats` as one message: its length in bytes and its header's (4
    /// bytes each, little-endian), the header as JSON, padding to a multiple of 4 bytes, then
    /// the floats of every slice of `floats`, one after the other. JavaScript copies the header
    /// and each slice from where they are into the message's buffer, which is then
    /// transferred, not copied again (a step's gradients are one slice per parameter, as they
    /// lie: `Floats`).
    fn post(&self, header: &Outgoing, floats: &[&[f32]]) -> Result<(), String> {
        OUTBOX.with(|out| {
            let mut out = out.borrow_mut();
            header_of(&mut out.0, header)?;
            out.1.clear();
            for part in floats.iter().filter(|p| !p.is_empty()) {
                out.1.extend([part.as_ptr() as u32, std::mem::size_of_val(*part) as u32]);
            }
            let floats_length = floats.iter().map(|p| std::mem::size_of_val(*p)).sum::<usize>() as u32;
            let offset = floats_at(out.0.len()) as u32;
            let (header, parts) = (&out.0, &out.1);
            self.js
                .send(header.as_ptr() as u32, header.len() as u32, parts.as_ptr() as u32, (parts.len() / 2) as u32, floats_length, offset)
                .map_err(|e| format!("{e:?}"))
        })
    }
}

/// Writes a message's header: [`Outgoing`] as JSON.
fn header_of(out: &mut Vec<u8>, header: &Outgoing) -> Result<(), String> {
    out.clear();
    serde_json::to_writer(&mut *out, header).map_err(|e| format!("a message could not be written: {e}"))
}

/// The message [`PORT_JS`] has just copied into `inbox`: its header read, its floats handed on.
fn received(inbox: &mut Inbox) -> Result<Message, String> {
    if let Some(why) = inbox.error.take() {
        return Err(why);
    }
    let mut floats = std::mem::take(&mut inbox.floats);
    // SAFETY: `TAKE` gave JavaScript this Vec's buffer, with room for `count` floats, and
    // JavaScript wrote all `count` of the message's floats there before calling `arrived`.
    unsafe { floats.set_len(inbox.count) };
    let header = serde_json::from_slice(&inbox.header).map_err(|e| format!("an unreadable message: {e}"))?;
    Ok((header, floats))
}

/// A helper's name in messages (the training worker is the first worker).
fn name(i: usize) -> String {
    match i {
        0 => "the second worker".into(),
        1 => "the third worker".into(),
        2 => "the fourth worker".into(),
        _ => format!("worker {}", i + 2),
    }
}

/// The workers a run's `workers` option asks for here, this one included: for 0 one per core
/// up to [`AUTO_WORKERS`], else the option, up to [`MAX_WORKERS`].
fn workers(wanted: usize) -> usize {
    if wanted == 0 {
        let cores = with_scope(|s| s.navigator().hardware_concurrency()).max(1.0) as usize;
        cores.min(AUTO_WORKERS)
    } else {
        wanted.min(MAX_WORKERS)
    }
}

/// Starts as many helpers as a run asking for `wanted` workers needs and are not started yet
/// (helpers are kept for the page's later runs). Returns at once; each helper is used from
/// its first `Ready`.
pub fn start(wanted: usize) {
    let target = workers(wanted);
    WANTED.with(|w| w.set(target));
    let started = HELPERS.with(|h| h.borrow().len());
    for i in started..target.saturating_sub(1) {
        start_one(i);
    }
}

/// Starts helper `i` (the next index).
fn start_one(i: usize) {
    HELPERS.with(|h| h.borrow_mut().push(HelperSlot { link: Link::Unstarted, jobs: Jobs::default(), port: None }));
    let url = with_scope(|s| s.location().href());
    let worker = match sharing_this_module(&url) {
        Ok(w) => w,
        Err(why) => {
            // the copy loads and compiles the module again, and tiers it up on its own
            web_sys::console::warn_1(&format!("{} loads its own copy of the module: {why}", name(i)).into());
            OWN_COPY.with(|c| *c.borrow_mut() = Some(why));
            match Worker::new(&url) {
                Ok(w) => w,
                Err(e) => return fail(i, &format!("{} could not start ({e:?})", name(i))),
            }
        }
    };
    let on_message = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        // The helper's own start-up and crash reports are the page's messages (text); its
        // answers come through the port.
        let Some(text) = event.unchecked_into::<MessageEvent>().data().as_string() else { return };
        match FromWorker::from_json(&text) {
            Ok(FromWorker::Ready) => {
                HELPERS.with(|h| {
                    if let Some(helper) = h.borrow_mut().get_mut(i)
                        && let Link::Starting(w) = &helper.link
                    {
                        helper.link = Link::Ready(w.clone());
                    }
                });
                crate::worker::device_changed();
            }
            Ok(FromWorker::Error { message, .. }) => fail(i, &format!("{} failed: {message}", name(i))),
            _ => {}
        }
    });
    let on_error = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        // Handled here: an error event left uncancelled is reported again in this worker's own
        // scope, and from there to the page as a crash of the training worker, which goes on.
        if let Some(event) = event.dyn_ref::<web_sys::Event>() {
            event.prevent_default();
        }
        let message = event.dyn_ref::<web_sys::ErrorEvent>().map(|e| e.message()).unwrap_or_default();
        fail(i, &format!("{} stopped: {message}", name(i)));
    });
    let port = match Port::open(&worker, move |message| answered(i, message), on_message.as_ref()) {
        Ok(port) => port,
        Err(why) => {
            worker.terminate();
            return fail(i, &why);
        }
    };
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    HANDLERS.with(|h| h.borrow_mut().extend([on_message, on_error]));
    HELPERS.with(|h| {
        let helper = &mut h.borrow_mut()[i];
        helper.port = Some(port);
        helper.link = Link::Starting(worker);
    });
}

/// Starts the helper on this worker's own compiled `WebAssembly.Module`, given `loader`, the
/// URL of this worker's loader shim (Trunk's `…_loader.js`, which loads `….js`, wasm-bindgen's
/// glue, and then fetches and compiles the module).
///
/// Why: a helper started from the loader compiles the 20 MB module again and tiers its hot
/// functions up from V8's baseline compiler on its own, so its half of its first ~20 steps
/// was slower than this worker's (the eighteenth session's profile). A module posted to
/// another worker keeps its compiled code, the optimised functions included, so the helper
/// computes at this worker's speed from its first step and starts without a download.
///
/// The helper is a few lines from a `Blob` ([`SHARED_MODULE_JS`]): the glue, then the module
/// from its first message, instantiated by wasm-bindgen's `initSync`. Fails (and the caller
/// starts the helper from the loader) where the URL is not a loader's, or the browser cannot
/// post a module or start a worker from a `Blob`.
fn sharing_this_module(loader: &str) -> Result<Worker, String> {
    let glue = loader
        .strip_suffix("_loader.js")
        .map(|stem| format!("{stem}.js"))
        .ok_or_else(|| format!("{loader} is not a loader shim"))?;
    let start = js_sys::Function::new_with_args("glue, module", SHARED_MODULE_JS);
    let worker = start
        .call2(&JsValue::NULL, &glue.into(), &wasm_bindgen::module())
        .map_err(|e| format!("{e:?}"))?;
    worker.dyn_into::<Worker>().map_err(|e| format!("not a worker: {e:?}"))
}

/// Called with `(glue, module)`: starts a worker from a `Blob` that loads wasm-bindgen's glue
/// from `glue` and instantiates the `module` that its first message brings (the module's start
/// then replaces this `onmessage` with the worker's own), posts it `module` and returns it.
const SHARED_MODULE_JS: &str = r#"
const source = `importScripts(${JSON.stringify(glue)});
self.onmessage = (event) => { self.onmessage = null; wasm_bindgen.initSync({ module: event.data }); };`;
const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
try {
  const worker = new Worker(url);
  try {
    worker.postMessage(module);
  } catch (e) {
    worker.terminate();
    throw e;
  }
  return worker;
} finally {
  // the worker has its own reference to the script once started
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
"#;

/// Helper `i`'s binary message: the answer to its job in flight. The helper says what went
/// wrong without its name, which is said here.
fn answered(i: usize, message: Result<Message, String>) {
    let who = name(i);
    match message {
        Ok((Incoming::Reply(mut reply), grads)) => {
            reply.grads = Floats::from_values(grads);
            answer(i, Ok(reply));
        }
        Ok((Incoming::Error(why), _)) => answer(i, Err(format!("{who} {why}"))),
        Ok(_) => answer(i, Err(format!("{who} answered with a job"))),
        Err(why) => answer(i, Err(format!("{who}'s answer: {why}"))),
    }
}

/// Whether this worker has been given a helper's job: its panics are then reported to the
/// training worker, which says whose failure it was.
pub fn serving() -> bool {
    SERVING.with(|s| s.get())
}

/// The helpers a step of a run asking for `wanted` workers shares its rows with now: those
/// ready among the first it asks for, in their order.
pub fn ready_links(wanted: usize) -> Vec<HelperWorker> {
    links(wanted).into_iter().flatten().collect()
}

/// Every helper a run asking for `wanted` workers counts on, in order: its link where it is
/// ready, `None` where it is still loading or has stopped (the run computes that share itself:
/// `data_parallel::Absent`).
pub fn links(wanted: usize) -> Vec<Option<HelperWorker>> {
    let helpers = workers(wanted) - 1;
    HELPERS.with(|h| {
        let h = h.borrow();
        (0..helpers).map(|i| h.get(i).filter(|h| matches!(h.link, Link::Ready(_))).map(|_| HelperWorker(i))).collect()
    })
}

/// Whether every helper a run asking for `wanted` workers would use has come up or failed:
/// none is still loading.
pub fn settled(wanted: usize) -> bool {
    let helpers = workers(wanted) - 1;
    HELPERS.with(|h| h.borrow().iter().take(helpers).all(|h| matches!(h.link, Link::Ready(_) | Link::Failed(_))))
}

/// What the device line says of the helpers the latest CPU run asked for: how many workers
/// share the steps, or why only one does, and why any stopped.
pub fn status() -> Option<String> {
    HELPERS.with(|h| {
        let helpers = h.borrow();
        let links: Vec<&Link> = helpers.iter().take(WANTED.with(|w| w.get()) - 1).map(|h| &h.link).collect();
        let ready = links.iter().filter(|link| matches!(link, Link::Ready(_))).count();
        let failed: Vec<&str> = links.iter().filter_map(|link| if let Link::Failed(why) = link { Some(why.as_str()) } else { None }).collect();
        let line = match (ready, failed.first()) {
            (0, None) => return None,
            (0, Some(_)) => return Some(format!("1 worker: {}", failed.join("; "))),
            (n, None) => format!("{} workers share each step", n + 1),
            (n, Some(_)) => format!("{} workers share each step; {}", n + 1, failed.join("; ")),
        };
        Some(match OWN_COPY.with(|c| c.borrow().clone()) {
            None => line,
            Some(why) if links.len() == 1 => format!("{line} (the second on its own copy of the module: {why})"),
            Some(why) => format!("{line} (the helpers on their own copy of the module: {why})"),
        })
    })
}

/// Stops helper `i` for good (the steps go on without it) and ends its jobs in flight. The
/// first reason is kept: a crash is reported twice (the helper's panic message, then the
/// `error` event of its uncaught trap), and the first says more.
pub fn fail(i: usize, why: &str) {
    let old = HELPERS.with(|h| match h.borrow_mut().get_mut(i) {
        Some(helper) if !matches!(helper.link, Link::Failed(_)) => Some(std::mem::replace(&mut helper.link, Link::Failed(why.to_string()))),
        _ => None,
    });
    let Some(old) = old else { return answer_all(i, why) };
    if let Link::Starting(w) | Link::Ready(w) = old {
        w.terminate();
    }
    web_sys::console::warn_1(&why.into());
    answer_all(i, why);
    crate::worker::device_changed();
}

/// Whether a job of helper `i` still waits for its answer.
fn waits(i: usize) -> bool {
    HELPERS.with(|h| h.borrow().get(i).is_some_and(|helper| helper.jobs.list.iter().any(|job| job.answer.is_none())))
}

/// Ends every job of helper `i` still waiting for its answer with `why`.
fn answer_all(i: usize, why: &str) {
    while waits(i) {
        answer(i, Err(why.to_string()));
    }
}

/// Hands an answer to helper `i`'s oldest job still waiting for one, and wakes its step
/// (nothing when no job waits: a late answer, or a second failure).
fn answer(i: usize, result: Result<HelperReply, String>) {
    let (waker, timer) = HELPERS.with(|h| {
        let mut h = h.borrow_mut();
        let Some(j) = h.get_mut(i).map(|helper| &mut helper.jobs) else { return (None, None) };
        let Some(at) = j.list.iter().position(|job| job.answer.is_none()) else {
            return (None, None);
        };
        let (waker, timer) = (j.list[at].waker.take(), j.list[at].timer.take());
        if j.list[at].dropped {
            j.list.remove(at);
        } else {
            j.list[at].answer = Some(result);
        }
        (waker, timer)
    });
    if let Some(timer) = timer {
        with_scope(|s| s.clear_timeout_with_handle(timer));
    }
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The answer to helper `helper`'s job `id`, once [`answer`] has it. Dropped before, it
/// leaves the job to be answered and forgotten.
struct Answered {
    helper: usize,
    id: u64,
}

impl Future for Answered {
    type Output = Result<HelperReply, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        HELPERS.with(|h| {
            let mut h = h.borrow_mut();
            let Some(j) = h.get_mut(self.helper).map(|helper| &mut helper.jobs) else {
                return Poll::Ready(Err(format!("{}'s answer was lost", name(self.helper))));
            };
            let Some(i) = j.list.iter().position(|job| job.id == self.id) else {
                return Poll::Ready(Err(format!("{}'s answer was lost", name(self.helper))));
            };
            match j.list[i].answer.take() {
                Some(answer) => {
                    j.list.remove(i);
                    Poll::Ready(answer)
                }
                None => {
                    j.list[i].waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }
}

impl Drop for Answered {
    fn drop(&mut self) {
        HELPERS.with(|h| {
            let mut h = h.borrow_mut();
            let Some(j) = h.get_mut(self.helper).map(|helper| &mut helper.jobs) else { return };
            if let Some(i) = j.list.iter().position(|job| job.id == self.id) {
                if j.list[i].answer.is_some() {
                    j.list.remove(i);
                } else {
                    j.list[i].dropped = true;
                    j.list[i].waker = None;
                }
            }
        });
    }
}

/// Posts to helper `i` when it is ready.
fn post_to_helper(i: usize, header: &Outgoing, floats: &[&[f32]]) -> Result<(), String> {
    HELPERS.with(|h| match h.borrow().get(i) {
        Some(HelperSlot { link: Link::Ready(_), port: Some(port), .. }) => port.post(header, floats),
        Some(HelperSlot { link: Link::Ready(_), port: None, .. }) => Err("no channel is open".into()),
        _ => Err(format!("{} is not ready", name(i))),
    })
}

/// Posts through this worker's channel to its parent ([`TO_PARENT`]), if it is open.
fn post_to_parent(header: &Outgoing, floats: &[&[f32]]) -> Result<(), String> {
    TO_PARENT.with(|p| match &*p.borrow() {
        Some(port) => port.post(header, floats),
        None => Err("no channel is open".into()),
    })
}

/// The training worker's link to helper `.0`, for `Trainer::split_step_among`.
pub struct HelperWorker(pub usize);

impl HelperLink for HelperWorker {
    fn ask(&self, work: &HelperWork) -> Answer {
        Box::pin(ask(self.0, work))
    }

    fn update(&self, update: HelperUpdate) -> Result<(), String> {
        post_to_helper(self.0, &Outgoing::Update(&update), &update.grads.slices())
            .map_err(|e| format!("{} could not be sent the gradients: {e}", name(self.0)))
    }

    fn stop(&self, why: &str) {
        fail(self.0, why);
    }

    /// The helper handles its messages one at a time, in order, and answers each job.
    fn sends_ahead(&self) -> bool {
        true
    }
}

/// Sends `work` to helper `i` now; the future is its answer. (Called by
/// `Trainer::split_step_among` before this worker's own share, so that the shares run at once,
/// and for the next step's job before this step's answer.) Any error stops the helper for
/// good ([`fail`]) before it is returned.
pub fn ask(i: usize, work: &HelperWork) -> impl Future<Output = Result<HelperReply, String>> + use<> {
    let id = HELPERS.with(|h| {
        let mut h = h.borrow_mut();
        let j = &mut h[i].jobs;
        let id = j.next;
        j.next += 1;
        j.list.push_back(Job { id, answer: None, waker: None, timer: None, dropped: false });
        id
    });
    // made before the future, so that the job is forgotten even if the future is dropped unpolled
    let answered = Answered { helper: i, id };
    let sent = post_to_helper(i, &Outgoing::Work(work), &[&work.state]).map_err(|e| format!("{} could not be sent the step: {e}", name(i)));
    match &sent {
        Ok(()) => {
            let timer = WATCHDOG.with(|dog| {
                with_scope(|s| {
                    s.set_timeout_with_callback_and_timeout_and_arguments_1(dog.as_ref().unchecked_ref(), ANSWER_TIMEOUT_MS, &JsValue::from(i as u32))
                })
            });
            HELPERS.with(|h| {
                if let Some(job) = h.borrow_mut()[i].jobs.list.iter_mut().find(|job| job.id == id) {
                    job.timer = timer.ok();
                }
            });
        }
        Err(why) => fail(i, why),
    }
    async move {
        sent?;
        answered.await.inspect_err(|why| fail(i, why))
    }
}

/// Opens this worker's channel on its own `self`, whose binary messages are a helper's jobs
/// ([`serve`]) and whose other messages go to `other` (the page's commands). Every worker opens
/// it, as a worker does not know whether it was started as a helper.
pub fn listen(other: &JsValue) -> Result<(), String> {
    let port = with_scope(|s| Port::open(s, serve, other))?;
    TO_PARENT.with(|p| *p.borrow_mut() = Some(port));
    Ok(())
}

/// In the helper: a binary message from the training worker, queued and handled in order: a
/// job, answered when its gradients are computed, or the run's half of that step.
fn serve(message: Result<Message, String>) {
    let message = match message {
        Ok(message) => message,
        Err(why) => return reply_error(&format!("got {why}")),
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

fn reply(header: &Outgoing, floats: &[&[f32]]) {
    if let Err(e) = post_to_parent(header, floats) {
        web_sys::console::warn_1(&format!("a helper worker could not answer: {e}").into());
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
            update.grads = Floats::from_values(floats);
            let updated = ENGINE.with(|h| h.borrow_mut().get_or_insert_with(|| Helper::new(Device::flex())).update(update));
            if let Err(e) = updated {
                web_sys::console::warn_1(&format!("a helper worker dropped a run's copy: {e}").into());
            }
        }
        Incoming::Work(mut work) => {
            SERVING.with(|s| s.set(true));
            if work.crash {
                // fault injection (TrainConfig::helper_fails_at): crash as a real bug would
                panic!("fault injection: a helper worker crashes on step {} (helper_fails_at)", work.step + 1);
            }
            work.state = floats;
            let mut helper = ENGINE.with(|h| h.borrow_mut().take()).unwrap_or_else(|| Helper::new(Device::flex()));
            let result = helper.gradients(&work).await;
            ENGINE.with(|h| *h.borrow_mut() = Some(helper));
            match result {
                Ok(mut r) => {
                    // its time on the job, for the benchmark's profile
                    r.busy_ms = crate::worker::precise_ms() - received;
                    let grads = std::mem::take(&mut r.grads);
                    reply(&Outgoing::Reply(&r), &grads.slices());
                }
                Err(e) => reply_error(&format!("failed: {e}")),
            }
        }
        Incoming::Reply(_) | Incoming::Error(_) => reply_error("was sent an answer"),
    }
}
