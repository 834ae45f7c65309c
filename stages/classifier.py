"""Stage classifier: the small CNN whose features and labels score generated images.

Data of one class trains the rotation judge instead, and its accuracy is reported as
rotation_accuracy (gan.classifier).
"""

import sys

if not __package__:  # run as a file: the project is not on the path, its numerics not pinned
    sys.exit("error: stages run as modules, from the project's folder: "
             "python -m stages.classifier ... (dvc repro runs them so)")

import time
from pathlib import Path

from gan import classifier, data
from gan.config import load_section, read_params
from gan.io import save_torch, write_json
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--data", type=Path, required=True, help="folder of prepared splits")
    p.add_argument("--out", type=Path, required=True, help="classifier file to write")
    p.add_argument("--metrics", type=Path, required=True,
                   help="JSON of its test accuracy (or rotation accuracy)")
    args = p.parse_args()
    cfg = load_section(read_params(args.params), "classifier")
    train_data = data.load_prepared(args.data, "train")
    test_data = data.load_prepared(args.data, "test")

    name = ("test accuracy" if classifier.is_labelled(train_data["classes"]) else
            "rotation accuracy (one class: no labels, the judge learns rotations)")

    start = time.perf_counter()
    result = classifier.train_classifier(
        cfg, train_data, test_data,
        on_epoch=lambda epoch, acc: print(f"classifier: epoch {epoch}/{cfg.epochs}, "
                                          f"{name} {acc:.4f}", flush=True))
    if result.at_chance and not cfg.allow_chance:
        raise classifier.at_chance_error(result)
    save_torch(result.checkpoint, args.out)
    scores = {result.score_name: round(result.test_accuracy, 6)}
    if result.at_chance:  # only then: a judge that learned keeps its metrics file's bytes
        scores["at_chance"] = 1
        print("warning: classifier.allow_chance: the judge is no better than chance; every "
              "score of evaluate and gan-score is marked flag_judge_at_chance", file=sys.stderr)
    write_json(scores, args.metrics)
    print(f"classifier: {result.score_name.replace('_', ' ')} {result.test_accuracy:.2%} "
          f"after {cfg.epochs} epochs "
          f"({time.perf_counter() - start:.0f} s) -> {args.out}")


if __name__ == "__main__":
    common.run(main)
