//! Small statistics for benchmark reports.

/// The median of some measurements (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The `q`-quantile (0.0..=1.0) of some durations, nearest-rank.
pub fn percentile(sorted: &[std::time::Duration], q: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Waits for every caller of a closed-loop load started at `start`, and returns the calls per second
/// and every call's latency.
pub async fn gather(
    mut callers: tokio::task::JoinSet<anyhow::Result<Vec<std::time::Duration>>>,
    start: std::time::Instant,
) -> anyhow::Result<(f64, Vec<std::time::Duration>)> {
    let mut all = Vec::new();
    while let Some(latencies) = callers.join_next().await {
        all.append(&mut latencies??);
    }
    Ok((all.len() as f64 / start.elapsed().as_secs_f64(), all))
}

#[cfg(test)]
mod tests {
    #[test]
    fn medians() {
        assert_eq!(super::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(super::median(&[]).is_nan());
        let ms = |n| std::time::Duration::from_millis(n);
        let sorted: Vec<_> = (1..=100).map(ms).collect();
        assert_eq!(super::percentile(&sorted, 0.5), ms(50));
        assert_eq!(super::percentile(&sorted, 0.99), ms(99));
    }
}
