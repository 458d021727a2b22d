#!/usr/bin/env python3
"""Compares two runs of the same suite record by record, in every field that does not depend
on timing, the clock or where the run wrote: what a refactoring must leave unchanged.

    python3 scripts/diff-records.py BEFORE/records.jsonl AFTER/records.jsonl

Cases are joined on (model, scheme, backend, batch). Fields that differ are printed per case;
the realization and the engines' evidence are listed apart (a change there is a claim
corrected by observation, to be explained). Exit status: 0 when no other field differs, 1
otherwise, 2 on bad input.
"""

import json
import sys

# Timing, memory and the clock: they differ from run to run.
TIMING = {
    "samples_ns", "tg_samples_ns", "throughput_items_per_s", "prepare_ns", "first_run_ns", "cold_start_ns",
    "noise_probe_ns", "prepare_peak_rss_bytes", "run_peak_rss_bytes", "input_copy_median_ns",
    "pp_tokens_per_s", "tg_tokens_per_s", "gpu_memory_used_bytes", "latency_ci_target_met", "timestamp",
}
# Where and from what build the run happened.
PROVENANCE = {
    "run_id", "suite_file", "artifact", "git_commit", "git_dirty", "qbench_version", "cargo_features",
    "debug_build", "rustc_version", "engine_version",
}
# What the engine reports it ran: reported apart.
REALIZATION = {"realization", "expected_realization", "evidence", "layer_evidence"}


def ignored(field):
    return field in TIMING or field in PROVENANCE or field in REALIZATION or field.startswith("latency_")


def load(path):
    try:
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        sys.exit(f"cannot read {path}: {e}")
    return {(r["model"], r["scheme"], r["backend"], r["batch"]): r for r in records}


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    before, after = load(sys.argv[1]), load(sys.argv[2])
    differ = False
    for key in sorted(set(before) | set(after), key=str):
        name = " / ".join(map(str, key))
        if key not in before or key not in after:
            print(f"{name}: only in {'after' if key in after else 'before'}")
            differ = True
            continue
        a, b = before[key], after[key]
        fields = [f for f in sorted(set(a) | set(b)) if not ignored(f) and a.get(f) != b.get(f)]
        # A field the old records lack and the new ones add empty is not a change.
        fields = [f for f in fields if not (f not in a and b.get(f) in (None, "", [], 0))]
        for f in fields:
            differ = True
            print(f"{name}: {f}: {json.dumps(a.get(f))[:200]} -> {json.dumps(b.get(f))[:200]}")
        if a.get("realization") != b.get("realization"):
            print(f"{name}: realization {a.get('realization')} -> {b.get('realization')} "
                  f"(expected {b.get('expected_realization')})")
    print(f"{len(set(before) & set(after))} cases compared: "
          + ("other fields differ" if differ else "every non-timing field is the same"))
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
