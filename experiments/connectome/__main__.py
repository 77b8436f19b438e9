"""Run a connectome experiment: `python -m experiments.connectome --out DIR --experiment touch|whole
[--quick]`. touch: the touch-withdrawal circuit ensemble (`experiments.connectome.touch`); whole:
the full connectome against control wirings (`experiments.connectome.whole`). Each writes
DIR/summary.json, DIR/plots/ and one loop run per ensemble under DIR, and prints a headline table.
The data come from `jaxnn.data.connectome` (--data-dir, or $JAXNN_CONNECTOME_DIR); write them first
with `python -m experiments.connectome.regenerate`."""

from __future__ import annotations

import sys

from experiments.common.loop import ArgumentParser, cli_main


def parse_args(argv=None):
    ap = ArgumentParser(prog="experiments.connectome", description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", required=True, choices=("touch", "whole"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="a small run (well under a minute)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", type=int, help="touch: models in the ensemble")
    ap.add_argument("--shuffles", type=int, help="touch: shuffled wirings for the control")
    ap.add_argument("--signs", help="touch: synapse, neuron or transmitter")
    ap.add_argument("--seeds", type=int, help="whole: seeds per condition")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--steps-per-epoch", type=int)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-plots", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    common = dict(out=args.out, quick=args.quick, data_dir=args.data_dir, seed=args.seed,
                  resume=args.resume, progress=not args.no_progress, plots=not args.no_plots)
    optional = {k: v for k, v in dict(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch).items()
                if v is not None}
    if args.experiment == "touch":
        from experiments.connectome import touch
        extra = {k: v for k, v in dict(models=args.models, shuffles=args.shuffles,
                                       signs=args.signs).items() if v is not None}
        return touch.main(touch.Config(**common, **optional, **extra))
    from experiments.connectome import whole
    extra = {"seeds": args.seeds} if args.seeds is not None else {}
    return whole.main(whole.Config(**common, **optional, **extra))


if __name__ == "__main__":
    sys.exit(cli_main(main))
