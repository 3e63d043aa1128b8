//! Panics inside jobs: recorded with their location (and a backtrace when enabled) instead of
//! printed, so the worker logs each once, with the job's id, where it decides the job's fate.
//!
//! This needs a process-wide panic hook. The worker installs it at start unless told not to
//! (`WorkerConfig::capture_panics`); without it, panics are still caught and recorded, only
//! without their location, and the process's own hook prints them.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::Once;

thread_local! {
    static LAST_PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
    pub(crate) static LAST_PANIC_BACKTRACE: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Set while a job's `run` is being polled on this thread.
    pub(crate) static IN_EXECUTION: Cell<bool> = const { Cell::new(false) };
}

/// Installs (once) a panic hook. A panic inside a job is recorded — message, location
/// (`src/jobs.rs:42:9`) and, when `QUERN_BACKTRACE` asks for one, a backtrace — and logged once by the
/// worker with the job's id, instead of being printed to stderr. Other panics go to the previous
/// hook.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_EXECUTION.with(Cell::get) {
                previous(info);
                return;
            }
            let loc = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            LAST_PANIC_LOCATION.with(|c| *c.borrow_mut() = loc);
            let bt = quern_core::BacktraceSetting::current().capture();
            let bt = (bt.status() == std::backtrace::BacktraceStatus::Captured).then(|| bt.to_string());
            LAST_PANIC_BACKTRACE.with(|c| *c.borrow_mut() = bt);
        }));
    });
}

pub(crate) fn panic_message(panic: Box<dyn Any + Send>) -> String {
    let msg = if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    };
    match LAST_PANIC_LOCATION.with(|c| c.borrow_mut().take()) {
        Some(loc) => format!("{msg} (at {loc})"),
        None => msg,
    }
}
