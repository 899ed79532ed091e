//! The SVG chart: throughput, and p50 with p99 latency, of REST, gRPC and the gateway for each
//! operation, with the service layer's throughput in the caption.

use std::fmt::Write as _;

use super::report::{Report, ms, thousands};
use super::{Op, Transport};

/// The transports the chart draws (the service layer, several times faster on reads, is in the
/// caption: as a bar it would flatten the others).
const CHARTED: [Transport; 3] = [Transport::Rest, Transport::Grpc, Transport::Gateway];

/// A transport's bar colours: (solid, light).
fn color(transport: Transport) -> (&'static str, &'static str) {
    match transport {
        Transport::Service => ("#8c8c8c", "#d6d6d6"),
        Transport::Rest => ("#3b6ea8", "#b8cde6"),
        Transport::Grpc => ("#d9782d", "#f3cfb0"),
        Transport::Gateway => ("#4a9a5b", "#bfe0c5"),
    }
}

impl Report<'_> {
    /// Two panels: throughput grouped by operation, and p50 (solid) with p99 (light) latency.
    pub fn svg(&self) -> String {
        const W: f64 = 980.0;
        const H: f64 = 500.0;
        const TOP: f64 = 120.0;
        const BOTTOM: f64 = 400.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif" font-size="12">"##
        );
        let _ = writeln!(s, r##"<rect width="{W}" height="{H}" fill="#ffffff"/>"##);
        let _ = writeln!(
            s,
            r##"<text x="{}" y="30" text-anchor="middle" font-size="18" font-weight="bold">StreamBank: REST, gRPC and the gateway side by side</text>"##,
            W / 2.0
        );
        let a = self.settings;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="52" text-anchor="middle" fill="#444">{} concurrent callers; medians of {} runs of {} s; one process, Postgres and the load generator on {} cores; {}</text>"##,
            W / 2.0,
            a.concurrency,
            a.runs,
            a.seconds,
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            chrono::Utc::now().format("%Y-%m-%d")
        );
        // Legend.
        let legend: Vec<(Transport, String)> = CHARTED
            .map(|t| (t, format!("{} ({})", t.name(), t.wire())))
            .into();
        // About 6.5 px per character at 12 px, plus the swatch and a gap.
        let item = |text: &str| text.chars().count() as f64 * 6.5 + 44.0;
        let mut x = (W - legend.iter().map(|(_, text)| item(text)).sum::<f64>()) / 2.0;
        for (transport, text) in &legend {
            let (solid, _) = color(*transport);
            let _ = writeln!(
                s,
                r##"<rect x="{x:.1}" y="68" width="14" height="14" fill="{solid}"/><text x="{:.1}" y="80">{}</text>"##,
                x + 20.0,
                esc(text)
            );
            x += item(text);
        }

        let throughput = |op: Op, t: Transport| self.get(op, t).map(|s| s.throughput);
        self.panel(
            &mut s,
            60.0,
            450.0,
            (TOP, BOTTOM),
            "Throughput (requests/s, higher is better; in the bars: ratio to REST)",
            &throughput,
            None,
        );
        let p50 = |op: Op, t: Transport| self.get(op, t).map(|s| ms(s.p50));
        let p99 = |op: Op, t: Transport| self.get(op, t).map(|s| ms(s.p99));
        self.panel(
            &mut s,
            560.0,
            390.0,
            (TOP, BOTTOM),
            "Latency (ms, lower is better): p50 solid, p99 light",
            &p50,
            Some(&p99),
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#444" font-size="11">REST and gateway: one HTTP/1.1 keep-alive connection per caller; gRPC: {} shared HTTP/2 connections.</text>"##,
            W / 2.0,
            H - 30.0,
            a.grpc_channels
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#444" font-size="11">The service layer alone, called in the process by the same callers: Bank::get_account {} req/s, Bank::transfer {} req/s. Each transfer moves 1 minor unit.</text>"##,
            W / 2.0,
            H - 14.0,
            self.get(Op::GetAccount, Transport::Service)
                .map_or("n/a".to_owned(), |s| thousands(s.throughput)),
            self.get(Op::Transfer, Transport::Service)
                .map_or("n/a".to_owned(), |s| thousands(s.throughput)),
        );
        let _ = writeln!(s, "</svg>");
        s
    }

    /// One bar panel at `x0`, `width` wide, between `top` and `bottom`: a group per operation, a bar per
    /// transport of `value`; with `high`, a lighter bar behind each reaching `high` (p99 behind p50).
    #[allow(clippy::too_many_arguments)]
    fn panel(
        &self,
        s: &mut String,
        x0: f64,
        width: f64,
        (top, bottom): (f64, f64),
        title: &str,
        value: &dyn Fn(Op, Transport) -> Option<f64>,
        high: Option<&dyn Fn(Op, Transport) -> Option<f64>>,
    ) {
        let max = Op::ALL
            .iter()
            .flat_map(|&op| CHARTED.map(move |t| (op, t)))
            .filter_map(|(op, t)| high.and_then(|h| h(op, t)).or_else(|| value(op, t)))
            .fold(0.0_f64, f64::max);
        let step = nice_step(max);
        let axis_max = (max * 1.12 / step).ceil() * step;
        let y = |v: f64| bottom - (v / axis_max) * (bottom - top);
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"##,
            x0 + width / 2.0,
            top - 12.0,
            esc(title)
        );
        // Grid and axis labels.
        let mut tick = 0.0;
        while tick <= axis_max + step / 2.0 {
            let ty = y(tick);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{ty:.1}" x2="{}" y2="{ty:.1}" stroke="#e3e3e3"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555" font-size="11">{}</text>"##,
                x0 + width,
                x0 - 6.0,
                ty + 4.0,
                if step >= 1.0 {
                    thousands(tick)
                } else {
                    format!("{tick:.1}")
                }
            );
            tick += step;
        }
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/>"##,
            x0 + width
        );
        let group = width / Op::ALL.len() as f64;
        let bar = (group * 0.8 / CHARTED.len() as f64).min(56.0);
        let gap = bar * 0.2;
        let n = CHARTED.len() as f64;
        let bars_width = bar * n + gap * (n - 1.0);
        for (g, &op) in Op::ALL.iter().enumerate() {
            let gx = x0 + group * g as f64 + (group - bars_width) / 2.0;
            for (i, &transport) in CHARTED.iter().enumerate() {
                let bx = gx + (bar + gap) * i as f64;
                let cx = bx + bar / 2.0;
                let (solid, light) = color(transport);
                let Some(v) = value(op, transport) else {
                    let _ = writeln!(
                        s,
                        r##"<rect x="{bx:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}" fill="none" stroke="#999" stroke-dasharray="4 3"/><text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="#777">n/a</text>"##,
                        bottom - 40.0,
                        40.0,
                        bottom - 16.0
                    );
                    continue;
                };
                let hv = high.and_then(|h| h(op, transport));
                if let Some(hv) = hv {
                    let _ = writeln!(
                        s,
                        r##"<rect x="{bx:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}" fill="{light}"/><text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="11">{hv:.1}</text>"##,
                        y(hv),
                        bottom - y(hv),
                        y(hv) - 4.0
                    );
                }
                let _ = writeln!(
                    s,
                    r##"<rect x="{bx:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}" fill="{solid}"/>"##,
                    y(v),
                    bottom - y(v)
                );
                // Throughput bars carry their ratio to REST inside, at the foot.
                if let (None, Some(rest)) = (high, value(op, Transport::Rest))
                    && bottom - y(v) >= 18.0
                {
                    let _ = writeln!(
                        s,
                        r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#fff">{:.2}x</text>"##,
                        bottom - 8.0,
                        v / rest
                    );
                }
                let label = if high.is_some() {
                    format!("{v:.1}")
                } else {
                    thousands(v)
                };
                // Above the solid bar, unless the light bar's label is too close: then inside it.
                let room = hv.is_none_or(|hv| y(v) - y(hv) >= 16.0);
                let (ly, fill) = if room {
                    (y(v) - 4.0, "#111")
                } else {
                    (y(v) + 13.0, "#fff")
                };
                let _ = writeln!(
                    s,
                    r##"<text x="{cx:.1}" y="{ly:.1}" text-anchor="middle" font-size="11" font-weight="bold" fill="{fill}">{label}</text>"##
                );
            }
            let lx = x0 + group * (g as f64 + 0.5);
            let _ = writeln!(
                s,
                r##"<text x="{lx:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{lx:.1}" y="{:.1}" text-anchor="middle" fill="#666" font-size="11">{}</text>"##,
                bottom + 20.0,
                esc(op.http()),
                bottom + 36.0,
                esc(op.rpc())
            );
        }
    }
}

/// A round grid step (1, 2 or 5 times a power of ten) giving about five lines up to `max`.
fn nice_step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn nice_steps() {
        assert_eq!(super::nice_step(10_000.0), 2_000.0);
        assert_eq!(super::nice_step(22.0), 5.0);
        assert_eq!(super::nice_step(3.0), 1.0);
    }
}
