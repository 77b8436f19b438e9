"""The README table of `experiments.rate.rate_rnn`: every task for several seeds, one row per task.

    python -m experiments.rate.rate_rnn_table --out runs/rate_rnn [--seeds 3] [--grad manual]

Runs `experiments.rate.rate_rnn` for each task and seed 0..seeds−1 into OUT/<task>_seed<k>/ (a run
whose summary.json exists is kept, so an interrupted table resumes; plots only for seed 0),
then writes OUT/table.md and OUT/table.json: units, steps to criterion, final performance and
training seconds per seed (the loop's train time: compile, evaluation and plots excluded),
with the date, machine and load.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from experiments.common import cli
from experiments.common.loop import UsageError, cli_main, machine, write_atomic
from experiments.rate import rate_rnn


def _cell(values, fmt):
    return " / ".join("–" if v is None else fmt.format(v) for v in values)


def table(out: Path, seeds: int) -> tuple[str, list[dict]]:
    rows, lines = [], [
        "| task | units | goal | steps to criterion (seeds 0/1/2…) | final performance | "
        "train seconds |", "|---|---|---|---|---|---|"]
    for task in rate_rnn.DEFAULTS:
        runs = [json.loads((out / f"{task}_seed{k}" / "summary.json").read_text())
                for k in range(seeds)]
        goal = ("≥ " if runs[0]["higher_is_better"] else "≤ ") + f"{runs[0]['goal']}"
        row = {"task": task, "units": runs[0]["config"]["hidden"], "goal": goal,
               "steps_to_criterion": [r["steps_to_criterion"] for r in runs],
               "final_performance": [r["final_performance"] for r in runs],
               "train_seconds": [r["train_seconds"] for r in runs],
               "steps": runs[0]["config"]["epochs"] * runs[0]["config"]["steps_per_epoch"]}
        rows.append(row)
        lines.append(f"| {task} | {row['units']} | {goal} | {_cell(row['steps_to_criterion'], '{}')} "
                     f"| {_cell(row['final_performance'], '{:.3f}')} "
                     f"| {_cell(row['train_seconds'], '{:.0f}')} |")
    return "\n".join(lines) + "\n", rows


def main(argv=None) -> int:
    ap = cli.parser("python -m experiments.rate.rate_rnn_table", __doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=cli.positive_int, default=3)
    ap.add_argument("--grad", default="manual", choices=("manual", "autodiff"))
    args = ap.parse_args(argv)
    if args.seeds < 1:
        raise UsageError(f"--seeds must be a positive integer, got {args.seeds}")
    out = cli.claim_out(args.out, existing="reuse")   # collects (and resumes) the runs it holds
    load_before = machine()["load"]
    for seed in range(args.seeds):
        for task in rate_rnn.DEFAULTS:
            run_dir = out / f"{task}_seed{seed}"
            if (run_dir / "summary.json").exists():
                continue
            rate_rnn.train_and_evaluate(rate_rnn.Config(
                task=task, out=str(run_dir), grad=args.grad, seed=seed, progress=False,
                plots=seed == 0, resume=run_dir.exists()))
    text, rows = table(out, args.seeds)
    m = machine()
    head = (f"Rate networks (Dale's law, {args.grad} BPTT), {args.seeds} seeds; machine "
            f"{m['processor'] or m['platform']}, {m['cpus']} cores, load {load_before} → {m['load']}\n\n")
    write_atomic(out / "table.md", head + text)
    write_atomic(out / "table.json", json.dumps({"rows": rows, "machine": m,
                                                 "load_before": load_before}, indent=2) + "\n")
    print(head + text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
