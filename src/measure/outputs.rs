//! Output kinds: what a model's output *is*, and the metrics that fit it.
//!
//! A `[batch, classes]` classifier is scored by top-k; a `[batch, time, vocab]` recognizer by
//! per-position agreement and, with CTC greedy decoding, by exact match and character error
//! rate against text labels; a `[batch, 1]` detector by agreement at a threshold (top-1 over
//! one value is always 100%); an embedding by cosine and retrieval agreement; a regression by
//! its error. The kind is declared in the suite (`[[models.outputs]]`) or inferred from the
//! output's per-item shape where that is unambiguous, and the record says which.

use serde::{Deserialize, Serialize};

use super::fidelity::{self, wilson_interval, MeanSe};

/// Default threshold of a `scores` output: a probability's decision boundary.
pub const DEFAULT_THRESHOLD: f64 = 0.5;
/// Default neighbours of an `embedding` output's retrieval agreement.
pub const DEFAULT_RETRIEVAL_K: usize = 5;
/// Items an embedding's retrieval agreement is computed over at most (it compares every pair).
pub const RETRIEVAL_ITEMS: usize = 2000;

/// CTC greedy decoding of a sequence output: best class per position, repeats collapsed,
/// blanks removed, each class written as its symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct Ctc {
    /// Class index of the blank.
    pub blank: usize,
    /// Symbol of each class, by index (the blank's is never written). `None`: the decoded text
    /// is the class indices, space-separated (agreement only; text labels need symbols).
    pub alphabet: Option<Vec<String>>,
}

impl Ctc {
    /// Greedy CTC decoding of one item's `[positions, classes]` scores.
    pub fn decode(&self, positions: &[usize]) -> String {
        let mut out = Vec::new();
        let mut previous = None;
        for &c in positions {
            if Some(c) != previous && c != self.blank {
                out.push(match &self.alphabet {
                    Some(a) => a.get(c).cloned().unwrap_or_else(|| format!("<{c}>")),
                    None => c.to_string(),
                });
            }
            previous = Some(c);
        }
        out.join(if self.alphabet.is_some() { "" } else { " " })
    }
}

/// What an output is, and so which metrics fit it.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputKind {
    /// `[classes]` per item: top-1/top-5, accuracy against class labels, KL.
    Classes,
    /// `[positions, classes]` (or `[classes, positions]`, `position_axis = 1`) per item:
    /// per-position agreement; with CTC, exact match and character error rate.
    Sequence { position_axis: usize, ctc: Option<Ctc> },
    /// Probabilities or maps of any shape: MSE, SQNR and agreement at a threshold; accuracy
    /// against 0/1 labels for a single score.
    Scores { threshold: f64 },
    /// A vector per item: cosine and retrieval agreement@k.
    Embedding { k: usize },
    /// Values to predict: error against the reference (MSE, SQNR, largest error).
    Regression,
}

impl OutputKind {
    pub const NAMES: &'static [&'static str] = &["classes", "sequence", "scores", "embedding", "regression"];

    pub fn name(&self) -> &'static str {
        match self {
            OutputKind::Classes => "classes",
            OutputKind::Sequence { ctc: None, .. } => "sequence",
            OutputKind::Sequence { ctc: Some(_), .. } => "sequence (CTC)",
            OutputKind::Scores { .. } => "scores",
            OutputKind::Embedding { .. } => "embedding",
            OutputKind::Regression => "regression",
        }
    }

    /// The kind an output's per-item shape implies when it is unambiguous, with why: a vector
    /// of two or more values (size-1 axes aside) is classes; one value (or none) is a score; two
    /// axes, both longer than one, are a sequence (positions first); three or more axes are a
    /// map of scores. `None` for a shape that fits no kind (an empty axis).
    pub fn infer(item_shape: &[usize]) -> Option<(OutputKind, String)> {
        let long: Vec<usize> = item_shape.iter().copied().filter(|&d| d != 1).collect();
        if item_shape.contains(&0) {
            return None;
        }
        let shape = format_shape(item_shape);
        // A rank-3 item is a map (`[1, H, W]`: a detector's probabilities), even with one axis
        // of 1; only a rank-2 item with two long axes is a sequence.
        Some(match (long.len(), item_shape.len()) {
            (0, _) => (
                OutputKind::Scores { threshold: DEFAULT_THRESHOLD },
                format!("inferred: one value per item ({shape}), a score"),
            ),
            (1, _) => (OutputKind::Classes, format!("inferred: one vector per item ({shape}), classes")),
            (2, 2) => (
                OutputKind::Sequence { position_axis: 0, ctc: None },
                format!("inferred: two axes per item ({shape}), a sequence over the first"),
            ),
            _ => (
                OutputKind::Scores { threshold: DEFAULT_THRESHOLD },
                format!("inferred: {} axes per item ({shape}), a map of scores", item_shape.len()),
            ),
        })
    }
}

/// `[a, b]`, `[]`.
pub fn format_shape(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

/// One output's values over the evaluation split.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputValues {
    pub name: String,
    /// Shape of one item's output (the batch axis taken off).
    pub item_shape: Vec<usize>,
    /// `items × item_shape` values, row-major.
    pub values: Vec<f32>,
}

impl OutputValues {
    pub fn per_item(&self) -> usize {
        self.item_shape.iter().product::<usize>().max(1)
    }
}

/// The metrics of one output of one case: those that fit its kind, the others absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputScore {
    pub name: String,
    pub kind: String,
    /// `declared` in the suite, or `inferred: …` from the shape.
    pub kind_source: String,
    pub item_shape: Vec<usize>,
    /// classes: accuracy against class labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_top1_agreement: Option<f64>,
    /// sequence: share of (item, position) pairs whose best class is the reference's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_position_agreement: Option<f64>,
    /// sequence (CTC): share of items whose decoded text is the reference's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_text_agreement: Option<f64>,
    /// sequence (CTC): share of items whose decoded text equals the text label, with its
    /// Wilson 95% interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_match: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_match_ci_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_match_ci_high: Option<f64>,
    /// sequence (CTC): Σ edit distance / Σ label length, in characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub char_error_rate: Option<f64>,
    /// scores: the threshold, the share of values on the reference's side of it, and (one
    /// score per item, 0/1 labels) the accuracy of `score ≥ threshold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_threshold_agreement: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_accuracy_ci_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_accuracy_ci_high: Option<f64>,
    /// embedding: mean share of each item's k nearest neighbours (cosine) that the reference's
    /// embeddings also rank among its k nearest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_retrieval_agreement: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieval_k: Option<usize>,
    /// Every kind: fidelity of the values themselves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_cosine_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_sqnr_db: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_mse_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_max_abs_err: Option<f64>,
}

/// What an output is scored against besides the reference: class labels (classes, a single
/// score) and text labels (CTC).
#[derive(Debug, Clone, Copy, Default)]
pub struct Labels<'a> {
    pub classes: Option<&'a [u32]>,
    pub texts: Option<&'a [String]>,
}

/// Best class at each position of each item: `[items × positions]`, with the positions per
/// item.
fn best_per_position(values: &[f32], item_shape: &[usize], position_axis: usize) -> (Vec<usize>, usize) {
    let (rows, cols) = two_axes(item_shape);
    let per_item = rows * cols;
    let (positions, classes) = if position_axis == 0 { (rows, cols) } else { (cols, rows) };
    let mut best = Vec::with_capacity(values.len() / per_item.max(1) * positions);
    for item in values.chunks(per_item) {
        for p in 0..positions {
            let at = |c: usize| if position_axis == 0 { item[p * cols + c] } else { item[c * cols + p] };
            let mut b = 0;
            for c in 1..classes {
                if at(c) > at(b) {
                    b = c;
                }
            }
            best.push(b);
        }
    }
    (best, positions)
}

/// The item shape as two axes (size-1 axes dropped; `[n]` is `[n, 1]`).
fn two_axes(item_shape: &[usize]) -> (usize, usize) {
    let long: Vec<usize> = item_shape.iter().copied().filter(|&d| d != 1).collect();
    match long.as_slice() {
        [] => (1, 1),
        [n] => (*n, 1),
        [a, b] => (*a, *b),
        _ => (long[0], long[1..].iter().product()),
    }
}

/// Scores `x` (one output of a variant) as its kind says, against the labels and the
/// reference's values of the same output (`None`: no reference).
pub fn score(
    kind: &OutputKind,
    kind_source: &str,
    x: &OutputValues,
    reference: Option<&OutputValues>,
    labels: Labels,
) -> OutputScore {
    let per_item = x.per_item();
    let mut s = OutputScore {
        name: x.name.clone(),
        kind: kind.name().to_string(),
        kind_source: kind_source.to_string(),
        item_shape: x.item_shape.clone(),
        ..OutputScore::default()
    };
    let reference = reference.filter(|r| r.values.len() == x.values.len());
    if let Some(r) = reference {
        let f = fidelity::fidelity(&r.values, &x.values, per_item);
        // One value per item has no direction: its cosine is ±1 whatever the error.
        s.ref_cosine_mean = (per_item > 1).then_some(f.cosine.mean);
        s.ref_sqnr_db = f.sqnr_db;
        s.ref_mse_mean = Some(f.mse.mean);
        s.ref_max_abs_err = Some(f.max_abs_err);
        if *kind == OutputKind::Classes {
            s.ref_top1_agreement = Some(f.top1_agreement);
        }
    }
    match kind {
        OutputKind::Classes => {
            if let Some(l) = labels.classes {
                s.top1_accuracy = Some(fidelity::task_metrics(&x.values, l, per_item).top1);
            }
        }
        OutputKind::Sequence { position_axis, ctc } => {
            let (best, positions) = best_per_position(&x.values, &x.item_shape, *position_axis);
            let ref_best = reference.map(|r| best_per_position(&r.values, &r.item_shape, *position_axis).0);
            if let Some(rb) = &ref_best {
                let same = best.iter().zip(rb).filter(|(a, b)| a == b).count();
                s.ref_position_agreement = Some(same as f64 / best.len().max(1) as f64);
            }
            if let Some(ctc) = ctc {
                let texts: Vec<String> = best.chunks(positions.max(1)).map(|p| ctc.decode(p)).collect();
                if let Some(rb) = &ref_best {
                    let same = rb.chunks(positions.max(1)).zip(&texts).filter(|(p, t)| ctc.decode(p) == **t).count();
                    s.ref_text_agreement = Some(same as f64 / texts.len().max(1) as f64);
                }
                if let (Some(labels), Some(_)) = (labels.texts, &ctc.alphabet) {
                    let (exact, cer) = text_metrics(&texts, labels);
                    let k = (exact * texts.len() as f64).round() as usize;
                    let (lo, hi) = wilson_interval(k, texts.len());
                    (s.exact_match, s.exact_match_ci_low, s.exact_match_ci_high) = (Some(exact), Some(lo), Some(hi));
                    s.char_error_rate = cer;
                }
            }
        }
        OutputKind::Scores { threshold } => {
            let t = *threshold;
            s.threshold = Some(t);
            let at = |v: f32| v as f64 >= t;
            if let Some(r) = reference {
                let same = r.values.iter().zip(&x.values).filter(|(a, b)| at(**a) == at(**b)).count();
                s.ref_threshold_agreement = Some(same as f64 / x.values.len().max(1) as f64);
            }
            if let (Some(l), 1) = (labels.classes, per_item) {
                let k = x.values.iter().zip(l).filter(|(v, l)| at(**v) == (**l == 1)).count();
                let (lo, hi) = wilson_interval(k, l.len());
                s.threshold_accuracy = Some(k as f64 / l.len().max(1) as f64);
                (s.threshold_accuracy_ci_low, s.threshold_accuracy_ci_high) = (Some(lo), Some(hi));
            }
        }
        OutputKind::Embedding { k } => {
            if let Some(r) = reference {
                let (agreement, k) = retrieval_agreement(&r.values, &x.values, per_item, *k);
                s.ref_retrieval_agreement = agreement;
                s.retrieval_k = Some(k);
            }
        }
        OutputKind::Regression => {}
    }
    s
}

/// Exact-match share and character error rate (Σ edit distance / Σ label characters; `None`
/// when every label is empty) of decoded texts against their labels.
pub fn text_metrics(texts: &[String], labels: &[String]) -> (f64, Option<f64>) {
    let exact = texts.iter().zip(labels).filter(|(t, l)| t == l).count();
    let (edits, chars) = texts
        .iter()
        .zip(labels)
        .fold((0usize, 0usize), |(e, c), (t, l)| (e + strsim::levenshtein(t, l), c + l.chars().count()));
    (exact as f64 / texts.len().max(1) as f64, (chars > 0).then(|| edits as f64 / chars as f64))
}

/// Mean share of each item's `k` nearest neighbours by cosine (itself excluded) under `x`
/// that are also among its `k` nearest under `reference`, over the first [`RETRIEVAL_ITEMS`]
/// items; and the `k` used (at most items − 1). `None` with fewer than two items.
pub fn retrieval_agreement(reference: &[f32], x: &[f32], dim: usize, k: usize) -> (Option<f64>, usize) {
    let n = (reference.len() / dim.max(1)).min(RETRIEVAL_ITEMS);
    let k = k.min(n.saturating_sub(1));
    if n < 2 || k == 0 {
        return (None, k);
    }
    let neighbours = |v: &[f32]| -> Vec<Vec<usize>> {
        let unit: Vec<Vec<f64>> = v
            .chunks(dim)
            .take(n)
            .map(|row| {
                let norm = row.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
                row.iter().map(|&a| if norm > 0.0 { a as f64 / norm } else { 0.0 }).collect()
            })
            .collect();
        (0..n)
            .map(|i| {
                let mut sims: Vec<(f64, usize)> = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| (unit[i].iter().zip(&unit[j]).map(|(a, b)| a * b).sum::<f64>(), j))
                    .collect();
                sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                sims.into_iter().take(k).map(|(_, j)| j).collect()
            })
            .collect()
    };
    let (a, b) = (neighbours(reference), neighbours(x));
    let shares: Vec<f64> =
        a.iter().zip(&b).map(|(a, b)| a.iter().filter(|j| b.contains(j)).count() as f64 / k as f64).collect();
    (Some(MeanSe::of(&shares).mean), k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(name: &str, shape: &[usize], v: Vec<f32>) -> OutputValues {
        OutputValues { name: name.into(), item_shape: shape.to_vec(), values: v }
    }

    #[test]
    fn kinds_are_inferred_only_from_unambiguous_shapes() {
        assert_eq!(OutputKind::infer(&[10]).unwrap().0, OutputKind::Classes);
        assert_eq!(OutputKind::infer(&[1, 10]).unwrap().0, OutputKind::Classes);
        assert_eq!(OutputKind::infer(&[1]).unwrap().0, OutputKind::Scores { threshold: 0.5 });
        assert_eq!(OutputKind::infer(&[]).unwrap().0, OutputKind::Scores { threshold: 0.5 });
        assert_eq!(OutputKind::infer(&[8, 5]).unwrap().0, OutputKind::Sequence { position_axis: 0, ctc: None });
        // A detector's [1, H, W] probability map is a map, not a sequence over H.
        assert_eq!(OutputKind::infer(&[1, 4, 4]).unwrap().0, OutputKind::Scores { threshold: 0.5 });
        assert_eq!(OutputKind::infer(&[2, 4, 4]).unwrap().0, OutputKind::Scores { threshold: 0.5 });
        assert_eq!(OutputKind::infer(&[1, 1, 10]).unwrap().0, OutputKind::Classes);
        assert!(OutputKind::infer(&[0, 3]).is_none());
    }

    #[test]
    fn ctc_greedy_decoding_collapses_repeats_and_drops_blanks() {
        let ctc = Ctc { blank: 0, alphabet: Some(["-", "a", "b", "c"].iter().map(|s| s.to_string()).collect()) };
        // a a - a b b - - c  →  "aabc"
        assert_eq!(ctc.decode(&[1, 1, 0, 1, 2, 2, 0, 0, 3]), "aabc");
        assert_eq!(ctc.decode(&[0, 0, 0]), "");
        let bare = Ctc { blank: 3, alphabet: None };
        assert_eq!(bare.decode(&[1, 1, 3, 1, 0]), "1 1 0");
    }

    #[test]
    fn text_metrics_by_hand() {
        let t: Vec<String> = ["abc", "abd", ""].iter().map(|s| s.to_string()).collect();
        let l: Vec<String> = ["abc", "abc", "xy"].iter().map(|s| s.to_string()).collect();
        let (exact, cer) = text_metrics(&t, &l);
        assert!((exact - 1.0 / 3.0).abs() < 1e-12);
        // edits 0 + 1 + 2 over 3 + 3 + 2 characters.
        assert!((cer.unwrap() - 3.0 / 8.0).abs() < 1e-12);
    }

    #[test]
    fn a_sequence_is_scored_per_position_and_by_decoded_text() {
        // Two items, 3 positions, 3 classes (blank 0, "a", "b").
        let r = values("y", &[3, 3], vec![0., 5., 0., 0., 5., 0., 0., 0., 5., /**/ 5., 0., 0., 0., 5., 0., 0., 5., 0.]);
        // Item 0 equal; item 1's last position differs (b instead of a): text "ab" vs "a".
        let x = values("y", &[3, 3], vec![0., 5., 0., 0., 5., 0., 0., 0., 5., /**/ 5., 0., 0., 0., 5., 0., 0., 0., 5.]);
        let ctc = Ctc { blank: 0, alphabet: Some(vec!["-".into(), "a".into(), "b".into()]) };
        let kind = OutputKind::Sequence { position_axis: 0, ctc: Some(ctc) };
        let labels: Vec<String> = vec!["ab".into(), "a".into()];
        let s = score(&kind, "declared", &x, Some(&r), Labels { classes: None, texts: Some(&labels) });
        assert!((s.ref_position_agreement.unwrap() - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(s.ref_text_agreement, Some(0.5));
        // x decodes to "ab" and "ab": the first matches its label.
        assert_eq!(s.exact_match, Some(0.5));
        assert!((s.char_error_rate.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.top1_accuracy, None);
        assert_eq!(s.ref_top1_agreement, None);
        // The same with positions on the second axis (the item transposed).
        let t = |v: &OutputValues| {
            let mut o = v.clone();
            for (item, src) in o.values.chunks_mut(9).zip(v.values.chunks(9)) {
                for p in 0..3 {
                    for c in 0..3 {
                        item[c * 3 + p] = src[p * 3 + c];
                    }
                }
            }
            o
        };
        let kind1 = OutputKind::Sequence { position_axis: 1, ctc: None };
        let s1 = score(&kind1, "declared", &t(&x), Some(&t(&r)), Labels::default());
        assert!((s1.ref_position_agreement.unwrap() - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn a_single_score_is_judged_at_its_threshold_not_by_top1() {
        let r = values("p", &[1], vec![0.9, 0.2, 0.6, 0.4]);
        let x = values("p", &[1], vec![0.8, 0.3, 0.4, 0.45]);
        let labels = [1u32, 0, 0, 1];
        let s = score(
            &OutputKind::Scores { threshold: 0.5 },
            "inferred",
            &x,
            Some(&r),
            Labels { classes: Some(&labels), texts: None },
        );
        assert_eq!(s.ref_threshold_agreement, Some(0.75));
        // x ≥ 0.5: [1, 0, 0, 0] against [1, 0, 0, 1].
        assert_eq!(s.threshold_accuracy, Some(0.75));
        assert_eq!(s.ref_top1_agreement, None);
        let mse = (0.01 + 0.01 + 0.04 + 0.0025) / 4.0;
        assert!((s.ref_mse_mean.unwrap() - mse).abs() < 1e-6);
    }

    #[test]
    fn retrieval_agreement_by_hand() {
        // Four 2-D points; x swaps the roles of items 2 and 3 relative to item 0.
        let r = [1.0, 0.0, 0.0, 1.0, 0.9, 0.1, 0.1, 0.9];
        let (a, k) = retrieval_agreement(&r, &r, 2, 1);
        assert_eq!((a, k), (Some(1.0), 1));
        let x = [1.0, 0.0, 0.0, 1.0, 0.1, 0.9, 0.9, 0.1];
        // Nearest under r: 0→2, 1→3, 2→0, 3→1. Under x: 0→3, 1→2, 2→1, 3→0. None agree.
        assert_eq!(retrieval_agreement(&r, &x, 2, 1).0, Some(0.0));
        assert_eq!(retrieval_agreement(&r[..2], &x[..2], 2, 5), (None, 0));
    }
}
