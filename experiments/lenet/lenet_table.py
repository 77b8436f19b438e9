"""The LeNet-5 accuracy table: every variant × gradient method × seed, with default settings.

    python -m experiments.lenet.lenet_table                       # 2 variants × 2 methods × 3 seeds
    python -m experiments.lenet.lenet_table --variants modern --seeds 0 --grads autodiff manual

Each run goes to --out/<variant>-<grad>-seed<seed>/ (as experiments.train_lenet writes it). A
finished run (summary.json present) is not repeated and an interrupted one resumes, so the
command can be re-run after a crash, or split across processes (each given a subset), and
run once more to collect. Writes table.md and table.json to --out and prints the table.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from experiments.common import cli
from experiments.common.loop import read_metrics, write_atomic
from experiments.train_lenet import Config, train_and_evaluate
from jaxnn.backprop import METHODS
from jaxnn.models import LENET5_ALL_VARIANTS, LENET5_VARIANTS


def run_dir(out: Path, variant: str, grad: str, seed: int) -> Path:
    return out / f"{variant}-{grad}-seed{seed}"


def run_all(args) -> None:
    for variant in args.variants:
        for seed in args.seeds:
            for grad in args.grads:
                d = run_dir(args.out, variant, grad, seed)
                if (d / "summary.json").exists():
                    continue
                print(f"== {variant} {grad} seed {seed} -> {d}", flush=True)
                train_and_evaluate(Config(variant=variant, grad=grad, seed=seed, out=str(d),
                                          data_dir=args.data_dir, progress=args.progress,
                                          max_shift=args.max_shift, plots=False,
                                          resume=(d / "checkpoints").exists()))


def collect(args) -> dict:
    """Per (variant, grad): final test accuracy per seed, mean; manual-vs-autodiff gaps."""
    table = {"runs": [], "curve_gaps": []}
    for variant in args.variants:
        for grad in args.grads:
            accs = {}
            for seed in args.seeds:
                f = run_dir(args.out, variant, grad, seed) / "summary.json"
                if f.exists():
                    summary = json.loads(f.read_text())
                    accs[seed] = summary["final"]["test_acc"]
                    epochs = summary["final"]["epoch"]
                    seconds = summary["train_seconds"]
            if accs:
                table["runs"].append({"variant": variant, "grad": grad, "epochs": epochs,
                                      "test_acc": accs, "mean": statistics.mean(accs.values()),
                                      "train_seconds_last": seconds})
        for seed in args.seeds:
            rows = {g: read_metrics(run_dir(args.out, variant, g, seed) / "metrics.csv")
                    for g in ("autodiff", "manual")}
            if rows["autodiff"] and len(rows["autodiff"]) == len(rows["manual"]):
                rel = max(abs(m["train_loss"] - a["train_loss"]) / a["train_loss"]
                          for a, m in zip(rows["autodiff"], rows["manual"]))
                acc = max(abs(m["test_acc"] - a["test_acc"])
                          for a, m in zip(rows["autodiff"], rows["manual"]))
                table["curve_gaps"].append({"variant": variant, "seed": seed,
                                            "max_rel_train_loss_gap": rel,
                                            "max_test_acc_gap": acc})
    return table


def markdown(table: dict, seeds) -> str:
    head = "| variant | --grad | epochs | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |"
    lines = [head, "|" + "---|" * (4 + len(seeds))]
    for r in table["runs"]:
        cells = [f"{100 * r['test_acc'][s]:.2f}%" if s in r["test_acc"] else "–" for s in seeds]
        lines.append(f"| {r['variant']} | {r['grad']} | {r['epochs']} | " + " | ".join(cells)
                     + f" | **{100 * r['mean']:.2f}%** |")
    if table["curve_gaps"]:
        lines += ["", "| variant | seed | max relative gap in epoch train loss, manual vs autodiff | "
                      "max gap in test accuracy |", "|---|---|---|---|"]
        lines += [f"| {g['variant']} | {g['seed']} | {g['max_rel_train_loss_gap']:.1e} | "
                  f"{100 * g['max_test_acc_gap']:.2f} pt |" for g in table["curve_gaps"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = cli.parser("python -m experiments.lenet.lenet_table", __doc__)
    p.add_argument("--variants", nargs="+", choices=LENET5_ALL_VARIANTS,
                   default=[*LENET5_VARIANTS, "bn"])
    p.add_argument("--grads", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=cli.seed, default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("runs/lenet_table"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--max-shift", type=cli.nonnegative_int, default=Config.max_shift,
                   help="augmentation shift in pixels (0: none)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--collect-only", action="store_true", help="only build the table")
    args = p.parse_args(argv)
    cli.claim_out(args.out, existing="reuse")   # collects (and resumes) the runs it holds
    if not args.collect_only:
        run_all(args)
    table = collect(args)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "table.json", json.dumps(table, indent=2) + "\n")
    text = markdown(table, args.seeds)
    write_atomic(args.out / "table.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(cli.cli_main(main))
