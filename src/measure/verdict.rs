//! The one speed verdict: is `new` faster, slower, the same, or can the data not tell, against
//! `base`? `qbench compare`, `qbench check` and a gated `qbench run` all call [`judge`], so the
//! same two runs always get the same answer.
//!
//! The verdict reads only the ratio's 95% interval (time new / time base; valid for dependent
//! samples, `measure::stats`) and a practical threshold `t`:
//! - **slower**: the whole interval is above `1 + t`;
//! - **faster**: the whole interval is below `1 / (1 + t)`;
//! - **same**: the whole interval is within `[1 / (1 + t), 1 + t]`: any change is smaller than
//!   the threshold;
//! - **inconclusive** otherwise: the interval reaches past a threshold on one side and not
//!   beyond it on the other; more samples (or a quieter machine) would tell.
//!
//! The machine check (`measure::probe`) is a stated input, not a veto: its ratio between the
//! two measurements is carried beside the verdict, and a verdict in the direction the machine
//! itself moved by more than [`NOISY_DRIFT`] says so. Between two machines (a hardware
//! comparison) the check differs by design, and the verdict is about the cases' own
//! distributions.

use super::probe::NOISY_DRIFT;
use super::stats::RatioInterval;

/// How a case's speed changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Faster,
    Slower,
    Same,
    /// The interval straddles a threshold; `may_be_slower` when it reaches above `1 + t`.
    Inconclusive {
        may_be_slower: bool,
    },
}

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Change::Faster => "faster",
            Change::Slower => "slower",
            Change::Same => "same",
            Change::Inconclusive { may_be_slower: true } => "inconclusive",
            Change::Inconclusive { may_be_slower: false } => "inconclusive (not slower)",
        }
    }
}

/// A speed verdict with what it rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeedVerdict {
    pub change: Change,
    /// Time new / time base, with its 95% interval.
    pub ratio: RatioInterval,
    /// The practical threshold (0.02 = 2%).
    pub threshold: f64,
    /// Machine check new / base, when both measurements have one.
    pub machine_ratio: Option<f64>,
}

impl SpeedVerdict {
    /// "2.00× faster", "1.31× slower", "same (×1.004)".
    pub fn headline(&self) -> String {
        let r = self.ratio.ratio;
        match self.change {
            Change::Faster => format!("{:.2}× faster", 1.0 / r),
            Change::Slower => format!("{r:.2}× slower"),
            c => format!("{} (×{r:.3})", c.name()),
        }
    }

    /// When the machine's own speed moved beyond [`NOISY_DRIFT`] in the direction of the
    /// verdict, a sentence saying so; `None` otherwise.
    pub fn machine_caveat(&self) -> Option<String> {
        let m = self.machine_ratio?;
        let moved = (m.max(1.0 / m) - 1.0) > NOISY_DRIFT;
        let same_direction = match self.change {
            Change::Slower => m > 1.0,
            Change::Faster => m < 1.0,
            _ => false,
        };
        (moved && same_direction).then(|| {
            format!(
                "the machine check also moved ×{m:.2} between the two measurements: part of the change may be the machine's"
            )
        })
    }
}

/// The verdict on `ratio` (time new / time base) at threshold `threshold`; `machine_ratio` is
/// the machine check's ratio, carried as context.
pub fn judge(ratio: RatioInterval, threshold: f64, machine_ratio: Option<f64>) -> SpeedVerdict {
    let (upper, lower) = (1.0 + threshold, 1.0 / (1.0 + threshold));
    let change = if ratio.low.is_nan() || ratio.high.is_nan() {
        // No interval to read: nothing can be ruled out.
        Change::Inconclusive { may_be_slower: true }
    } else if ratio.low > upper {
        Change::Slower
    } else if ratio.high < lower {
        Change::Faster
    } else if ratio.low >= lower && ratio.high <= upper {
        Change::Same
    } else {
        Change::Inconclusive { may_be_slower: ratio.high > upper }
    };
    SpeedVerdict { change, ratio, threshold, machine_ratio }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ratio: f64, low: f64, high: f64) -> RatioInterval {
        RatioInterval { ratio, low, high }
    }

    #[test]
    fn each_verdict_from_where_the_interval_lies() {
        // Threshold 2%: the band is [1/1.02, 1.02] = [0.98039, 1.02].
        assert_eq!(judge(r(1.1, 1.05, 1.15), 0.02, None).change, Change::Slower);
        assert_eq!(judge(r(0.5, 0.49, 0.51), 0.02, None).change, Change::Faster);
        assert_eq!(judge(r(1.0, 0.99, 1.01), 0.02, None).change, Change::Same);
        // Significant but smaller than the threshold: the same, for practical purposes.
        assert_eq!(judge(r(1.01, 1.005, 1.015), 0.02, None).change, Change::Same);
        // Reaching past the threshold: cannot tell.
        assert_eq!(judge(r(1.01, 0.99, 1.03), 0.02, None).change, Change::Inconclusive { may_be_slower: true });
        assert_eq!(judge(r(0.97, 0.95, 1.0), 0.02, None).change, Change::Inconclusive { may_be_slower: false });
        // The edge itself: 1.02 is within the band.
        assert_eq!(judge(r(1.0, 0.99, 1.02), 0.02, None).change, Change::Same);
        assert_eq!(judge(r(0.5, 0.49, 0.51), 0.02, None).headline(), "2.00× faster");
        // No interval (too few samples): nothing is ruled out, a regression included.
        assert_eq!(judge(r(3.0, 0.0, f64::INFINITY), 0.05, None).change, Change::Inconclusive { may_be_slower: true });
        assert_eq!(judge(r(3.0, f64::NAN, f64::NAN), 0.05, None).change, Change::Inconclusive { may_be_slower: true });
    }

    #[test]
    fn the_machine_check_is_stated_not_a_veto() {
        // Slower while the machine check also slowed 12%: still slower, with a caveat.
        let v = judge(r(1.3, 1.25, 1.35), 0.02, Some(1.12));
        assert_eq!(v.change, Change::Slower);
        assert!(v.machine_caveat().unwrap().contains("×1.12"));
        // The machine moved the other way, or by less than 5%: no caveat.
        assert_eq!(judge(r(1.3, 1.25, 1.35), 0.02, Some(0.9)).machine_caveat(), None);
        assert_eq!(judge(r(1.3, 1.25, 1.35), 0.02, Some(1.03)).machine_caveat(), None);
        assert_eq!(judge(r(1.0, 0.99, 1.01), 0.02, Some(1.5)).machine_caveat(), None);
    }
}
