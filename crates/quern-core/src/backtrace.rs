//! Backtraces of job failures: captured only when Quern's own setting asks for one
//! ([`QUERN_BACKTRACE`](ENV_BACKTRACE)), and logged trimmed to the frames of the job's code.
//!
//! `RUST_BACKTRACE` alone does not make Quern capture or log a backtrace: it also turns on the
//! backtraces of every other library in the process, and a job's backtrace printed whole is
//! dozens of frames of the async runtime around one or two frames of the job. With
//! `QUERN_BACKTRACE=1` a [`JobError`](crate::JobError) (and a panic inside a job) captures one
//! whatever `RUST_BACKTRACE` says, and the worker logs it [trimmed](trim); `QUERN_BACKTRACE=full`
//! logs every frame.

use std::backtrace::Backtrace;
use std::sync::OnceLock;

/// The environment variable that asks for backtraces of job failures: unset, empty, `0`,
/// `false` or `off` for none (the default), `full` for every frame, anything else (`1`) for the
/// frames of the job's code.
pub const ENV_BACKTRACE: &str = "QUERN_BACKTRACE";

/// At most this many frames of the job's code are kept by [`trim`].
pub const MAX_FRAMES: usize = 16;

/// Whether job failures carry a backtrace, and how much of it is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BacktraceSetting {
    /// No backtrace is captured (the default).
    #[default]
    Off,
    /// Captured, and logged [trimmed](trim) to the frames of the job's code.
    Trimmed,
    /// Captured and logged whole.
    Full,
}

impl BacktraceSetting {
    /// The setting a value of [`QUERN_BACKTRACE`](ENV_BACKTRACE) (or its absence) means.
    pub fn parse(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            None | Some("" | "0" | "false" | "off") => BacktraceSetting::Off,
            Some(v) if v.eq_ignore_ascii_case("full") => BacktraceSetting::Full,
            Some(_) => BacktraceSetting::Trimmed,
        }
    }

    /// Reads [`QUERN_BACKTRACE`](ENV_BACKTRACE) now.
    pub fn from_env() -> Self {
        Self::parse(std::env::var(ENV_BACKTRACE).ok().as_deref())
    }

    /// The process's setting: [`QUERN_BACKTRACE`](ENV_BACKTRACE) as read the first time it is
    /// asked for (like the standard library reads `RUST_BACKTRACE` once).
    pub fn current() -> Self {
        static CURRENT: OnceLock<BacktraceSetting> = OnceLock::new();
        *CURRENT.get_or_init(Self::from_env)
    }

    /// A backtrace of the caller when this setting asks for one, else a disabled one (which
    /// costs nothing).
    pub fn capture(self) -> Backtrace {
        match self {
            BacktraceSetting::Off => Backtrace::disabled(),
            BacktraceSetting::Trimmed | BacktraceSetting::Full => Backtrace::force_capture(),
        }
    }

    /// `backtrace` (a [`Backtrace`]'s text) as this setting logs it: whole, [trimmed](trim), or
    /// not at all.
    pub fn render(self, backtrace: &str) -> Option<String> {
        match self {
            BacktraceSetting::Off => None,
            BacktraceSetting::Trimmed => Some(trim(backtrace)),
            BacktraceSetting::Full => Some(backtrace.to_owned()),
        }
    }
}

/// Crates whose frames say nothing about the job: the standard library, the async runtime and
/// its combinators, tracing's instrumentation, and Quern's own executor and error constructors.
const PLUMBING: &[&str] = &[
    "std",
    "core",
    "alloc",
    "panic_unwind",
    "__rustc",
    "backtrace",
    "tokio",
    "tokio_util",
    "futures",
    "futures_core",
    "futures_util",
    "futures_task",
    "futures_executor",
    "tower",
    "tower_layer",
    "tower_service",
    "tracing",
    "tracing_core",
    "quern_core",
    "quern_worker",
];

/// Keeps the frames of `backtrace` (a [`Backtrace`]'s text) that belong to the job's code, at most
/// [`MAX_FRAMES`] of them, each with its `at file:line` line and its original number, and says in
/// a last line how many were left out.
///
/// A frame is dropped when its function belongs to the standard library, tokio, futures,
/// tower, tracing or Quern's own executor (`quern_core`, `quern_worker`), and when it has no
/// Rust path at all (`<unknown>`, `__libc_start_main`). For a method of a trait implementation
/// (`<T as Trait>::f`) the implementing type decides, or the trait when the type is a generic
/// parameter. Text that holds no numbered frames is returned unchanged.
///
/// ```
/// let bt = "   0: std::backtrace::Backtrace::force_capture
///    1: my_app::jobs::Render::load
///              at ./src/jobs.rs:42:9
///    2: tokio::runtime::task::harness::poll_future
///              at /tokio/src/runtime/task/harness.rs:473:19
/// ";
/// assert_eq!(
///     quern_core::backtrace::trim(bt),
///     "   1: my_app::jobs::Render::load
///              at ./src/jobs.rs:42:9
/// (2 of 3 frames hidden: Rust's standard library, tokio, futures, tower, tracing and Quern's executor; QUERN_BACKTRACE=full shows them)"
/// );
/// ```
pub fn trim(backtrace: &str) -> String {
    let mut frames: Vec<(bool, Vec<&str>)> = Vec::new();
    let mut preamble = Vec::new();
    for line in backtrace.lines() {
        match frame_symbol(line) {
            Some(symbol) => frames.push((is_job_code(symbol), vec![line])),
            None => match frames.last_mut() {
                Some((_, lines)) => lines.push(line),
                None => preamble.push(line),
            },
        }
    }
    if frames.is_empty() {
        return backtrace.to_owned();
    }
    let total = frames.len();
    let kept: Vec<&Vec<&str>> = frames.iter().filter(|(keep, _)| *keep).map(|(_, l)| l).collect();
    let plumbing = total - kept.len();
    let beyond = kept.len().saturating_sub(MAX_FRAMES);
    let mut out = String::new();
    for line in preamble.iter().filter(|l| !l.trim().is_empty()) {
        out.push_str(line);
        out.push('\n');
    }
    for lines in kept.iter().take(MAX_FRAMES) {
        for line in lines.iter() {
            out.push_str(line);
            out.push('\n');
        }
    }
    let mut hidden = format!(
        "({plumbing} of {total} frames hidden: Rust's standard library, tokio, futures, tower, tracing and Quern's executor"
    );
    if beyond > 0 {
        hidden.push_str(&format!(
            "; {beyond} more of the job's own frames after the first {MAX_FRAMES}"
        ));
    }
    hidden.push_str("; QUERN_BACKTRACE=full shows them)");
    out.push_str(&hidden);
    out
}

/// The function of a frame's first line (`  12: path::to::function`), `None` for other lines.
fn frame_symbol(line: &str) -> Option<&str> {
    let rest = line.trim_start();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    rest[digits..].strip_prefix(": ").map(str::trim)
}

/// Whether a frame's function is the job's own code (not plumbing, and a Rust path at all).
fn is_job_code(symbol: &str) -> bool {
    owner_crate(symbol).is_some_and(|krate| !PLUMBING.contains(&krate))
}

/// The crate a function belongs to: the first segment of its path; for `<T as Trait>::f`, of
/// `T`, or of `Trait` when `T` is a bare name (a generic parameter, a primitive).
fn owner_crate(symbol: &str) -> Option<&str> {
    let Some(inner) = symbol.strip_prefix('<') else {
        return path_crate(symbol);
    };
    // The text up to the `>` closing the opening `<`, split at its top-level ` as `.
    let mut depth = 0usize;
    let mut end = inner.len();
    let mut as_at = None;
    for (i, c) in inner.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            '>' if depth == 0 => {
                end = i;
                break;
            }
            '>' => depth -= 1,
            ' ' if depth == 0 && inner[i..].starts_with(" as ") && as_at.is_none() => as_at = Some(i),
            _ => {}
        }
    }
    let inner = &inner[..end];
    let (ty, tr) = match as_at {
        Some(i) => (&inner[..i], Some(&inner[i + 4..])),
        None => (inner, None),
    };
    let mut ty = ty.trim_start();
    for prefix in ["&", "mut ", "*const ", "*mut ", "dyn "] {
        ty = ty.strip_prefix(prefix).unwrap_or(ty).trim_start();
    }
    path_crate(ty).or_else(|| tr.and_then(path_crate))
}

/// The first segment of `a::b::c`, when it is an identifier; `None` for a bare name.
fn path_crate(path: &str) -> Option<&str> {
    let (first, _) = path.split_once("::")?;
    let ident = !first.is_empty()
        && first.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !first.starts_with(|c: char| c.is_ascii_digit());
    ident.then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_variable() {
        for off in [None, Some(""), Some("0"), Some("false"), Some("off")] {
            assert_eq!(BacktraceSetting::parse(off), BacktraceSetting::Off, "{off:?}");
        }
        assert_eq!(BacktraceSetting::parse(Some("1")), BacktraceSetting::Trimmed);
        assert_eq!(BacktraceSetting::parse(Some("full")), BacktraceSetting::Full);
        assert_eq!(BacktraceSetting::parse(Some("FULL")), BacktraceSetting::Full);
        assert!(BacktraceSetting::Off.render("   0: a::b").is_none());
        assert!(
            BacktraceSetting::Off.capture().status() != std::backtrace::BacktraceStatus::Captured,
            "off captures nothing, whatever RUST_BACKTRACE says"
        );
    }

    #[test]
    fn the_crate_of_a_frame() {
        assert_eq!(
            owner_crate("my_app::jobs::Render::run::{{closure}}"),
            Some("my_app")
        );
        assert_eq!(
            owner_crate("<my_app::Render as quern_core::job::Job>::run::{{closure}}"),
            Some("my_app")
        );
        assert_eq!(
            owner_crate("<core::pin::Pin<P> as core::future::future::Future>::poll"),
            Some("core")
        );
        assert_eq!(
            owner_crate("<F as core::future::into_future::IntoFuture>::into_future"),
            Some("core")
        );
        assert_eq!(
            owner_crate("<&mut my_app::Reader<'_> as std::io::Read>::read"),
            Some("my_app")
        );
        assert_eq!(
            owner_crate("<alloc::boxed::Box<dyn core::ops::Fn<(A,)>> as x::Y>::call"),
            Some("alloc")
        );
        assert_eq!(owner_crate("<unknown>"), None);
        assert_eq!(owner_crate("__libc_start_main"), None);
        assert_eq!(owner_crate("main"), None);
    }

    /// The backtrace of a `JobError::permanent` made in `examples/worker.rs`, as a worker built
    /// with Rust 1.95 logged it with `RUST_BACKTRACE=1` (88 frames; paths shortened).
    const JOB_ERROR: &str = include_str!("../tests/data/backtrace_job_error.txt");
    /// The backtrace of a panic in the same job, recorded by the worker's panic hook.
    const PANIC: &str = include_str!("../tests/data/backtrace_panic.txt");

    #[test]
    fn a_job_errors_backtrace_keeps_only_the_jobs_frame() {
        assert_eq!(
            JOB_ERROR.lines().filter(|l| frame_symbol(l).is_some()).count(),
            88
        );
        assert_eq!(
            trim(JOB_ERROR),
            "   1: <worker::Record as quern_core::job::Job>::run::{{closure}}\n             at /work/quern/examples/worker.rs:60:45\n\
             (87 of 88 frames hidden: Rust's standard library, tokio, futures, tower, tracing and Quern's executor; QUERN_BACKTRACE=full shows them)"
        );
    }

    #[test]
    fn a_panics_backtrace_keeps_only_the_jobs_frame() {
        let trimmed = trim(PANIC);
        let frames: Vec<&str> = trimmed.lines().filter_map(frame_symbol).collect();
        assert_eq!(
            frames,
            ["<worker::Record as quern_core::job::Job>::run::{{closure}}"],
            "{trimmed}"
        );
        assert!(trimmed.contains("examples/worker.rs:61:30"), "{trimmed}");
        assert!(trimmed.ends_with("QUERN_BACKTRACE=full shows them)"), "{trimmed}");
    }

    #[test]
    fn the_jobs_frames_are_capped() {
        let many: String = (0..40)
            .map(|i| format!("  {i:>2}: my_app::step_{i}\n             at ./src/lib.rs:{i}:1\n"))
            .collect();
        let trimmed = trim(&many);
        assert_eq!(
            trimmed.lines().filter(|l| frame_symbol(l).is_some()).count(),
            MAX_FRAMES
        );
        assert!(trimmed.contains("0 of 40 frames hidden"), "{trimmed}");
        assert!(
            trimmed.contains("24 more of the job's own frames after the first 16"),
            "{trimmed}"
        );
    }

    #[test]
    fn not_a_backtrace_is_left_alone() {
        assert_eq!(trim("disabled backtrace"), "disabled backtrace");
    }
}
