"""Re-measure the alignment of finished credit-assignment runs on larger probes.

    python -m experiments.credit.probe_alignment runs/credit                  # 128, 1024, 4096 images
    python -m experiments.credit.probe_alignment runs/credit --images 128 8192 --methods fa dfa

`experiments.credit.credit_assignment` measures, after every epoch, the angle between a method's
weight update and backprop's gradient on one fixed batch: the first 128 training images. One
batch is a noisy probe of a layer whose gradient varies much from batch to batch. This command
restores the newest checkpoint of every finished run in the folder (<dataset>/<method>-seed<s>/,
settings from the folder's summary.json) and measures the same angle, per weight layer, on the
first N training images for each N of --images (one update of N images: the gradient of the mean
loss over them). Writes probe_alignment.json in the folder and prints the angles, mean ± sd over
seeds, per method, dataset, layer and N. Nothing is trained; the runs are not changed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import jax

from experiments.common import cli
from experiments.common.loop import ArgumentParser, UsageError, cli_main, restore, write_atomic
from experiments.credit import credit_assignment as ca
from jaxnn import credit


def measure(folder: Path, images: tuple[int, ...], methods: tuple[str, ...]) -> dict:
    """{dataset: {method: {layer: {N: [angle per seed]}}}} for the finished runs in `folder`."""
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise UsageError(f"{folder}: no summary.json (not a credit_assignment output folder)")
    given = json.loads(summary_path.read_text())["settings"]
    fields = {f.name for f in ca.dataclasses.fields(ca.Settings)}
    s = ca.Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if k in fields})
    results: dict = {}
    for dataset, per_method in json.loads(summary_path.read_text())["results"].items():
        data = ca.load(s, dataset)
        train_set = data[0]
        if max(images) > len(train_set[0]):
            raise UsageError(f"--images {max(images)} is more than the {len(train_set[0])} training images")
        for method, r in per_method.items():
            if method not in methods:
                continue
            angles: Any = None
            for seed in s.seeds:
                out = folder / dataset / f"{method}-seed{seed}"
                if not ca.finished(out, s.epochs):
                    print(f"{out}: not finished, skipped", flush=True)
                    continue
                run = ca.build(s, dataset, method, seed, r["learning_rate"], s.epochs, out, len(train_set[0]))
                epoch, state = restore(out, run.train.init(*run.init_model()))
                if angles is None:  # one program per method and dataset: the seeds differ in data only

                    @jax.jit
                    def angles(state, probe, key, run=run):
                        return credit.alignment(run.model, run.loss, run.rule, state.params,
                                                state.model_state, probe, state.rule_state, key)

                for n in images:
                    probe = (train_set[0][:n], train_set[1][:n])
                    for name, a in zip(run.weight_names, angles(state, probe, ca.probe_key(seed))):
                        (results.setdefault(dataset, {}).setdefault(method, {}).setdefault(name, {})
                         .setdefault(str(n), []).append(float(a)))
                print(f"{dataset} {method} seed {seed} (epoch {epoch}) measured", flush=True)
    return results


def table(results: dict, images: tuple[int, ...]) -> str:
    head = "| dataset | method | layer | " + " | ".join(f"{n} images" for n in images) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(images)]
    for dataset, per_method in results.items():
        for method, per_layer in per_method.items():
            for layer, per_n in per_layer.items():
                cells = []
                for n in images:
                    v = per_n.get(str(n), [])
                    sd = statistics.stdev(v) if len(v) > 1 else 0.0
                    cells.append(f"{statistics.mean(v):.0f} ± {sd:.0f}" if v else "–")
                lines.append(f"| {dataset} | {method} | {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("folder", help="an --out folder of experiments.credit.credit_assignment")
    p.add_argument("--images", nargs="+", type=cli.positive_int, default=[128, 1024, 4096],
                   help="probe sizes: the first N training images")
    p.add_argument("--methods", nargs="+", choices=credit.METHODS, default=list(credit.FEEDBACK_METHODS))
    a = p.parse_args(argv)
    images = tuple(dict.fromkeys(a.images))
    results = measure(Path(a.folder), images, tuple(a.methods))
    if not results:
        raise UsageError(f"{a.folder}: no finished run of {', '.join(a.methods)}")
    text = table(results, images)
    write_atomic(Path(a.folder) / "probe_alignment.json",
                 json.dumps({"images": images, "angles_degrees_per_seed": results}, indent=2) + "\n")
    print("angle between each method's update and backprop's gradient (degrees, mean ± sd over seeds)")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
