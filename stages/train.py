"""Stage train: fit the GAN variant of params.yaml and write its checkpoint and log."""

from pathlib import Path

from dvclive import Live

from gan import data, metrics, train
from gan.config import GanError, load_section, load_seed
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--data", type=Path, required=True, help="folder of prepared splits")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--log-dir", type=Path, required=True, help="dvclive folder")
    p.add_argument("--classifier", type=Path, help="classifier for the FID every "
                   "train.eval_every steps")
    args = p.parse_args()
    params = common.params(args.params)
    seed = load_seed(params)
    model_cfg = load_section(params, "model")
    train_cfg = load_section(params, "train")
    train_data = data.load_prepared(args.data, "train")
    fid_of = None
    if train_cfg.eval_every > 0:
        if args.classifier is None:
            raise GanError("train.eval_every: the FID during training needs --classifier")
        eval_cfg = load_section(params, "evaluate")  # only train_fid_samples: see dvc.yaml
        classifier, classifier_cfg = metrics.load_classifier(args.classifier)
        metrics.check_compatible(classifier_cfg, args.classifier, training_images=(
            train_data["images"].shape[1:], train_data["classes"]))
        fid_of = metrics.training_fid(
            classifier, data.load_prepared(args.data, "test")["images"],
            eval_cfg.train_fid_samples, model_cfg.latent_dim, len(train_data["classes"]),
            model_cfg.conditional, seed)

    # dvcyaml=False: dvc.yaml declares the plots itself; letting dvclive rewrite it drops
    # and duplicates entries.
    with Live(str(args.log_dir), dvcyaml=False, save_dvc_exp=False) as live:
        def log(step: int, record: dict[str, float]) -> None:
            live.step = step
            for name, value in record.items():
                live.log_metric(name, value)
            live.make_summary()

        def log_fid(step: int, generator) -> None:
            live.step = step
            live.log_metric("fid", fid_of(generator))
            live.make_summary()

        periodic = ((train_cfg.eval_every, log_fid),) if fid_of else ()
        result = train.train(model_cfg, train_cfg, seed, train_data, on_log=log,
                             periodic=periodic)
    train.save_checkpoint(result.checkpoint, args.checkpoint)
    last = result.history[-1]
    print(f"train: {train_cfg.steps} steps of {model_cfg.arch}/{train_cfg.loss}, final "
          f"D loss {last['d_loss']:.3f}, G loss {last['g_loss']:.3f} -> {args.checkpoint}")


if __name__ == "__main__":
    common.run(main)
