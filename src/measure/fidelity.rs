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
    /// KL(softmax(ref) ‖ softmax(x)) per item, in nats.
    pub kl: MeanSe,
}

/// Classes ordered by logit, highest first (lower index first on ties).
fn ranked(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx
}

/// Softmax in f64, shifted by the maximum for stability.
fn softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = row.iter().map(|&x| (x as f64 - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|v| v / z).collect()
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
        cos.push(if nr > 0.0 && na > 0.0 { dot / (nr.sqrt() * na.sqrt()) } else { f64::NAN });
        mse.push(se / classes as f64);
        let (pr, pa) = (softmax(r), softmax(a));
        kl.push(pr.iter().zip(&pa).filter(|(p, _)| **p > 0.0).map(|(p, q)| p * (p / q).ln()).sum());
    }
    cos.retain(|c| c.is_finite());
    Fidelity {
        top1_agreement: top1 as f64 / n.max(1) as f64,
        top5_agreement: top5 as f64 / n.max(1) as f64,
        cosine: MeanSe::of(&cos),
        sqnr_db: (signal > 0.0 && noise > 0.0).then(|| 10.0 * (signal / noise).log10()),
        mse: MeanSe::of(&mse),
        nmse: if signal > 0.0 { noise / signal } else { f64::NAN },
        max_abs_err: max_abs,
        kl: MeanSe::of(&kl),
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
}

pub fn task_metrics(logits: &[f32], labels: &[u32], classes: usize) -> TaskMetrics {
    let mut confusion = vec![vec![0u32; classes]; classes];
    let (mut top1, mut top5) = (0usize, 0usize);
    for (row, &label) in logits.chunks(classes).zip(labels) {
        let r = ranked(row);
        let label = label as usize;
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
    fn sqnr_by_hand() {
        // signal 3² + 4² = 25, noise 0.5² = 0.25 → 10·log10(100) = 20 dB
        assert!((sqnr_db(&[3.0, 4.0], &[3.5, 4.0]).unwrap() - 20.0).abs() < 1e-9);
        assert_eq!(sqnr_db(&[1.0], &[1.0]), Some(f64::INFINITY));
        assert_eq!(sqnr_db(&[0.0], &[1.0]), None);
    }
}
