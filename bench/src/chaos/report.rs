//! The report: the timeline, the clients' answers other than success, emails by kind, every check, and
//! the one summary line that CI logs show last.

use std::fmt::Write as _;

use super::check::{Check, Totals};
use super::clients::Record;
use super::timeline::Timeline;

/// The report: the timeline, the clients' answers, every check; then the summary line.
pub fn render(
    timeline: &Timeline,
    record: &Record,
    checks: &[Check],
    totals: &Totals,
    faults: usize,
) -> (String, String) {
    let mut out = String::new();
    let _ = writeln!(out, "\n== timeline");
    for line in timeline.lines() {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "\n== client answers other than success (by transport)");
    if let Ok(statuses) = record.statuses.lock() {
        for (what, n) in statuses.iter() {
            let _ = writeln!(out, "{n:>8}  {what}");
        }
    }
    if let Ok(slowest) = record.slowest.lock() {
        let _ = writeln!(
            out,
            "slowest acknowledged transfer: {:.1} s from first attempt to answer (key {})",
            slowest.0.as_secs_f64(),
            slowest.1
        );
    }
    if let Ok(samples) = record.five_xx_samples.lock()
        && !samples.is_empty()
    {
        let _ = writeln!(out, "\n== first 5xx answers");
        for s in samples.iter() {
            let _ = writeln!(out, "{s}");
        }
    }
    let _ = writeln!(
        out,
        "\n== emails by kind (expected, received with the header)"
    );
    for (kind, (want, got)) in &totals.emails.by_kind {
        let _ = writeln!(out, "{want:>8} {got:>8}  {kind}");
    }
    for example in &totals.emails.examples {
        let _ = writeln!(out, "  {example}");
    }
    let _ = writeln!(out, "\n== checks");
    for c in checks {
        let _ = writeln!(
            out,
            "{}  {}: {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    let e = &totals.emails;
    let summary = format!(
        "CHAOS {} violations={failed} faults={faults} transfers={} acked={} lost={} duplicated={} \
         unsent={} 5xx={} emails_expected={} emails_received={} email_duplicates={} email_missing={} \
         email_headers={} dead_letters={} duration={:.0}s",
        if failed == 0 { "PASS" } else { "FAIL" },
        totals.transfers,
        totals.acked,
        totals.lost,
        totals.duplicated,
        totals.unsent,
        totals.five_xx,
        e.expected,
        e.received,
        e.duplicates,
        e.missing,
        if e.headers_missing() {
            "missing"
        } else {
            "present"
        },
        totals.dead_letters,
        timeline.elapsed().as_secs_f64()
    );
    (out, summary)
}
