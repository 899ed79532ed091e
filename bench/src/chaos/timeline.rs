//! The run's clock and its timeline: every fault, restart and phase change with the time since the
//! harness started, printed as it happens and again in the report.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    /// The wall-clock time the run started (RFC 3339), for `bankctl outbox republish --since`.
    pub started_at: chrono::DateTime<chrono::Utc>,
    events: Mutex<Vec<(Duration, String)>>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeline {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            started_at: chrono::Utc::now(),
            events: Mutex::new(Vec::new()),
        }
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records (and prints) one line.
    pub fn log(&self, what: impl Into<String>) {
        let at = self.elapsed();
        let what = what.into();
        eprintln!("[{:>7.1}s] {what}", at.as_secs_f64());
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((at, what));
    }

    /// Every line so far, formatted.
    pub fn lines(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(at, what)| format!("[{:>7.1}s] {what}", at.as_secs_f64()))
            .collect()
    }
}
