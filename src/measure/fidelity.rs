//! Fidelity of an approximation against a reference signal, and task metrics against labels.
//!
//! Per-item metrics (cosine, MSE, KL) are averaged over the dataset with their standard error
//! (sample standard deviation / √n). SQNR and NMSE pool the whole dataset (Σ noise / Σ signal),
//! the usual definition, so one near-silent item cannot dominate them.

/// Signal-to-quantization-noise ratio in dB: `10·log10(Σ ref² / Σ (ref − approx)²)`.
/// Infinite when the two are identical; `None` when the reference is all zeros.
pub fn sqnr_db(reference: &[f32], approx: &[f32]) -> Option<f64> {
    let signal: f64 = reference.iter().map(|&r| (r as f64).powi(2)).sum();
    let noise: f64 = reference.iter().zip(approx).map(|(&r, &a)| (r as f64 - a as f64).powi(2)).sum();
    if signal == 0.0 {
        return None;
    }
    Some(if noise == 0.0 { f64::INFINITY } else { 10.0 * (signal / noise).log10() })
}

/// Mean and standard error of the mean of per-item values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanSe {
    pub mean: f64,
    pub stderr: f64,
}

impl MeanSe {
    pub fn of(values: &[f64]) -> MeanSe {
        let n = values.len();
        if n == 0 {
            return MeanSe { mean: f64::NAN, stderr: f64::NAN };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        MeanSe { mean, stderr: (var / n as f64).sqrt() }
    }
}

/// How far a variant's logits are from the fp32 reference's, over a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Fidelity {
    /// Share of items with the reference's top-1 class.
    pub top1_agreement: f64,
    /// Share of items whose variant top-5 contains the reference's top-1 class.
    pub top5_agreement: f64,
    pub cosine: MeanSe,
    /// Pooled over the dataset; `None` when the outputs are identical (infinite) or all zero.
    pub sqnr_db: Option<f64>,
    pub mse: MeanSe,
    /// Σ (ref − x)² / Σ ref², pooled.
    pub nmse: f64,
    pub max_abs_err: f64,
    /// KL(softmax(ref) ‖ softmax(x)) per item, in nats (from log-softmax).
    pub kl: MeanSe,
    /// Items whose KL is infinite (the variant gives a class no probability at all): the mean
    /// is then infinite.
    pub kl_infinite_items: usize,
}

/// Classes ordered by logit, highest first (lower index first on ties).
fn ranked(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx
}

/// Log-softmax in f64, shifted by the maximum for stability: exact where the softmax itself
/// would underflow to 0 (a logit 800 below the top one has log-probability −800, not −∞).
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    row.iter().map(|&x| x as f64 - lse).collect()
}

/// KL(p ‖ q) of two rows of logits, from their log-softmax: `Σ p·(log p − log q)`. Infinite
/// only where q gives no mass (a −∞ logit) to a class p gives some.
fn kl_logits(p: &[f32], q: &[f32]) -> f64 {
    let (lp, lq) = (log_softmax(p), log_softmax(q));
    lp.iter()
        .zip(&lq)
        .filter(|(lp, _)| lp.is_finite())
        .map(|(&lp, &lq)| if lq == f64::NEG_INFINITY { f64::INFINITY } else { lp.exp() * (lp - lq) })
        .sum()
}

/// Compares `[n, classes]` logits `x` against the reference's.
pub fn fidelity(reference: &[f32], x: &[f32], classes: usize) -> Fidelity {
    let n = reference.len() / classes;
    let (mut top1, mut top5) = (0usize, 0usize);
    let (mut cos, mut mse, mut kl) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut signal, mut noise, mut max_abs) = (0f64, 0f64, 0f64);
    for (r, a) in reference.chunks(classes).zip(x.chunks(classes)) {
        let (rr, ra) = (ranked(r), ranked(a));
        top1 += (rr[0] == ra[0]) as usize;
        top5 += ra.iter().take(5).any(|&c| c == rr[0]) as usize;
        let (mut dot, mut nr, mut na, mut se) = (0f64, 0f64, 0f64, 0f64);
        for (&p, &q) in r.iter().zip(a) {
            let (p, q) = (p as f64, q as f64);
            dot += p * q;
            nr += p * p;
            na += q * q;
            se += (p - q) * (p - q);
            max_abs = max_abs.max((p - q).abs());
        }
        signal += nr;
        noise += se;
        // An all-zero output has no direction: cosine 0 against anything but another all-zero
        // output (identical: 1). NaN outputs stay NaN, so the mean shows they happened.
        cos.push(if nr.is_nan() || na.is_nan() {
            f64::NAN
        } else if nr > 0.0 && na > 0.0 {
            dot / (nr.sqrt() * na.sqrt())
        } else if nr == na {
            1.0
        } else {
            0.0
        });
        mse.push(se / classes as f64);
        kl.push(kl_logits(r, a));
    }
    let kl_infinite = kl.iter().filter(|k| k.is_infinite()).count();
    Fidelity {
        top1_agreement: top1 as f64 / n.max(1) as f64,
        top5_agreement: top5 as f64 / n.max(1) as f64,
        cosine: MeanSe::of(&cos),
        sqnr_db: (signal > 0.0 && noise > 0.0).then(|| 10.0 * (signal / noise).log10()),
        mse: MeanSe::of(&mse),
        nmse: if signal > 0.0 { noise / signal } else { f64::NAN },
        max_abs_err: max_abs,
        kl: MeanSe::of(&kl),
        kl_infinite_items: kl_infinite,
    }
}

/// Wilson score 95% interval for `k` successes in `n` trials.
pub fn wilson_interval(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054f64;
    let (nf, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / nf;
    let center = (p + z * z / (2.0 * nf)) / denom;
    let half = z / denom * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Accuracy against labels, with intervals, per class, and the confusion matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMetrics {
    pub top1: f64,
    pub top1_ci: (f64, f64),
    pub top5: f64,
    pub top5_ci: (f64, f64),
    /// Accuracy over the items of each true class (NaN for a class with no items).
    pub per_class: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u32>>,
    /// Whether each item's top-1 is its label, in dataset order: what paired differences
    /// between two variants on the same items are computed from.
    pub correct: Vec<bool>,
}

/// The difference of two proportions measured on the same items, `mean(a) − mean(b)`, with
/// the Agresti–Min 95% interval for matched pairs (Wald on the 2×2 table of agreements with
/// 0.5 added to each cell: Agresti & Min 2005, *Simple improved confidence intervals for
/// comparing matched proportions*, Statistics in Medicine 24). Only the discordant items (right
/// in one, wrong in the other) carry information; with none, the interval still has a width
/// set by the number of items. `None` when the lengths differ or there is no item.
pub fn matched_difference(a: &[bool], b: &[bool]) -> Option<(f64, f64, f64)> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let n = a.len() as f64;
    let only_a = a.iter().zip(b).filter(|(x, y)| **x && !**y).count() as f64;
    let only_b = a.iter().zip(b).filter(|(x, y)| !**x && **y).count() as f64;
    let delta = (only_a - only_b) / n;
    let (n_adj, p12, p21) = (n + 2.0, (only_a + 0.5) / (n + 2.0), (only_b + 0.5) / (n + 2.0));
    let center = p12 - p21;
    let half = 1.959_963_984_540_054 * ((p12 + p21 - center * center) / n_adj).sqrt();
    Some((delta, (center - half).max(-1.0), (center + half).min(1.0)))
}

pub fn task_metrics(logits: &[f32], labels: &[u32], classes: usize) -> TaskMetrics {
    let mut confusion = vec![vec![0u32; classes]; classes];
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut correct = Vec::with_capacity(labels.len());
    for (row, &label) in logits.chunks(classes).zip(labels) {
        let r = ranked(row);
        let label = label as usize;
        correct.push(r[0] == label);
        top1 += (r[0] == label) as usize;
        top5 += r.iter().take(5).any(|&c| c == label) as usize;
        if label < classes {
            confusion[label][r[0]] += 1;
        }
    }
    let n = labels.len();
    let per_class = confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let total: u32 = row.iter().sum();
            if total == 0 {
                f64::NAN
            } else {
                row[c] as f64 / total as f64
            }
        })
        .collect();
    TaskMetrics {
        top1: top1 as f64 / n.max(1) as f64,
        top1_ci: wilson_interval(top1, n),
        top5: top5 as f64 / n.max(1) as f64,
        top5_ci: wilson_interval(top5, n),
        per_class,
        confusion,
        correct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fidelity_by_hand() {
        // Item 1: identical. Item 2: ref (1, 0, 0), x (0, 1, 0): cosine 0, MSE 2/3, top-1 differs.
        let r = [3.0, 4.0, 0.0, /**/ 1.0, 0.0, 0.0];
        let x = [3.0, 4.0, 0.0, /**/ 0.0, 1.0, 0.0];
        let f = fidelity(&r, &x, 3);
        assert_eq!((f.top1_agreement, f.top5_agreement), (0.5, 1.0));
        assert!((f.cosine.mean - 0.5).abs() < 1e-12);
        // stderr of {1, 0}: sd = √0.5, / √2 = 0.5.
        assert!((f.cosine.stderr - 0.5).abs() < 1e-12);
        assert!((f.mse.mean - 1.0 / 3.0).abs() < 1e-12);
        // Pooled: signal 25 + 1 = 26, noise 2: SQNR 10·log10(13), NMSE 1/13.
        assert!((f.sqnr_db.unwrap() - 10.0 * 13f64.log10()).abs() < 1e-12);
        assert!((f.nmse - 2.0 / 26.0).abs() < 1e-12);
        assert_eq!(f.max_abs_err, 1.0);
        // KL of item 2: p = softmax(1,0,0) = (e, 1, 1)/(e+2), q = (1, e, 1)/(e+2):
        // Σ p ln(p/q) = (e ln e + 1·ln(1/e)) / (e+2) = (e − 1)/(e + 2). Item 1: 0.
        let e = std::f64::consts::E;
        assert!((f.kl.mean - (e - 1.0) / (e + 2.0) / 2.0).abs() < 1e-12);
        // Identical outputs: SQNR is infinite, reported as None; KL and MSE are 0.
        let same = fidelity(&r, &r, 3);
        assert_eq!((same.sqnr_db, same.mse.mean, same.kl.mean, same.top1_agreement), (None, 0.0, 0.0, 1.0));
    }

    #[test]
    fn kl_from_log_softmax_and_cosine_of_silent_outputs() {
        // q puts the second class 800 below the first: softmax underflows to exactly 0 in f64,
        // so a ratio of probabilities gives ∞; the log-softmax gives p₂·(log p₂ − (−800 − ε)),
        // finite. With p = softmax(0, 0) = (½, ½) and q = (1, e^−800):
        // KL = ½·(ln ½ − 0) + ½·(ln ½ + 800) = 400 − ln 2.
        let f = fidelity(&[0.0, 0.0], &[0.0, -800.0], 2);
        assert!((f.kl.mean - (400.0 - std::f64::consts::LN_2)).abs() < 1e-9, "{}", f.kl.mean);
        assert_eq!(f.kl_infinite_items, 0);
        // A −∞ logit where the reference has mass: infinite, and counted.
        let f = fidelity(&[0.0, 0.0], &[0.0, f32::NEG_INFINITY], 2);
        assert_eq!((f.kl.mean, f.kl_infinite_items), (f64::INFINITY, 1));
        // An all-zero output counts as cosine 0 (it used to drop out of the mean); two all-zero
        // outputs are identical (1).
        let f = fidelity(&[1.0, 2.0, /**/ 3.0, 4.0], &[1.0, 2.0, /**/ 0.0, 0.0], 2);
        assert!((f.cosine.mean - 0.5).abs() < 1e-12, "{}", f.cosine.mean);
        assert_eq!(fidelity(&[0.0, 0.0], &[0.0, 0.0], 2).cosine.mean, 1.0);
        assert!(fidelity(&[1.0, 0.0], &[f32::NAN, 0.0], 2).cosine.mean.is_nan());
    }

    #[test]
    fn wilson_interval_matches_published_values() {
        // 50 of 100: [0.4038, 0.5962]; 0 of 10: [0, 0.2775]; 10 of 10: [0.7225, 1] (Wilson 1927;
        // e.g. Newcombe 1998, Table I).
        let (lo, hi) = wilson_interval(50, 100);
        assert!((lo - 0.4038).abs() < 1e-4 && (hi - 0.5962).abs() < 1e-4, "{lo} {hi}");
        let (lo, hi) = wilson_interval(0, 10);
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-4, "{hi}");
        let (lo, hi) = wilson_interval(10, 10);
        assert!((lo - 0.7225).abs() < 1e-4 && (hi - 1.0).abs() < 1e-12, "{lo} {hi}");
    }

    #[test]
    fn task_metrics_by_hand() {
        // 4 items, 6 classes. Predictions (argmax): 0, 1, 1, 5; labels 0, 0, 1, 2.
        let mut logits = vec![0f32; 4 * 6];
        for (i, (p, second)) in [(0, 1), (1, 0), (1, 2), (5, 4)].iter().enumerate() {
            logits[i * 6 + p] = 2.0;
            logits[i * 6 + second] = 1.0;
        }
        let t = task_metrics(&logits, &[0, 0, 1, 2], 6);
        assert_eq!(t.top1, 0.5);
        // Top-5 of item 4 ranks 5, 4, then 0, 1, 2 (ties by index): label 2 is in it.
        assert_eq!(t.top5, 1.0);
        assert_eq!(t.confusion[0], vec![1, 1, 0, 0, 0, 0]);
        assert_eq!(t.confusion[2][5], 1);
        assert_eq!(&t.per_class[..3], &[0.5, 1.0, 0.0]);
        assert!(t.per_class[3].is_nan());
        assert_eq!(t.top1_ci, wilson_interval(2, 4));
    }

    #[test]
    fn matched_difference_by_hand() {
        // 100 items: 10 right only in a, 4 right only in b, 80 right in both, 6 in neither.
        // Δ = 6/100. Agresti–Min: p12 = 10.5/102, p21 = 4.5/102, centre 6/102,
        // var = (15/102 − (6/102)²)/102, half-width 1.96·√var.
        let a: Vec<bool> = (0..100).map(|i| i < 90).collect();
        let b: Vec<bool> = (0..100).map(|i| (10..94).contains(&i)).collect();
        let (d, lo, hi) = matched_difference(&a, &b).unwrap();
        assert!((d - 0.06).abs() < 1e-12);
        let centre: f64 = 6.0 / 102.0;
        let half = 1.959_963_984_540_054 * ((15.0 / 102.0 - centre * centre) / 102.0).sqrt();
        assert!((lo - (centre - half)).abs() < 1e-12 && (hi - (centre + half)).abs() < 1e-12, "{lo} {hi}");
        // 0.0588 ± 0.0737: the interval holds 0, so 6 points on 14 discordant items is not
        // a detectable difference.
        assert!(lo < 0.0 && hi > 0.0);
        // Identical predictions: Δ 0, and an interval around 0 that narrows with more items.
        let (d, lo, hi) = matched_difference(&a, &a).unwrap();
        let big = vec![true; 10_000];
        let (_, lo_big, hi_big) = matched_difference(&big, &big).unwrap();
        assert!(d == 0.0 && lo < 0.0 && hi > 0.0 && hi_big < hi && lo_big > lo);
        assert_eq!(matched_difference(&a, &a[1..]), None);
        assert_eq!(task_metrics(&[2.0, 1.0, 0.0, 3.0], &[0, 0], 2).correct, vec![true, false]);
    }

    #[test]
    fn sqnr_by_hand() {
        // signal 3² + 4² = 25, noise 0.5² = 0.25 → 10·log10(100) = 20 dB
        assert!((sqnr_db(&[3.0, 4.0], &[3.5, 4.0]).unwrap() - 20.0).abs() < 1e-9);
        assert_eq!(sqnr_db(&[1.0], &[1.0]), Some(f64::INFINITY));
        assert_eq!(sqnr_db(&[0.0], &[1.0]), None);
    }
}
