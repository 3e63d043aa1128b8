//! Printing records and times for people.

use quern_redis::DeadRecord;

/// Prints everything kept about a dead job.
pub(super) fn print_record(r: &DeadRecord) {
    out!("job:      {}", r.job.as_deref().unwrap_or("(unknown)"));
    out!("reason:   {}", r.reason.describe());
    out!("died at:  {}", format_ms(r.died_at));
    out!("attempt:  {}", r.attempt);
    out!("message:  {}", r.message);
    if let Some(d) = &r.decode {
        out!("decode:   {:?} error: {}", d.kind, d.message);
        if let Some(p) = &d.path {
            out!("  path:   {p}");
        }
        out!(
            "  at:     line {} column {} (byte {} of {})",
            d.line,
            d.column,
            d.offset,
            d.size
        );
        out!("  around: {}", d.window);
    }
    if !r.failures.is_empty() {
        out!("failures:");
        for f in &r.failures {
            print_failure(f);
        }
    }
    match (&r.envelope, &r.raw_hex) {
        (Some(e), _) => out!("stored:   {e}"),
        (None, Some(h)) => out!("stored (hex, not UTF-8): {h}"),
        _ => {}
    }
}

/// One failed attempt: when, what kind, and its error chain.
pub(super) fn print_failure(f: &quern_core::envelope::Failure) {
    out!("  attempt {} at {} ({}):", f.attempt, format_ms(f.at), f.kind);
    for (i, m) in f.chain.iter().enumerate() {
        out!("    {}{m}", if i == 0 { "" } else { "caused by: " });
    }
}

/// `2026-11-25T14:34:28.123Z` from ms since the Unix epoch.
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (proleptic Gregorian), after Howard Hinnant.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}
