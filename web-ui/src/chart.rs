//! Charts as SVG drawn on the server: no script needed to see them, a `<title>` per bar
//! for the browser's tooltip, and the same figures as a table beside each chart (screen
//! readers and people who want numbers read that).

use leptos::prelude::*;

/// One bar: its label (a day, a model) and its value.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    /// What the tooltip says (e.g. "$0.0012 on 2026-12-01").
    pub tip: String,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 160.0;

/// A bar chart; `caption` is its accessible name.
pub fn bars(caption: &str, bars: &[Bar]) -> impl IntoView + use<> {
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let n = bars.len().max(1) as f64;
    let slot = WIDTH / n;
    let width = (slot * 0.8).max(1.0);
    let rects = bars
        .iter()
        .enumerate()
        .map(|(i, bar)| {
            let h = if max > 0.0 { bar.value / max * (HEIGHT - 4.0) } else { 0.0 };
            let x = i as f64 * slot + (slot - width) / 2.0;
            let y = HEIGHT - h;
            view! {
                <rect class="bar" x={format!("{x:.1}")} y={format!("{y:.1}")} width={format!("{width:.1}")}
                    height={format!("{h:.1}")}>
                    <title>{bar.tip.clone()}</title>
                </rect>
            }
        })
        .collect_view();
    let label = caption.to_owned();
    view! {
        <svg class="chart" viewBox={format!("0 0 {WIDTH} {HEIGHT}")} role="img" aria-label=label
            preserveAspectRatio="none">
            <line class="axis" x1="0" y1={format!("{HEIGHT}")} x2={format!("{WIDTH}")} y2={format!("{HEIGHT}")}/>
            {rects}
        </svg>
    }
}
