//! Language-model metrics: perplexity of a text in windows of token ids, and the distance of
//! each position's next-token distribution from a reference variant's.
//!
//! Every window is scored from position 0 with an empty KV cache; each token after the first is
//! predicted from the ones before it (`windows × (seq_len − 1)` scored tokens). The reference is
//! kept compact, as the top-k log-probabilities per position (llama-perplexity's
//! `--kl-divergence-base` keeps the whole vocabulary). KL divergence is then computed over those
//! k tokens plus one bucket for the rest of the vocabulary: the KL of the coarsened
//! distributions, a lower bound on the full KL (coarsening never increases a divergence), equal to
//! it when the rest holds no mass.

use crate::backend::{BackendError, BackendId, Decoder};
use crate::data::Dataset;
use crate::measure::fidelity::MeanSe;

/// Reference tokens kept per position.
pub const TOP_K: usize = 32;

/// The top-k next-token log-probabilities at every scored position, in window order.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    pub k: usize,
    /// `positions × k` token ids, most probable first.
    pub ids: Vec<u32>,
    /// `positions × k` natural-log probabilities, matching `ids`.
    pub logprobs: Vec<f32>,
}

impl TopK {
    pub fn positions(&self) -> usize {
        self.ids.len() / self.k.max(1)
    }
}

/// What a variant scored on the windows.
#[derive(Debug, Clone, PartialEq)]
pub struct LmScore {
    pub windows: usize,
    pub scored_tokens: usize,
    /// exp(mean negative log-likelihood per scored token).
    pub perplexity: f64,
    /// 95% interval of the perplexity from the windows' mean log-likelihoods (t interval on
    /// the log scale, exponentiated); `None` with a single window.
    pub perplexity_ci: Option<(f64, f64)>,
    /// This variant's own top-k per position (what a reference keeps).
    pub top: TopK,
    /// Against the reference, when one was given.
    pub vs_reference: Option<VsReference>,
}

/// A variant's next-token distributions against the reference's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VsReference {
    /// Share of positions whose most probable token is the reference's.
    pub top1_agreement: f64,
    /// KL(reference ‖ variant) per position over the top-k + rest buckets, in nats.
    pub kl: MeanSe,
}

/// Log-softmax of `logits` in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let lse = max + logits.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
    logits.iter().map(|&v| v as f64 - lse).collect()
}

/// The `k` most probable tokens (ids, log-probabilities), most probable first; ties go to the
/// lower id.
pub fn top_k(logprobs: &[f64], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..logprobs.len() as u32).collect();
    let order = |a: &u32, b: &u32| logprobs[*b as usize].total_cmp(&logprobs[*a as usize]).then(a.cmp(b));
    let k = k.min(idx.len());
    if k < idx.len() {
        idx.select_nth_unstable_by(k, order);
        idx.truncate(k);
    }
    idx.sort_unstable_by(order);
    idx.into_iter().map(|i| (i, logprobs[i as usize] as f32)).collect()
}

/// KL(p ‖ q) between the reference's top-k + rest buckets and the variant's probabilities of
/// the same buckets. `reference` holds (id, log p); `variant` is the variant's log-softmax.
pub fn kl_top_k(reference: &[(u32, f32)], variant: &[f64]) -> f64 {
    let (mut kl, mut p_top, mut q_top) = (0.0, 0.0, 0.0);
    for &(id, lp) in reference {
        let lp = lp as f64;
        // The variant's log-probability rounded as the reference's was, so identical logits
        // give exactly zero.
        let lq = variant[id as usize] as f32 as f64;
        kl += lp.exp() * (lp - lq);
        p_top += lp.exp();
        q_top += lq.exp();
    }
    let p_rest = (1.0 - p_top).max(0.0);
    if p_rest > 0.0 {
        let q_rest = (1.0 - q_top).max(1e-15);
        kl += p_rest * (p_rest.ln() - q_rest.ln());
    }
    kl
}

/// Scores every window of `data` (rows of token ids) on `decoder`, one token at a time through
/// the KV cache, and compares each position with `reference` when given.
pub fn score(
    decoder: &mut dyn Decoder,
    backend: BackendId,
    data: &Dataset,
    reference: Option<&TopK>,
) -> Result<LmScore, BackendError> {
    let seq = data.item_shape.iter().product::<usize>();
    let windows = data.len();
    let bad = |m: String| BackendError::engine(backend, "scoring the text", m);
    if seq < 2 {
        return Err(bad(format!("windows of {seq} token(s) leave nothing to predict; use seq_len of 2 or more")));
    }
    let positions = windows * (seq - 1);
    if let Some(r) = reference {
        if r.positions() != positions {
            return Err(bad(format!("the reference holds {} positions, the text {positions}", r.positions())));
        }
    }
    let vocab = decoder.vocab();
    let mut window_nll = Vec::with_capacity(windows);
    let mut top = TopK { k: TOP_K.min(vocab), ids: Vec::new(), logprobs: Vec::new() };
    let (mut agree, mut kls) = (0usize, Vec::with_capacity(if reference.is_some() { positions } else { 0 }));
    let mut position = 0;
    for w in 0..windows {
        let ids: Vec<u32> = data.values[w * seq..(w + 1) * seq].iter().map(|&v| v as u32).collect();
        decoder.reset();
        let mut nll = 0.0;
        for p in 0..seq - 1 {
            let logits = decoder.step(&ids[p..p + 1], 1, p)?;
            if logits.len() != vocab {
                return Err(bad(format!("{} logits for a vocabulary of {vocab}", logits.len())));
            }
            let bad_values = logits.iter().filter(|v| !v.is_finite()).count();
            if bad_values > 0 {
                return Err(BackendError::NonFinite { backend: backend.name(), item: w, count: bad_values });
            }
            let lp = log_softmax(&logits);
            nll -= lp[ids[p + 1] as usize];
            let mine = top_k(&lp, top.k);
            if let Some(r) = reference {
                let at = position * r.k..(position + 1) * r.k;
                let theirs: Vec<(u32, f32)> =
                    r.ids[at.clone()].iter().copied().zip(r.logprobs[at].iter().copied()).collect();
                agree += usize::from(mine[0].0 == theirs[0].0);
                kls.push(kl_top_k(&theirs, &lp));
            }
            for (id, l) in mine {
                top.ids.push(id);
                top.logprobs.push(l);
            }
            position += 1;
        }
        window_nll.push(nll / (seq - 1) as f64);
    }
    let m = MeanSe::of(&window_nll);
    let perplexity_ci = (windows > 1).then(|| {
        let half = t95(windows - 1) * m.stderr;
        ((m.mean - half).exp(), (m.mean + half).exp())
    });
    Ok(LmScore {
        windows,
        scored_tokens: positions,
        perplexity: m.mean.exp(),
        perplexity_ci,
        top,
        vs_reference: reference
            .map(|_| VsReference { top1_agreement: agree as f64 / positions as f64, kl: MeanSe::of(&kls) }),
    })
}

/// The two-sided 95% quantile of Student's t with `df` degrees of freedom (table to 30, then
/// the normal's 1.96 with the first-order correction).
fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        _ => 1.96 + 2.4 / df as f64,
    }
}

/// A top-k file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TopKError {
    #[error("cannot write {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    #[error("cannot read {path}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a top-k file qbench wrote")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
}

/// Writes a reference's top-k as safetensors (`ids` u32 and `logprobs` f32, `[positions, k]`).
pub fn write_top_k(path: &std::path::Path, top: &TopK, scheme: &str) -> Result<(), TopKError> {
    use safetensors::tensor::{Dtype, TensorView};
    let fail = |source| TopKError::Write { path: path.to_path_buf(), source };
    let ids: Vec<u8> = top.ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    let lps: Vec<u8> = top.logprobs.iter().flat_map(|v| v.to_le_bytes()).collect();
    let shape = vec![top.positions(), top.k];
    let views = [
        ("ids", TensorView::new(Dtype::U32, shape.clone(), &ids).map_err(fail)?),
        ("logprobs", TensorView::new(Dtype::F32, shape, &lps).map_err(fail)?),
    ];
    let metadata = std::collections::HashMap::from([("scheme".to_string(), scheme.to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(fail)
}

/// Reads what [`write_top_k`] wrote.
pub fn read_top_k(path: &std::path::Path) -> Result<TopK, TopKError> {
    let bytes = std::fs::read(path).map_err(|source| TopKError::Io { path: path.to_path_buf(), source })?;
    let bad = |source| TopKError::Read { path: path.to_path_buf(), source };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(bad)?;
    let ids = st.tensor("ids").map_err(bad)?;
    let lps = st.tensor("logprobs").map_err(bad)?;
    let k = ids.shape().get(1).copied().unwrap_or(0);
    Ok(TopK {
        k,
        ids: ids.data().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        logprobs: lps.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_over_the_whole_vocabulary_is_the_exact_kl() {
        let p = log_softmax(&[2.0, 1.0, 0.5, -1.0]);
        let q = log_softmax(&[1.5, 1.2, 0.1, -0.5]);
        let exact: f64 = p.iter().zip(&q).map(|(a, b)| a.exp() * (a - b)).sum();
        let all = top_k(&p, 4);
        assert!((kl_top_k(&all, &q) - exact).abs() < 1e-6, "{} vs {exact}", kl_top_k(&all, &q));
        // Two tokens plus the rest: a coarser, smaller divergence, still positive.
        let two = kl_top_k(&top_k(&p, 2), &q);
        assert!(two > 0.0 && two < exact, "{two} vs {exact}");
        // The buckets: {0}, {1}, {2, 3}.
        let (p_rest, q_rest) = (p[2].exp() + p[3].exp(), q[2].exp() + q[3].exp());
        let by_hand = p[0].exp() * (p[0] - q[0]) + p[1].exp() * (p[1] - q[1]) + p_rest * (p_rest / q_rest).ln();
        assert!((two - by_hand).abs() < 1e-6, "{two} vs {by_hand}");
        assert_eq!(kl_top_k(&top_k(&p, 2), &p), 0.0);
    }

    #[test]
    fn top_k_orders_by_probability_then_id() {
        let lp = [-1.0, -0.5, -3.0, -0.5];
        let t = top_k(&lp, 3);
        assert_eq!(t.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 3, 0]);
        assert_eq!(t[2].1, -1.0);
    }

    #[test]
    fn t_quantiles_match_tables() {
        assert_eq!(t95(1), 12.706);
        assert_eq!(t95(10), 2.228);
        assert!((t95(60) - 2.000).abs() < 0.005, "{}", t95(60));
        assert!((t95(120) - 1.980).abs() < 0.002, "{}", t95(120));
    }
}
