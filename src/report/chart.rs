//! Charts drawn with plotters: SVG (inlined in `report.html`) and PNG (for slides and pull
//! requests), written under `charts/` in the run folder.
//!
//! Text is laid out with ab_glyph and DejaVu Sans embedded in the binary, so drawing needs no
//! system font library and gives the same picture on every machine. A chart is first reduced to
//! plain data ([`Chart`]), then drawn on either backend by the same code, so the SVG and the PNG
//! cannot disagree.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::record::{CaseStatus, Record};

/// Why a chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("cannot draw chart {id}: {reason}")]
    Draw { id: String, reason: String },
    #[error("cannot write {path}; check that the run folder is writable")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot read {path}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Confined(#[from] crate::files::FileError),
}

/// One point of a scatter chart.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// What the point is (the scheme), drawn beside it when the chart is not crowded.
    pub label: String,
    /// Which series (the backend): one colour each.
    pub series: String,
    pub x: f64,
    /// The x interval (the latency CI), drawn as a horizontal error bar.
    pub x_ci: Option<(f64, f64)>,
    pub y: f64,
    /// The y interval (top-1's Wilson interval), drawn as a vertical error bar: most accuracy
    /// differences between schemes lie inside it, and the chart should show that.
    #[serde(default)]
    pub y_ci: Option<(f64, f64)>,
}

/// One bar of a horizontal bar chart.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bar {
    pub label: String,
    pub series: String,
    /// `None` draws no bar and writes `∞` (e.g. SQNR of an identical output).
    pub value: Option<f64>,
    pub ci: Option<(f64, f64)>,
}

/// A point of a line: x, y and y's interval where known.
pub type LinePoint = (f64, f64, Option<(f64, f64)>);

/// One line of a line chart: a series' points in increasing x.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Line {
    pub series: String,
    pub points: Vec<LinePoint>,
}

/// What a chart shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Plot {
    /// Points, with the Pareto front (smallest x, largest y) joined by a line.
    Scatter { points: Vec<Point>, front: Vec<usize> },
    /// One row per bar, with CI whiskers where known.
    Bars { bars: Vec<Bar> },
    /// Lines over a numeric x (a sweep), with vertical CI whiskers where known.
    Lines { lines: Vec<Line> },
}

/// A chart reduced to data: drawn the same way on SVG and PNG.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Chart {
    /// File stem under `charts/`, unique in a run.
    pub id: String,
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub plot: Plot,
}

const SCATTER_SIZE: (u32, u32) = (860, 520);
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
/// Above this many points only the Pareto front is labelled, so labels stay legible.
const LABEL_ALL_UP_TO: usize = 12;

/// Indices of the points no other point beats: none has x ≤ and y ≥ with one of them strict.
/// Returned in increasing x, which is the order the front line is drawn in.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> =
        (0..points.len()).filter(|&i| points[i].0.is_finite() && points[i].1.is_finite()).collect();
    order.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0).then(points[b].1.total_cmp(&points[a].1)));
    let mut best_y = f64::NEG_INFINITY;
    let mut front = Vec::new();
    for i in order {
        if points[i].1 > best_y {
            best_y = points[i].1;
            front.push(i);
        }
    }
    front
}

/// A case's x value and its interval, if it has one.
type XOf<'a> = dyn Fn(&Record) -> Option<(f64, Option<(f64, f64)>)> + 'a;

/// The run's charts: per model and batch, accuracy (or agreement with the reference) against
/// latency and latency per case; per model, accuracy against artifact size.
pub fn from_records(records: &[Record]) -> Vec<Chart> {
    let ok: Vec<&Record> = records.iter().filter(|r| r.status == CaseStatus::Ok).collect();
    let mut groups: Vec<(String, usize, String)> = Vec::new();
    for r in &ok {
        if !groups.contains(&(r.model.clone(), r.batch, r.sweep.clone())) {
            groups.push((r.model.clone(), r.batch, r.sweep.clone()));
        }
    }
    let mut charts = Vec::new();
    let mut sized_models: Vec<String> = Vec::new();
    for (model, batch, sweep) in groups {
        let rows: Vec<&Record> =
            ok.iter().copied().filter(|r| r.model == model && r.batch == batch && r.sweep == sweep).collect();
        let group = match sweep.is_empty() {
            true => format!("{model}, batch {batch}"),
            false => format!("{model}, batch {batch}, {sweep}"),
        };
        let key = match sweep.is_empty() {
            true => format!("{}-b{batch}", crate::files::file_stem(&model)),
            false => format!("{}-b{batch}-{}", crate::files::file_stem(&model), crate::files::file_stem(&sweep)),
        };
        // Task accuracy when every row has it; agreement with the fp32 reference otherwise.
        let (y_desc, y_of): (&str, fn(&Record) -> Option<f64>) = if rows.iter().all(|r| r.top1_accuracy.is_some()) {
            ("top-1 accuracy (%)", |r| r.top1_accuracy)
        } else {
            ("top-1 agreement with the fp32 reference (%)", |r| r.ref_top1_agreement)
        };
        // Microseconds when every median is under a millisecond, so the axis reads 16, not 0.016.
        let slowest = rows.iter().filter_map(|r| r.latency_median_ns).fold(0.0, f64::max);
        let (unit, div) = if slowest < 1e6 { ("µs", 1e3) } else { ("ms", 1e6) };
        let ci =
            |r: &Record| r.latency_median_ci_low_ns.zip(r.latency_median_ci_high_ns).map(|(l, h)| (l / div, h / div));
        // One point per case: `x` of the case against its accuracy.
        let points_of = |x: &XOf| -> Vec<Point> {
            rows.iter()
                .filter_map(|r| {
                    let (x, x_ci) = x(r)?;
                    let y_ci = match r.top1_accuracy.is_some() && y_of(r) == r.top1_accuracy {
                        true => r.top1_ci_low.zip(r.top1_ci_high).map(|(l, h)| (100.0 * l, 100.0 * h)),
                        false => None,
                    };
                    Some(Point {
                        label: r.scheme.clone(),
                        series: r.backend.clone(),
                        x,
                        x_ci,
                        y: 100.0 * y_of(r)?,
                        y_ci,
                    })
                })
                .collect()
        };
        let points = points_of(&|r| Some((r.latency_median_ns? / div, ci(r))));
        if !points.is_empty() {
            charts.push(scatter(
                format!("tradeoff-{key}"),
                format!("{group}: accuracy against latency (Pareto front joined)"),
                format!("median latency per batch ({unit}), with its 95% CI"),
                y_desc.into(),
                points,
            ));
        }
        let bars: Vec<Bar> = rows
            .iter()
            .filter_map(|r| {
                Some(Bar {
                    label: format!("{} · {}", r.scheme, r.backend),
                    series: r.backend.clone(),
                    value: Some(r.latency_median_ns? / div),
                    ci: ci(r),
                })
            })
            .collect();
        if !bars.is_empty() {
            charts.push(Chart {
                id: format!("latency-{key}"),
                title: format!("{group}: median latency per scheme × backend"),
                x_desc: format!("median latency per batch ({unit}); whiskers: 95% CI"),
                y_desc: String::new(),
                plot: Plot::Bars { bars },
            });
        }
        if !sized_models.contains(&model) {
            sized_models.push(model.clone());
            let points = points_of(&|r| Some((r.artifact_bytes? as f64 / 1024.0, None)));
            if !points.is_empty() {
                charts.push(scatter(
                    format!("size-{}", crate::files::file_stem(&model)),
                    format!("{model}: accuracy against model size (Pareto front joined)"),
                    "artifact size (KiB)".into(),
                    y_desc.into(),
                    points,
                ));
            }
        }
    }
    charts.extend(scaling(&ok));
    unique_ids(&mut charts);
    charts
}

/// Per model and batch whose cases ran at several thread counts (`[measure] threads = [..]`):
/// items per second against threads, a line per scheme × backend (and per other swept value).
/// The interval is the median latency's 95% CI turned into items/s.
fn scaling(ok: &[&Record]) -> Vec<Chart> {
    let mut groups: Vec<(String, usize)> = Vec::new();
    for r in ok {
        if !groups.contains(&(r.model.clone(), r.batch)) {
            groups.push((r.model.clone(), r.batch));
        }
    }
    let mut charts = Vec::new();
    for (model, batch) in groups {
        let rows: Vec<&Record> = ok.iter().copied().filter(|r| r.model == model && r.batch == batch).collect();
        let mut threads: Vec<usize> = rows.iter().map(|r| r.threads).collect();
        threads.sort();
        threads.dedup();
        if threads.len() < 2 {
            continue;
        }
        let mut lines: Vec<Line> = Vec::new();
        for r in &rows {
            let Some(median) = r.latency_median_ns.filter(|m| *m > 0.0) else { continue };
            // The other swept values keep their lines apart.
            let rest: Vec<&str> = r.sweep.split(',').filter(|p| !p.is_empty() && !p.starts_with("threads=")).collect();
            let series = match rest.is_empty() {
                true => format!("{} · {}", r.scheme, r.backend),
                false => format!("{} · {} · {}", r.scheme, r.backend, rest.join(",")),
            };
            let per_s = |ns: f64| r.batch as f64 * 1e9 / ns;
            let ci = r.latency_median_ci_low_ns.zip(r.latency_median_ci_high_ns).map(|(lo, hi)| (per_s(hi), per_s(lo)));
            let point = (r.threads as f64, per_s(median), ci);
            match lines.iter_mut().find(|l| l.series == series) {
                Some(l) => l.points.push(point),
                None => lines.push(Line { series, points: vec![point] }),
            }
        }
        for l in &mut lines {
            l.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        lines.retain(|l| l.points.len() >= 2);
        if lines.is_empty() {
            continue;
        }
        charts.push(Chart {
            id: format!("scaling-{}-b{batch}", crate::files::file_stem(&model)),
            title: format!("{model}, batch {batch}: throughput against threads"),
            x_desc: "threads".into(),
            y_desc: "items/s (median latency; whiskers: its 95% CI)".into(),
            plot: Plot::Lines { lines },
        });
    }
    charts
}

/// Gives charts whose ids collide (records merged from runs whose model names map to one file
/// name, which one suite refuses) a numeric suffix, so no chart overwrites another's files.
fn unique_ids(charts: &mut [Chart]) {
    let mut seen: Vec<String> = Vec::new();
    for c in charts.iter_mut() {
        let base = c.id.clone();
        let mut n = 1;
        while seen.iter().any(|s| s.eq_ignore_ascii_case(&c.id)) {
            n += 1;
            c.id = format!("{base}-{n}");
        }
        seen.push(c.id.clone());
    }
}

/// Per-layer SQNR of one case (`qbench explain`): two bars per layer, the whole plan
/// (cumulative) and that layer quantized alone; `None` is an output identical to fp32.
pub fn layer_sqnr(case_index: usize, what: &str, layers: &[(String, Option<f64>, Option<f64>)]) -> Chart {
    let mut bars = Vec::new();
    for (layer, cumulative, alone) in layers {
        for (series, value) in [("cumulative (whole plan)", cumulative), ("alone (only this layer)", alone)] {
            bars.push(Bar {
                label: format!("{layer} · {}", &series[..series.find(' ').unwrap_or(series.len())]),
                series: series.into(),
                value: *value,
                ci: None,
            });
        }
    }
    Chart {
        id: format!("layers-case-{case_index}"),
        title: format!("case {case_index} ({what}): SQNR of each layer's output against fp32"),
        x_desc: "SQNR (dB); higher is closer to fp32".into(),
        y_desc: String::new(),
        plot: Plot::Bars { bars },
    }
}

/// The charts `qbench explain` and `qbench profile` saved as data (`layers-case-*.json`,
/// `profile-case-*.json`) in `dir`, by case.
pub fn read_layer_charts(dir: &Path) -> Result<Vec<Chart>, ChartError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut charts = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !((name.starts_with("layers-case-") || name.starts_with("profile-case-")) && name.ends_with(".json")) {
            continue;
        }
        let bytes = crate::files::read_bounded(&path, crate::files::MAX_SIDE_FILE_BYTES, "chart data")?;
        let chart: Chart = serde_json::from_slice(&bytes).map_err(|e| ChartError::Draw {
            id: name.clone(),
            reason: format!("{}: {e}; delete it and run qbench explain again", path.display()),
        })?;
        charts.push(chart);
    }
    // By case, explain's chart before the profile's.
    let key = |id: &str| {
        let (kind, n) = id.rsplit_once("-case-").unwrap_or(("", ""));
        (n.parse::<usize>().unwrap_or(usize::MAX), kind != "layers")
    };
    charts.sort_by_key(|c| key(&c.id));
    Ok(charts)
}

fn scatter(id: String, title: String, x_desc: String, y_desc: String, points: Vec<Point>) -> Chart {
    let front = pareto_front(&points.iter().map(|p| (p.x, p.y)).collect::<Vec<_>>());
    Chart { id, title, x_desc, y_desc, plot: Plot::Scatter { points, front } }
}

impl Chart {
    /// Pixel size: bar charts grow with their rows.
    pub fn size(&self) -> (u32, u32) {
        match &self.plot {
            Plot::Scatter { .. } => SCATTER_SIZE,
            Plot::Bars { bars } => (860, 110 + 22 * bars.len().max(1) as u32),
            Plot::Lines { .. } => SCATTER_SIZE,
        }
    }

    /// The chart as a standalone SVG document.
    pub fn svg(&self) -> Result<String, ChartError> {
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, self.size()).into_drawing_area();
            self.draw(&root)?;
        }
        Ok(out)
    }

    /// The chart as a PNG file's bytes.
    pub fn png(&self) -> Result<Vec<u8>, ChartError> {
        let (w, h) = self.size();
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            self.draw(&root)?;
        }
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // Charts are mostly flat colour: the best deflate level makes them several times smaller.
        encoder.set_compression(png::Compression::High);
        encoder.set_filter(png::Filter::Adaptive);
        let fail = |e: png::EncodingError| self.error(e);
        let mut writer = encoder.write_header().map_err(fail)?;
        writer.write_image_data(&rgb).map_err(fail)?;
        writer.finish().map_err(fail)?;
        Ok(out)
    }

    /// Writes `<dir>/<id>.json`, the chart's data, which `qbench report` redraws it from.
    pub fn write_data(&self, dir: &Path) -> Result<(), ChartError> {
        std::fs::create_dir_all(dir).map_err(|source| ChartError::Write { path: dir.to_path_buf(), source })?;
        let path = crate::files::join(dir, &format!("{}.json", self.id))?;
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| self.error(e))?;
        std::fs::write(&path, bytes).map_err(|source| ChartError::Write { path, source })
    }

    /// Writes `<dir>/<id>.svg` and `<dir>/<id>.png`.
    pub fn write(&self, dir: &Path) -> Result<(), ChartError> {
        std::fs::create_dir_all(dir).map_err(|source| ChartError::Write { path: dir.to_path_buf(), source })?;
        for (ext, bytes) in [("svg", self.svg()?.into_bytes()), ("png", self.png()?)] {
            let path = crate::files::join(dir, &format!("{}.{ext}", self.id))?;
            std::fs::write(&path, bytes).map_err(|source| ChartError::Write { path, source })?;
        }
        Ok(())
    }

    fn error(&self, e: impl std::fmt::Display) -> ChartError {
        ChartError::Draw { id: self.id.clone(), reason: e.to_string() }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), ChartError> {
        register_font().map_err(|e| self.error(e))?;
        root.fill(&WHITE).map_err(|e| self.error(e))?;
        match &self.plot {
            Plot::Scatter { points, front } => self.draw_scatter(root, points, front),
            Plot::Bars { bars } => self.draw_bars(root, bars),
            Plot::Lines { lines } => self.draw_lines(root, lines),
        }
        .map_err(|e| self.error(e))?;
        root.present().map_err(|e| self.error(e))
    }

    fn draw_scatter<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        points: &[Point],
        front: &[usize],
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let xs = points.iter().flat_map(|p| [p.x, p.x_ci.map_or(p.x, |c| c.0), p.x_ci.map_or(p.x, |c| c.1)]);
        let x_range = padded(xs, 0.08, true);
        let ys = points.iter().flat_map(|p| [p.y, p.y_ci.map_or(p.y, |c| c.0), p.y_ci.map_or(p.y, |c| c.1)]);
        let y_range = padded(ys, 0.12, false);
        // The legend gets a column of its own on the right: it never covers a point (the worst
        // trade-off lands bottom right, where a legend inside would sit).
        let (root, legend_area) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(150));
        let root = &root;
        let mut builder = ChartBuilder::on(root);
        builder.caption(&self.title, ("sans-serif", 17)).margin(14).x_label_area_size(44).y_label_area_size(64);
        // Over more than a tenfold range (latencies of engines an order apart, sizes of f32 and
        // 4-bit variants), x is logarithmic: a linear axis would crowd the small values together.
        let positive: Vec<f64> = points.iter().map(|p| p.x).filter(|x| *x > 0.0 && x.is_finite()).collect();
        let (lo, hi) = positive.iter().fold((f64::INFINITY, 0f64), |(l, h), x| (l.min(*x), h.max(*x)));
        if positive.len() == points.len() && lo.is_finite() && hi / lo > 10.0 {
            let lows = points.iter().filter_map(|p| p.x_ci.map(|c| c.0)).filter(|x| *x > 0.0).fold(lo, f64::min);
            let highs = points.iter().filter_map(|p| p.x_ci.map(|c| c.1)).fold(hi, f64::max);
            let chart = builder.build_cartesian_2d((lows / 1.3..highs * 1.3).log_scale(), y_range)?;
            return self.scatter_body(chart, points, front, &legend_area, " (log scale)");
        }
        let chart = builder.build_cartesian_2d(x_range, y_range)?;
        self.scatter_body(chart, points, front, &legend_area, "")
    }

    /// The scatter's mesh, points, error bars, front, labels and legend, on either x axis.
    fn scatter_body<'a, DB: DrawingBackend + 'a, X>(
        &self,
        mut chart: ChartContext<'a, DB, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
        points: &[Point],
        front: &[usize],
        legend_area: &DrawingArea<DB, Shift>,
        x_note: &str,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
    where
        X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        let x_desc = format!("{}{x_note}", self.x_desc);
        chart
            .configure_mesh()
            .x_desc(x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .label_style(("sans-serif", 13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let front_points: Vec<(f64, f64)> = front.iter().map(|&i| (points[i].x, points[i].y)).collect();
        chart.draw_series(LineSeries::new(front_points, ShapeStyle::from(RGBColor(120, 120, 120)).stroke_width(2)))?;
        for (k, series) in series_names(points.iter().map(|p| p.series.as_str())).into_iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let mine: Vec<&Point> = points.iter().filter(|p| p.series == series).collect();
            chart.draw_series(
                mine.iter().filter_map(|p| p.x_ci.map(|(lo, hi)| ErrorBar::new_horizontal(p.y, lo, p.x, hi, color, 6))),
            )?;
            chart
                .draw_series(mine.iter().filter_map(|p| {
                    p.y_ci.map(|(lo, hi)| ErrorBar::new_vertical(p.x, lo, p.y, hi, color.mix(0.6), 6))
                }))?;
            chart.draw_series(mine.iter().map(|p| Circle::new((p.x, p.y), 5, color.filled())))?;
            let y = 60 + 22 * (k as i32 + 1);
            legend_entry(legend_area, y, &series, Circle::new((14, y), 5, color.filled()))?;
        }
        legend_area.draw(&PathElement::new(vec![(6, 60), (22, 60)], RGBColor(120, 120, 120).stroke_width(2)))?;
        legend_area.draw(&Text::new("Pareto front", (26, 53), ("sans-serif", 13).into_font()))?;
        if points.iter().any(|p| p.y_ci.is_some()) {
            let y = 60 + 22 * (series_names(points.iter().map(|p| p.series.as_str())).len() as i32 + 1);
            legend_area.draw(&Text::new("bars: 95% CIs", (6, y - 7), ("sans-serif", 12).into_font()))?;
        }
        let label_all = points.len() <= LABEL_ALL_UP_TO;
        // Labels that would overlap on screen (points within a label's box of each other) are
        // drawn once, joined: "f32, int8-pc-sym" beside the pair, not two labels over each other.
        // (where on screen, where in data, the labels there)
        type LabelGroup = ((i32, i32), (f64, f64), Vec<String>);
        let mut groups: Vec<LabelGroup> = Vec::new();
        for (_, p) in points.iter().enumerate().filter(|(i, _)| label_all || front.contains(i)) {
            let at = chart.backend_coord(&(p.x, p.y));
            match groups.iter_mut().find(|(g, _, _)| (g.0 - at.0).abs() < 70 && (g.1 - at.1).abs() < 14) {
                Some((_, _, labels)) => {
                    if !labels.contains(&p.label) {
                        labels.push(p.label.clone());
                    }
                }
                None => groups.push((at, (p.x, p.y), vec![p.label.clone()])),
            }
        }
        chart.draw_series(groups.into_iter().map(|(_, (x, y), labels)| {
            // A few pixels up and right of the marker, so the label does not cover it.
            EmptyElement::at((x, y)) + Text::new(labels.join(", "), (7, -15), ("sans-serif", 12).into_font())
        }))?;
        Ok(())
    }

    fn draw_lines<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        lines: &[Line],
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let all = || lines.iter().flat_map(|l| l.points.iter());
        // x is a whole number (threads): an integer axis, ticked at the swept values only.
        let mut xs: Vec<i64> = all().map(|p| p.0.round() as i64).collect();
        xs.sort();
        xs.dedup();
        let (lo, hi) = (xs.first().copied().unwrap_or(0), xs.last().copied().unwrap_or(1));
        let pad = ((hi - lo) / 10).max(1);
        let y_range = padded(all().flat_map(|p| [p.1, p.2.map_or(p.1, |c| c.0), p.2.map_or(p.1, |c| c.1)]), 0.1, true);
        // The legend goes in a column of its own on the right, so it covers no point.
        let (plot_area, legend_area) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(230));
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(&self.title, ("sans-serif", 17))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(lo - pad..hi + pad, y_range)?;
        let x_label = |x: &i64| if xs.contains(x) { x.to_string() } else { String::new() };
        let whole = |y: &f64| format!("{y:.0}");
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .x_labels((hi - lo + 2 * pad + 1).clamp(2, 200) as usize)
            .x_label_formatter(&x_label)
            .y_label_formatter(&whole)
            .disable_x_mesh()
            .label_style(("sans-serif", 13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let at = |p: &LinePoint| p.0.round() as i64;
        for (k, line) in lines.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            chart.draw_series(LineSeries::new(line.points.iter().map(|p| (at(p), p.1)), color.stroke_width(2)))?;
            chart.draw_series(line.points.iter().map(|p| Circle::new((at(p), p.1), 4, color.filled())))?;
            chart.draw_series(
                line.points
                    .iter()
                    .filter_map(|p| p.2.map(|(lo, hi)| ErrorBar::new_vertical(at(p), lo, p.1, hi, color, 6))),
            )?;
        }
        for (k, line) in lines.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let y = 60 + 22 * k as i32;
            legend_entry(&legend_area, y, &line.series, swatch(y, color))?;
        }
        Ok(())
    }

    fn draw_bars<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        bars: &[Bar],
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let values = bars.iter().flat_map(|b| [b.value, b.ci.map(|c| c.1)]).flatten();
        let top = values.fold(0f64, f64::max);
        let lowest = bars.iter().filter_map(|b| b.value).fold(0f64, f64::min);
        let x_range = lowest * 1.1..if top > 0.0 { top * 1.1 } else { 1.0 };
        // The legend in a column of its own on the right, so it never covers a bar.
        let (root, legend_area) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(150));
        let root = &root;
        let n = bars.len();
        let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
        let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as u32 * 7 + 12;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 17))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(label_width.min(360))
            .build_cartesian_2d(x_range, -0.5f64..n as f64 - 0.5)?;
        // Row i is drawn top down: y = n - 1 - i.
        let row = |i: usize| (n - 1 - i) as f64;
        let label_of = |y: &f64| {
            let i = n as f64 - 1.0 - y.round();
            if (y - y.round()).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_labels(n.max(1))
            .y_label_formatter(&label_of)
            .disable_y_mesh()
            .label_style(("sans-serif", 12))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (k, series) in series_names(bars.iter().map(|b| b.series.as_str())).into_iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let mine: Vec<(usize, &Bar)> = bars.iter().enumerate().filter(|(_, b)| b.series == series).collect();
            chart.draw_series(mine.iter().filter_map(|&(i, b)| {
                b.value.map(|v| Rectangle::new([(0.0, row(i) - 0.35), (v, row(i) + 0.35)], color.mix(0.8).filled()))
            }))?;
            let y = 50 + 22 * k as i32;
            legend_entry(&legend_area, y, &series, swatch(y, color))?;
            chart.draw_series(mine.iter().filter_map(|&(i, b)| {
                b.ci.map(|(lo, hi)| ErrorBar::new_horizontal(row(i), lo, b.value.unwrap_or(lo), hi, BLACK, 8))
            }))?;
            chart.draw_series(
                mine.iter()
                    .filter(|(_, b)| b.value.is_none())
                    .map(|&(i, _)| Text::new("∞ (identical)", (0.0, row(i)), ("sans-serif", 12).into_font())),
            )?;
        }
        Ok(())
    }
}

/// One row of a legend drawn beside the plot (`area`, in pixels): the series' marker, then its
/// name, centred on row `y`.
fn legend_entry<DB: DrawingBackend, E>(
    area: &DrawingArea<DB, Shift>,
    y: i32,
    label: &str,
    marker: E,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    for<'b> &'b E: plotters::element::PointCollection<'b, (i32, i32)>,
    E: plotters::element::Drawable<DB>,
{
    area.draw(&marker)?;
    let text: Text<'_, (i32, i32), String> = Text::new(label.to_string(), (26, y - 7), ("sans-serif", 13).into_font());
    area.draw::<Text<'_, (i32, i32), String>, _>(&text)
}

/// A legend's colour swatch on row `y`.
fn swatch(y: i32, color: RGBColor) -> Rectangle<(i32, i32)> {
    Rectangle::new([(6, y - 5), (20, y + 5)], color.filled())
}

/// Distinct series names in order of first appearance: the same backend keeps its colour.
fn series_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// The data's range with a margin; `from_zero` starts it at 0 when the data is positive.
fn padded(values: impl Iterator<Item = f64>, margin: f64, from_zero: bool) -> Range<f64> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) * 0.1 };
    let low = if from_zero && lo >= 0.0 { 0.0 } else { lo - margin * span };
    low..hi + margin * span
}

/// Registers DejaVu Sans as "sans-serif" for plotters' ab_glyph text, once per process.
fn register_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for (style, bytes) in [(FontStyle::Normal, dejavu::sans::regular()), (FontStyle::Bold, dejavu::sans::bold())] {
            plotters::style::register_font("sans-serif", style, bytes)
                .map_err(|_| "the embedded DejaVu Sans font did not parse".to_string())?;
        }
        Ok(())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: a point is on the front when no other point dominates it.
    fn dominated(points: &[(f64, f64)], i: usize) -> bool {
        points.iter().enumerate().any(|(j, q)| {
            j != i && q.0 <= points[i].0 && q.1 >= points[i].1 && (q.0 < points[i].0 || q.1 > points[i].1)
        })
    }

    #[test]
    fn pareto_front_matches_the_dominance_definition() {
        // A fixed pseudo-random cloud (LCG), with ties in x and in y.
        let mut s = 12345u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % 20) as f64
        };
        for _ in 0..50 {
            let points: Vec<(f64, f64)> = (0..15).map(|_| (next(), next())).collect();
            let front = pareto_front(&points);
            let expected: Vec<usize> = (0..points.len()).filter(|&i| !dominated(&points, i)).collect();
            // Exact duplicates of a front point: the front keeps one of them.
            let mut distinct: Vec<(f64, f64)> = expected.iter().map(|&i| points[i]).collect();
            distinct.sort_by(|a, b| a.0.total_cmp(&b.0));
            distinct.dedup();
            assert_eq!(front.len(), distinct.len(), "{points:?}");
            assert!(front.iter().all(|&i| !dominated(&points, i)), "{points:?} {front:?}");
            // Drawn left to right.
            assert!(front.windows(2).all(|w| points[w[0]].0 < points[w[1]].0 && points[w[0]].1 < points[w[1]].1));
        }
    }

    #[test]
    fn an_x_range_over_tenfold_is_drawn_on_a_log_axis_and_a_narrower_one_linear() {
        let point = |x: f64, label: &str| Point {
            label: label.into(),
            series: "s".into(),
            x,
            x_ci: Some((x * 0.9, x * 1.1)),
            y: 90.0,
            y_ci: Some((89.0, 91.0)),
        };
        let chart = |xs: &[f64]| {
            let points: Vec<Point> = xs.iter().map(|&x| point(x, "p")).collect();
            scatter("c".into(), "t".into(), "latency (µs)".into(), "top-1".into(), points).svg().unwrap()
        };
        assert!(chart(&[5.0, 400.0]).contains("latency (µs) (log scale)"));
        assert!(!chart(&[50.0, 400.0]).contains("log scale"));
        // Coincident labels are drawn once, joined.
        let points = vec![point(50.0, "f32"), point(50.0, "q8_0")];
        let svg = scatter("c".into(), "t".into(), "x".into(), "y".into(), points).svg().unwrap();
        assert!(svg.contains("f32, q8_0"), "joined label");
    }

    #[test]
    fn front_of_a_known_set() {
        // (latency, accuracy): b is slower and less accurate than a; d is the most accurate.
        let points = [(1.0, 80.0), (2.0, 70.0), (1.5, 85.0), (3.0, 90.0), (f64::NAN, 99.0)];
        assert_eq!(pareto_front(&points), vec![0, 2, 3]);
    }
}
