//! `[calibration] repeats = k`: how much a static scheme's result depends on which items
//! calibrated it. The held-out items are cut into k disjoint subsets
//! (`datasets::calibration_subsets`); the run calibrates on the first, and each static
//! (scheme, backend) is calibrated again on every other subset, its variant built and evaluated
//! on the same evaluation split, scored as the case is. The record keeps every subset's top-1
//! and SQNR; the report shows their spread.

use std::collections::HashMap;
use std::path::Path;

use super::{guarded, root_cause, CaseError};
use crate::backend::BackendId;
use crate::data::Dataset;
use crate::measure::outputs::{OutputKind, OutputValues};
use crate::model::LoadedModel;
use crate::quant::{Calibration, Plan, SchemeId};
use crate::record::{CalibrationRepeat, Record};
use crate::suite::{Case, Suite};

/// The subsets, their calibrations (made on first use) and each (scheme, backend)'s spread.
pub(super) struct Spread {
    subsets: Vec<Dataset>,
    calibrations: Vec<Option<Result<Calibration, String>>>,
    done: HashMap<(SchemeId, BackendId), Vec<CalibrationRepeat>>,
}

impl Spread {
    /// `subsets`: every calibration subset, the run's own first.
    pub fn new(subsets: Vec<Dataset>) -> Spread {
        let calibrations = subsets.iter().map(|_| None).collect();
        Spread { subsets, calibrations, done: HashMap::new() }
    }

    /// The spread of `case`'s plan over every subset: the case's own figures (`record`, already
    /// scored) for subset 0, then each other subset's. Empty without repeats or without a
    /// static layer.
    #[allow(clippy::too_many_arguments)]
    pub fn measure(
        &mut self,
        suite: &Suite,
        case: &Case,
        model: &LoadedModel,
        plan: &Plan,
        artifacts: &Path,
        data: &Dataset,
        kinds: &[(OutputKind, String)],
        reference: Option<&[OutputValues]>,
        record: &Record,
    ) -> Vec<CalibrationRepeat> {
        if self.subsets.len() < 2 || !plan.needs_calibration() {
            return Vec::new();
        }
        if let Some(done) = self.done.get(&(plan.scheme, case.backend)) {
            return done.clone();
        }
        let mut out = vec![CalibrationRepeat {
            subset: 0,
            items: self.subsets[0].len(),
            top1_accuracy: record.top1_accuracy,
            ref_sqnr_db: record.ref_sqnr_db,
            error: None,
        }];
        let percentile = suite.calibration.as_ref().map_or(0.0, |c| c.percentile);
        let batch = super::pass_batch(model, suite, data);
        for j in 1..self.subsets.len() {
            let subset = &self.subsets[j];
            let calibration = self.calibrations[j].get_or_insert_with(|| {
                guarded(|| super::calibrate(model, subset, percentile, suite.cuda_device, batch))
                    .map_err(|e| format!("calibration failed: {}", root_cause(&e)))
            });
            let scored = calibration.clone().and_then(|cal| {
                let dir = artifacts.join(format!("calibration-{j}"));
                guarded(|| {
                    std::fs::create_dir_all(&dir).map_err(|source| {
                        CaseError::Variant(crate::quant::VariantError::Write { path: dir.clone(), source })
                    })?;
                    let variant = crate::quant::apply_model(model, plan, &dir, Some(&cal))?;
                    let mut prepared = case.backend.create(suite.cuda_device).prepare(&variant, batch)?;
                    let outputs =
                        super::classify::evaluate(suite, case, &variant, data, prepared.session.as_mut(), batch)?;
                    let mut scored = Record::default();
                    super::classify::score_outputs(&outputs, kinds, reference, data, &mut scored);
                    Ok(scored)
                })
                .map_err(|e| root_cause(&e))
            });
            out.push(match scored {
                Ok(r) => CalibrationRepeat {
                    subset: j,
                    items: subset.len(),
                    top1_accuracy: r.top1_accuracy,
                    ref_sqnr_db: r.ref_sqnr_db,
                    error: None,
                },
                Err(e) => CalibrationRepeat {
                    subset: j,
                    items: subset.len(),
                    top1_accuracy: None,
                    ref_sqnr_db: None,
                    error: Some(e),
                },
            });
        }
        self.done.insert((plan.scheme, case.backend), out.clone());
        out
    }
}
