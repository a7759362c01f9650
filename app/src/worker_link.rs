//! The page's end of the worker: starts it, sends [`ToWorker`] messages, turns
//! [`FromWorker`] messages into [`Lab`] updates, and restarts a worker that crashed.

use std::cell::RefCell;

use objlab_engine::protocol::{FromWorker, ToWorker};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{ErrorEvent, MessageEvent, Worker};

use crate::lab::Lab;

struct Link {
    worker: Worker,
    /// Messages wait here until the worker says `Ready`: a worker drops messages that arrive
    /// before its wasm module has installed its handler.
    queue: Option<Vec<String>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(ErrorEvent)>,
}

thread_local! {
    static LINK: RefCell<Option<Link>> = const { RefCell::new(None) };
}

/// Starts (or restarts) the worker and routes its messages into `lab`.
pub fn connect(lab: Lab) {
    disconnect();
    let worker = match Worker::new(crate::wasm_features::worker_url()) {
        Ok(w) => w,
        Err(e) => {
            lab.push_error(format!("the training worker could not start: {e:?}"));
            return;
        }
    };
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        match event.data().as_string().map(|s| FromWorker::from_json(&s)) {
            Some(Ok(FromWorker::Ready)) => {
                lab.apply(FromWorker::Ready);
                flush(lab)
            }
            Some(Ok(message)) => lab.apply(message),
            Some(Err(e)) => lab.push_error(e),
            None => lab.push_error("the worker sent a message that is not text".into()),
        }
    });
    let on_error = Closure::<dyn FnMut(ErrorEvent)>::new(move |event: ErrorEvent| {
        event.prevent_default();
        lab.push_error(format!(
            "the training worker crashed ({}); press reset to start a fresh one",
            if event.message().is_empty() { "no details".to_string() } else { event.message() }
        ));
        lab.worker_failed();
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    LINK.with(|l| *l.borrow_mut() = Some(Link { worker, queue: Some(Vec::new()), _on_message: on_message, _on_error: on_error }));
    // a fresh worker knows no text of one's own yet
    lab.send_uploads();
}

fn disconnect() {
    LINK.with(|l| {
        if let Some(link) = l.borrow_mut().take() {
            link.worker.terminate();
        }
    });
}

/// The worker is listening: sends what waited for it.
fn flush(lab: Lab) {
    let waiting = LINK.with(|l| l.borrow_mut().as_mut().and_then(|link| link.queue.take())).unwrap_or_default();
    for json in waiting {
        post(lab, json);
    }
}

fn post(lab: Lab, json: String) {
    let sent = LINK.with(|l| match l.borrow_mut().as_mut() {
        Some(Link { queue: Some(queue), .. }) => {
            queue.push(json);
            Ok(())
        }
        Some(link) => link.worker.post_message(&json.into()).map_err(|e| format!("{e:?}")),
        None => Err("no worker".into()),
    });
    if let Err(e) = sent {
        lab.push_error(format!("could not reach the training worker: {e}"));
    }
}

/// Sends a message to the worker (after it is ready); reports on the page if there is none.
pub fn send(lab: Lab, message: &ToWorker) {
    post(lab, message.to_json());
}
