//! The search of `qbench tune`, apart from how a candidate is measured: greedy promotion of the
//! most sensitive layers up a ladder of wider types until the budget holds, then demotion of the
//! least sensitive promoted ones while it still holds. Every plan the search decides on is
//! measured by a [`Measurer`] (a real run in `qbench tune`; a table in the tests).

use crate::gate::Verdict;
use crate::quant::SchemeId;

/// Each weighted layer's scheme, in the model's layer order.
pub type Layers = Vec<(String, SchemeId)>;

/// A measured candidate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Measured {
    /// Its name in the run folder (`cnn.t03`).
    pub label: String,
    /// How the search reached it, e.g. `promote fc1 to q8_0`.
    pub step: String,
    #[serde(serialize_with = "layers_by_name")]
    pub layers: Layers,
    /// The objective: bytes or nanoseconds, lower is better; `None` when not measured.
    pub objective: Option<f64>,
    /// Top-1 drop against f32 on the same items, points, with its paired 95% interval.
    pub drop_pts: Option<f64>,
    pub drop_ci_pts: Option<(f64, f64)>,
    /// Whether the budget holds: pass only when the whole interval is within it.
    #[serde(serialize_with = "verdict_name")]
    pub verdict: Verdict,
    /// The budget check's words (or why the candidate could not be measured).
    pub message: String,
}

fn layers_by_name<S: serde::Serializer>(layers: &Layers, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(layers.len()))?;
    for (l, scheme) in layers {
        m.serialize_entry(l, &scheme.name())?;
    }
    m.end()
}

fn verdict_name<S: serde::Serializer>(v: &Verdict, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.name())
}

impl Measured {
    pub fn within(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    /// How far from the budget at worst: the interval's upper end (the point estimate without
    /// one); what "closest" means when nothing meets the budget.
    pub fn worst_drop_pts(&self) -> f64 {
        self.drop_ci_pts.map(|(_, hi)| hi).or(self.drop_pts).unwrap_or(f64::INFINITY)
    }
}

/// Measures one candidate plan.
pub trait Measurer {
    /// `step` says how the search reached `layers`.
    fn measure(&mut self, step: &str, layers: &Layers) -> Result<Measured, super::TuneError>;

    /// The layers the search may change, most sensitive first, judged on the start candidate.
    fn rank(&mut self, start: &Measured) -> Result<Vec<String>, super::TuneError>;
}

/// What the search measured and chose.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Search {
    pub measured: Vec<Measured>,
    /// The best objective among the candidates within budget (ties: the smaller drop).
    pub chosen: Option<usize>,
    /// The candidate nearest the budget (the smallest upper end of the drop's interval).
    pub closest: Option<usize>,
}

/// Runs the search from `start`; `ladder[0]` is the start scheme and each later rung a wider
/// type. The measurer ranks the layers on the start candidate.
pub fn search(start: &Layers, ladder: &[SchemeId], measurer: &mut dyn Measurer) -> Result<Search, super::TuneError> {
    let mut measured: Vec<Measured> = Vec::new();
    // A plan is measured once: the demotion often arrives at a plan the promotion measured.
    let measure = |measurer: &mut dyn Measurer,
                   step: String,
                   layers: &Layers,
                   measured: &mut Vec<Measured>|
     -> Result<usize, super::TuneError> {
        if let Some(i) = measured.iter().position(|m| m.layers == *layers) {
            return Ok(i);
        }
        let m = measurer.measure(&step, layers)?;
        measured.push(m);
        Ok(measured.len() - 1)
    };
    let rung_of = |layers: &Layers, layer: &str| {
        let s = layers.iter().find(|(l, _)| l == layer).map(|(_, s)| *s);
        s.and_then(|s| ladder.iter().position(|r| *r == s)).unwrap_or(0)
    };
    let set = |layers: &Layers, layer: &str, scheme: SchemeId| -> Layers {
        layers.iter().map(|(l, s)| (l.clone(), if l == layer { scheme } else { *s })).collect()
    };
    let mut current = start.clone();
    let first = measure(measurer, "start".into(), &current, &mut measured)?;
    let ranking = measurer.rank(&measured[first])?;
    let mut holding = measured[first].within().then_some(first);
    // Promotion: the most sensitive layers first, one rung at a time.
    'promote: for (rung, &wider) in ladder.iter().enumerate().skip(1) {
        for layer in &ranking {
            if holding.is_some() {
                break 'promote;
            }
            if rung_of(&current, layer) >= rung {
                continue;
            }
            current = set(&current, layer, wider);
            let step = format!("promote {layer} to {}", wider.name());
            let i = measure(measurer, step, &current, &mut measured)?;
            if measured[i].within() {
                holding = Some(i);
            }
        }
    }
    // Demotion: the least sensitive promoted layers back down while the budget still holds.
    if let Some(h) = holding {
        current = measured[h].layers.clone();
        for layer in ranking.iter().rev() {
            while rung_of(&current, layer) > 0 {
                let lower = ladder[rung_of(&current, layer) - 1];
                let trial = set(&current, layer, lower);
                let i = measure(measurer, format!("demote {layer} to {}", lower.name()), &trial, &mut measured)?;
                if !measured[i].within() {
                    break;
                }
                current = trial;
            }
        }
    }
    let better = |a: &Measured, b: &Measured| {
        let key = |m: &Measured| (m.objective.unwrap_or(f64::INFINITY), m.drop_pts.unwrap_or(f64::INFINITY));
        let (ka, kb) = (key(a), key(b));
        ka.0.total_cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
    };
    let chosen =
        (0..measured.len()).filter(|&i| measured[i].within()).min_by(|&a, &b| better(&measured[a], &measured[b]));
    let closest = (0..measured.len()).min_by(|&a, &b| {
        measured[a].worst_drop_pts().total_cmp(&measured[b].worst_drop_pts()).then(better(&measured[a], &measured[b]))
    });
    Ok(Search { measured, chosen, closest })
}

/// The candidates no other beats on both the objective (lower) and the drop (lower), in
/// increasing objective: the Pareto set the report shows.
pub fn pareto(measured: &[Measured]) -> Vec<usize> {
    let points: Vec<(f64, f64)> =
        measured.iter().map(|m| (m.objective.unwrap_or(f64::NAN), m.drop_pts.map_or(f64::NAN, |d| -d))).collect();
    crate::report::chart::pareto_front(&points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::ggml::GgmlType;

    const Q2K: SchemeId = SchemeId::Ggml(GgmlType::Q2K);
    const Q8: SchemeId = SchemeId::Ggml(GgmlType::Q8_0);

    /// A model whose drop is the sum of each layer's cost at its scheme, and whose size is the
    /// sum of each layer's bits: a table the search cannot see into.
    struct Table {
        cost: Vec<(&'static str, [f64; 3])>,
        bits: [f64; 3],
        budget: f64,
        calls: Vec<String>,
        ranking: Vec<String>,
    }

    impl Measurer for Table {
        fn measure(&mut self, step: &str, layers: &Layers) -> Result<Measured, crate::tune::TuneError> {
            self.calls.push(step.to_string());
            let rung = |s: SchemeId| [Q2K, Q8, SchemeId::F32].iter().position(|r| *r == s).unwrap_or(0);
            let drop: f64 =
                layers.iter().map(|(l, s)| self.cost.iter().find(|c| c.0 == l).map_or(0.0, |c| c.1[rung(*s)])).sum();
            let size: f64 = layers.iter().map(|(_, s)| self.bits[rung(*s)]).sum();
            let within = drop + 0.1 <= self.budget;
            Ok(Measured {
                label: format!("t{}", self.calls.len()),
                step: step.into(),
                layers: layers.clone(),
                objective: Some(size),
                drop_pts: Some(drop),
                drop_ci_pts: Some((drop - 0.1, drop + 0.1)),
                verdict: if within { Verdict::Pass } else { Verdict::Fail },
                message: String::new(),
            })
        }

        fn rank(&mut self, _: &Measured) -> Result<Vec<String>, crate::tune::TuneError> {
            Ok(self.ranking.clone())
        }
    }

    fn start() -> Layers {
        ["a", "b", "c"].iter().map(|l| (l.to_string(), Q2K)).collect()
    }

    #[test]
    fn promotes_the_sensitive_layers_until_the_budget_holds_then_demotes_what_it_can() {
        // a costs 1.0 at q2k, b 0.3, c 0.05; at q8_0 each costs nothing.
        let mut t = Table {
            cost: vec![("a", [1.0, 0.0, 0.0]), ("b", [0.3, 0.0, 0.0]), ("c", [0.05, 0.0, 0.0])],
            bits: [2.0, 8.0, 32.0],
            budget: 0.5,
            calls: vec![],
            ranking: ["a", "b", "c"].iter().map(|s| s.to_string()).collect(),
        };
        let s = search(&start(), &[Q2K, Q8, SchemeId::F32], &mut t).unwrap();
        // start (1.35) fails; a → q8_0 gives 0.35 + 0.1 ≤ 0.5: holds. Nothing to demote but a,
        // which fails again (already measured: the start).
        assert_eq!(t.calls, ["start", "promote a to q8_0"]);
        let chosen = &s.measured[s.chosen.unwrap()];
        assert_eq!(chosen.layers[0].1, Q8);
        assert_eq!(chosen.layers[1].1, Q2K);
        assert!(chosen.within());
    }

    #[test]
    fn demotion_undoes_a_promotion_that_the_budget_does_not_need() {
        // The ranking is wrong on purpose: c first, then a. Promoting c does not suffice,
        // promoting a does; then c is demoted back, and that still holds.
        let mut t = Table {
            cost: vec![("a", [1.0, 0.0, 0.0]), ("b", [0.1, 0.0, 0.0]), ("c", [0.2, 0.0, 0.0])],
            bits: [2.0, 8.0, 32.0],
            budget: 0.5,
            calls: vec![],
            ranking: ["c", "a", "b"].iter().map(|s| s.to_string()).collect(),
        };
        let s = search(&start(), &[Q2K, Q8, SchemeId::F32], &mut t).unwrap();
        assert_eq!(t.calls, ["start", "promote c to q8_0", "promote a to q8_0", "demote c to q2k"]);
        let chosen = &s.measured[s.chosen.unwrap()];
        let schemes: Vec<SchemeId> = chosen.layers.iter().map(|(_, s)| *s).collect();
        assert_eq!(schemes, [Q8, Q2K, Q2K]);
        // The chosen one is the smallest within budget.
        for m in s.measured.iter().filter(|m| m.within()) {
            assert!(m.objective.unwrap() >= chosen.objective.unwrap());
        }
    }

    #[test]
    fn a_budget_nothing_meets_names_the_closest_candidate() {
        // Even f32 everywhere has an interval reaching 0.1 > 0.05.
        let mut t = Table {
            cost: vec![("a", [1.0, 0.2, 0.0]), ("b", [0.3, 0.1, 0.0]), ("c", [0.05, 0.0, 0.0])],
            bits: [2.0, 8.0, 32.0],
            budget: 0.05,
            calls: vec![],
            ranking: ["a", "b", "c"].iter().map(|s| s.to_string()).collect(),
        };
        let s = search(&start(), &[Q2K, Q8, SchemeId::F32], &mut t).unwrap();
        assert!(s.chosen.is_none());
        let closest = &s.measured[s.closest.unwrap()];
        // Drop 0 (the least upper end, 0.1) first reached with a and b in f32 and c at q8_0,
        // smaller than all three in f32.
        let schemes: Vec<SchemeId> = closest.layers.iter().map(|(_, s)| *s).collect();
        assert_eq!(schemes, [SchemeId::F32, SchemeId::F32, Q8], "{closest:?}");
        assert_eq!(s.measured.len(), 7, "start, three to q8_0, three to f32");
    }

    #[test]
    fn pareto_keeps_only_undominated_candidates() {
        let m = |obj: f64, drop: f64| Measured {
            label: String::new(),
            step: String::new(),
            layers: vec![],
            objective: Some(obj),
            drop_pts: Some(drop),
            drop_ci_pts: None,
            verdict: Verdict::Pass,
            message: String::new(),
        };
        let all = [m(10.0, 1.0), m(20.0, 0.5), m(25.0, 0.7), m(30.0, 0.0)];
        assert_eq!(pareto(&all), vec![0, 1, 3]);
    }
}
