//! JUnit XML for gates (quick-junit, the serializer cargo-nextest uses): one test suite per
//! gate, one test case per (case, threshold). Failures carry the numbers in their message;
//! inconclusive checks are reported as skipped, with the reason.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{Check, Verdict};

/// The report for `checks` of run `run_name`, as XML.
pub fn to_xml(run_name: &str, checks: &[Check]) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new(format!("qbench gates: {run_name}"));
    let mut gates: Vec<&str> = checks.iter().map(|c| c.gate.as_str()).collect();
    gates.dedup();
    for gate in gates {
        let mut suite = TestSuite::new(gate);
        for c in checks.iter().filter(|c| c.gate == gate) {
            let status = match c.verdict {
                Verdict::Pass => TestCaseStatus::success(),
                Verdict::Fail => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(c.message.clone()).set_type(c.metric);
                    s
                }
                Verdict::Inconclusive => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(format!("inconclusive: {}", c.message));
                    s
                }
            };
            let mut case = TestCase::new(format!("{} :: {}", c.case, c.metric), status);
            case.set_classname(gate.to_string());
            if c.verdict == Verdict::Pass {
                case.set_system_out(c.message.clone());
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_carry_case_and_numbers_and_strings_are_escaped() {
        let checks = vec![
            Check {
                gate: "acc <int8>".into(),
                case: "cnn / int8 / tract-cpu / batch 1".into(),
                metric: "min_top1",
                verdict: Verdict::Fail,
                message: "top-1 88.0000% < minimum 90.0000%".into(),
            },
            Check {
                gate: "acc <int8>".into(),
                case: "mlp / int8 / tract-cpu / batch 1".into(),
                metric: "min_top1",
                verdict: Verdict::Pass,
                message: "top-1 91.0000% ≥ 90.0000%".into(),
            },
        ];
        let xml = to_xml("r & d", &checks).unwrap();
        assert!(
            xml.contains(r#"<testsuites name="qbench gates: r &amp; d" tests="2" skipped="0" failures="1""#),
            "{xml}"
        );
        assert!(xml.contains(r#"<testsuite name="acc &lt;int8&gt;" tests="2""#), "{xml}");
        assert!(xml.contains(r#"name="cnn / int8 / tract-cpu / batch 1 :: min_top1""#), "{xml}");
        assert!(xml.contains(r#"<failure message="top-1 88.0000% &lt; minimum 90.0000%" type="min_top1""#), "{xml}");
    }
}
