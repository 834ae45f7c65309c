"""Quality early in a run: the evaluate stage's scores of the generator at chosen steps.

Trains params.yaml's recipe (``--set section.key=value`` overrides one key) with the
learning-rate schedule of its full ``train.steps``, and at each ``--at`` step scores the
generator that samples are drawn from (the EMA one, with its standing statistics) as the
evaluate stage does: ``evaluate.n_samples`` images from ``evaluate.seed``'s latents against
the test split, through models/classifier.pt. It stops after the last ``--at`` step, so
"what does the default reach if I stop at step 500" costs 500 steps, not the whole run.
Scoring runs under a forked RNG and changes nothing in the training.

    python -m benchmarks.early_quality --at 500,1000 --seeds 0,1 --set train.lr_d=1.6e-3
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import yaml

from gan import classifier, data, memory, metrics, train
from gan.config import load_section, read_params
from gan.errors import GanError
from gan.hooks import Every


class _Done(Exception):
    """Raised by the scoring hook after the last asked step."""


def override(params: dict, items: list[str]) -> dict:
    """params with each ``section.key=value`` (value read as YAML) set."""
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        sections = [k for k, v in params.items() if isinstance(v, dict)]
        if not sep or not dot or section not in sections:
            raise SystemExit(f"--set {item}: expected section.key=value, section one of "
                             f"{', '.join(sections)}")
        params[section][name] = yaml.safe_load(value)
    return params


def run(params: dict, seed: int, at: list[int], data_dir: Path, judge, test_feats,
        test_radii) -> list[dict]:
    model_cfg = load_section(params, "model")
    train_cfg = load_section(params, "train")
    eval_cfg = load_section(params, "evaluate")
    if max(at) > train_cfg.steps:
        raise SystemExit(f"--at {max(at)}: past train.steps ({train_cfg.steps})")
    # The run's own FID curve and snapshots are off: only the asked steps score.
    train_cfg = train_cfg.__class__(**{**train_cfg.__dict__, "eval_every": 0,
                                       "snapshot_every": 0})
    split = data.load_prepared(data_dir, "train")
    classes = len(split["classes"])
    rows: list[dict] = []
    start = time.perf_counter()
    trained_s = 0.0

    def score(step: int, generator: torch.nn.Module) -> None:
        nonlocal trained_s, start
        if step not in at:
            return
        trained_s += time.perf_counter() - start
        images, _ = metrics.seeded_samples(generator, eval_cfg.n_samples, model_cfg, classes,
                                           eval_cfg.seed, eval_cfg.batch_size)
        feats, logits = classifier.extract(judge, images, eval_cfg.batch_size)
        rows.append({"seed": seed, "step": step, "train_s": trained_s,
                     **metrics.quality(test_feats, feats, logits, eval_cfg.seed, test_radii)})
        print(f"seed {seed}, step {step}: FID {rows[-1]['fid']:.2f}", flush=True)
        start = time.perf_counter()  # the scoring's time is not training time
        if step == max(at):
            raise _Done

    try:
        train.train(model_cfg, train_cfg, seed, split, hooks=(Every(math.gcd(*at), score),),
                    progress=False, say=lambda _: None)
    except _Done:
        pass
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--data", type=Path, default=Path("data/prepared"))
    p.add_argument("--classifier", type=Path, default=Path("models/classifier.pt"))
    p.add_argument("--at", default="500", help="steps to score at, comma-separated")
    p.add_argument("--seeds", default=None, help="training seeds, comma-separated "
                   "(default: params.yaml's seed)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one params.yaml key (repeatable)")
    args = p.parse_args()
    memory.keep_freed_memory()  # as every stage does
    try:
        at = sorted({int(s) for s in args.at.split(",")})
        if at[0] < 1:
            raise ValueError
    except ValueError:
        raise SystemExit(f"--at {args.at}: expected positive step numbers, comma-separated") \
            from None
    try:
        params = override(read_params(args.params), args.set)
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [params["seed"]]
        eval_cfg = load_section(params, "evaluate")
        judge, judge_cfg = classifier.load_classifier(args.classifier)
        test = data.load_prepared(args.data, "test")
        classifier.check_compatible(judge_cfg, args.classifier,
                                    test=(test["images"].shape[1:], test["classes"]))
        test_feats, _ = classifier.extract(judge, test["images"], eval_cfg.batch_size)
        test_radii = metrics.knn_radii(test_feats)
        rows = []
        for seed in seeds:
            rows += run(params, seed, at, args.data, judge, test_feats, test_radii)
    except GanError as exc:
        raise SystemExit(f"error: {exc}") from None

    print(f"\n{' '.join(args.set) or 'params.yaml as it is'}; evaluate.seed "
          f"{eval_cfg.seed}, {eval_cfg.n_samples} samples; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| seed | step | train s | FID | KID | precision | recall | coverage |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['step']} | {r['train_s']:.0f} | {r['fid']:.2f} | "
              f"{r['kid']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['class_coverage']:.1f} |")


if __name__ == "__main__":
    main()
