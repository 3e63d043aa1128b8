//! Logging of a worker binary: text for people or JSON lines for log shippers, on stderr,
//! filtered by `RUST_LOG` (default `info`).
//!
//! Text is coloured only when stderr is a terminal and `NO_COLOR` is unset (or empty), so a log
//! redirected to a file or a pipe never holds escape codes. JSON is one object per event and
//! line, with the fields of the spans it happened in: every line logged inside a job carries
//! `job.id`, `job.name`, `job.queue` and `job.attempt`.

use std::fmt;
use std::io::IsTerminal;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The environment variable that picks the log format when `--log-format` is not given.
pub const ENV_LOG_FORMAT: &str = "QUERN_LOG_FORMAT";

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`, the event's fields
    /// and, prefixed by their span's name, the fields of the spans around it (`job.id`).
    Json,
}

/// Sets up logging to stderr in `format`, filtered by `RUST_LOG` (default `info`). Does nothing
/// when the process already has a global subscriber.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour_stderr()).try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .try_init(),
    };
}

/// The format `QUERN_LOG_FORMAT` names: `Ok(None)` when it is unset, an error naming the accepted
/// values when it names none of them.
pub fn log_format_from_env() -> Result<Option<LogFormat>, String> {
    use clap::ValueEnum as _;
    let Some(value) = std::env::var_os(ENV_LOG_FORMAT) else {
        return Ok(None);
    };
    let value = value.to_string_lossy();
    LogFormat::from_str(&value, true)
        .map(Some)
        .map_err(|_| format!("{ENV_LOG_FORMAT}={value:?} is not a log format: use `text` or `json`"))
}

/// Colour only for a person watching: stderr is a terminal and `NO_COLOR` is unset or empty.
fn colour_stderr() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// The JSON event format: one flat object per line.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut line = Line::default();
        line.insert("timestamp".into(), Value::String(timestamp));
        line.insert("level".into(), Value::String(meta.level().as_str().into()));
        line.insert("target".into(), Value::String(meta.target().into()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                // The span's fields as `JsonFields` wrote them: a JSON object.
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    for (key, value) in fields {
                        line.insert(format!("{}.{key}", span.name()), value);
                    }
                }
            }
        }
        event.record(&mut line);
        // A stable order (serde_json's `Map` sorts its keys): the fixed keys, then the span
        // fields from the outermost span in, then the event's own fields.
        let rank = |key: &str| match key {
            "timestamp" => 0,
            "level" => 1,
            "target" => 2,
            "message" => 3,
            _ => 4,
        };
        line.0.sort_by_key(|(key, _)| rank(key));
        let mut text = String::from("{");
        for (i, (key, value)) in line.0.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&Value::String(key.clone()).to_string());
            text.push(':');
            text.push_str(&value.to_string());
        }
        text.push('}');
        writeln!(writer, "{text}")
    }
}

/// The fields of one line; a later value of a key replaces an earlier one (an event's field
/// wins over a span's of the same name).
#[derive(Default)]
struct Line(Vec<(String, Value)>);

impl Line {
    fn insert(&mut self, key: String, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field.name().into(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let chain = quern_core::ErrorChain::of(value).to_string();
        self.insert(field.name().into(), Value::String(chain));
    }
}
