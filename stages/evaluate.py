"""Stage evaluate: FID, KID, IS, class coverage, precision/recall, density/coverage and the
share of copied training images (memorised) of generated images, beside the same scores of
real training images (the floor, ``_real``) and of junk (``_junk_<kind>``, gan.junk); a
score under which junk looks as good as real images is flagged ``flag_<score>_junk``.

Data of one class has no class scores (IS, coverage, KL, label accuracy): see gan.metrics.
"""

import sys

if not __package__:  # run as a file: the project is not on the path, its numerics not pinned
    sys.exit("error: stages run as modules, from the project's folder: "
             "python -m stages.evaluate ... (dvc repro runs them so)")

import time
from pathlib import Path

from gan.sections import load_section
from gan.sections.evaluate import EvaluateConfig
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--checkpoint", type=Path, required=True, help="trained GAN checkpoint")
    p.add_argument("--classifier", type=Path, required=True, help="trained classifier")
    p.add_argument("--data", type=Path, required=True, help="folder of prepared splits")
    p.add_argument("--out", type=Path, required=True, help="JSON of the scores to write")
    args, params = common.start("evaluate", p)
    from gan import checkpoint, classifier, data, metrics, runtime
    from gan.io import write_json

    cfg = load_section(params, EvaluateConfig)
    device = runtime.select_device("auto")
    judge, judge_cfg = classifier.load_classifier(args.classifier)
    trained = checkpoint.load_generator(args.checkpoint, device)
    test_data = data.load_prepared(args.data, "test")
    classifier.check_compatible(
        judge_cfg, args.classifier,
        generated_images=(trained.image_shape, trained.classes),
        test_images=(test_data["images"].shape[1:], test_data["classes"]))

    metrics.check_test_split(test_data["images"].shape[0], args.data / "test.pt")
    warning = metrics.small_split_warning(test_data["images"].shape[0])
    if warning:
        print(warning)
    start = time.perf_counter()
    scores = metrics.evaluate(trained, judge.to(device),
                              data.load_prepared(args.data, "train"), test_data, cfg,
                              show_progress=True)
    flags = metrics.judge_checks(scores, judge_cfg)
    write_json({k: round(v, 6) for k, v in {**scores, **dict.fromkeys(flags, 1)}.items()},
               args.out)
    print(f"evaluate: {scores['n_samples']} samples in {time.perf_counter() - start:.0f} s: "
          f"FID {scores['fid']:.2f} (real {scores['fid_real']:.2f}), precision "
          f"{scores['precision']:.3f}, recall {scores['recall']:.3f}, density "
          f"{scores['density']:.3f}, coverage {scores['coverage']:.3f}, memorised "
          f"{scores['memorised']:.3f} (test images {scores['memorised_real']:.3f}) -> {args.out}")
    for reason in flags.values():
        print(f"warning: {reason}")
    collapse = metrics.collapse_warning(scores)
    if collapse:
        print(collapse)


if __name__ == "__main__":
    common.run(main)
