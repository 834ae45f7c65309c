"""Stage classifier: the small CNN whose features and labels score generated images.

Data of one class trains the rotation judge instead, and its accuracy is reported as
rotation_accuracy (gan.classifier). A judge at chance, still learning at its last update, or
unable to tell junk from images stops the stage (gan.classifier.gate_errors).
"""

import sys

if not __package__:  # run as a file: the project is not on the path, its numerics not pinned
    sys.exit("error: stages run as modules, from the project's folder: "
             "python -m stages.classifier ... (dvc repro runs them so)")

import time
from pathlib import Path

from gan.sections import load_section
from gan.sections.classifier import ClassifierConfig
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--data", type=Path, required=True, help="folder of prepared splits")
    p.add_argument("--out", type=Path, required=True, help="classifier file to write")
    p.add_argument("--metrics", type=Path, required=True,
                   help="JSON of its test accuracy (or rotation accuracy)")
    args, params = common.start("classifier", p)
    from gan import classifier, data, junk
    from gan.io import save_torch, write_json

    cfg = load_section(params, ClassifierConfig)
    train_data = data.load_prepared(args.data, "train")
    test_data = data.load_prepared(args.data, "test")

    name = ("test accuracy" if classifier.is_labelled(train_data["classes"]) else
            "rotation accuracy (one class: no labels, the judge learns rotations)")

    start = time.perf_counter()
    result = classifier.train_classifier(
        cfg, train_data, test_data, show_progress=True,
        on_check=lambda step, steps, acc: print(f"classifier: update {step}/{steps}, "
                                                f"{name} {acc:.4f}", flush=True))
    if classifier.is_labelled(train_data["classes"]):
        # The rotation judge of a folder without classes is not gated on junk: on 300
        # Fashion-MNIST images its features let noise in as often as images even after 300
        # updates (2026-12-07); evaluate still scores junk and flags what it fools.
        result.blind_to_junk = junk.blind_to_junk(result.classifier, train_data, test_data,
                                                     cfg.seed, cfg.batch_size)
    result.mark_weak()
    reasons = classifier.gate_errors(result)
    if reasons and not cfg.allow_weak:
        raise classifier.gate_error(result)
    save_torch(result.checkpoint, args.out)
    scores = {result.score_name: round(result.test_accuracy, 6)}
    # Each only when so: a judge that passes keeps its metrics file's bytes.
    for gate, reason in reasons.items():
        scores[gate] = 1
        print(f"warning: classifier.allow_weak: {reason}; every score of evaluate and "
              f"gan-score is marked flag_judge_{gate}", file=sys.stderr)
    write_json(scores, args.metrics)
    print(f"classifier: {result.score_name.replace('_', ' ')} {result.test_accuracy:.2%} "
          f"after {result.steps} updates "
          f"({time.perf_counter() - start:.0f} s) -> {args.out}")


if __name__ == "__main__":
    common.run(main)
