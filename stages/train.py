"""Stage train: fit the GAN variant of params.yaml and write its checkpoint and log.

With train.devices > 1 (and no torchrun around it) the stage relaunches itself under
torchrun; under torchrun every rank trains and rank 0 alone writes the outputs.
"""

import os
import subprocess
import sys
from pathlib import Path

from dvclive import Live

from gan import data, metrics, sample, train
from gan.config import GanError, load_section, load_seed
from stages import common


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--data", type=Path, required=True, help="folder of prepared splits")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--log-dir", type=Path, required=True, help="dvclive folder")
    p.add_argument("--resume", type=Path, required=True,
                   help="resumable state, saved every train.checkpoint_every steps")
    p.add_argument("--evolution", type=Path, help="folder of snapshot grids (none if omitted)")
    p.add_argument("--classifier", type=Path, help="classifier for the FID every "
                   "train.eval_every steps")
    args = p.parse_args()
    params = common.params(args.params)
    seed = load_seed(params)
    model_cfg = load_section(params, "model")
    train_cfg = load_section(params, "train")
    if train_cfg.devices > 1 and "WORLD_SIZE" not in os.environ:
        sys.exit(subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                 f"--nproc_per_node={train_cfg.devices}", "-m", "stages.train",
                                 *sys.argv[1:]]).returncode)
    # only evaluate.train_fid_samples is read: see dvc.yaml
    eval_cfg = load_section(params, "evaluate") if train_cfg.eval_every > 0 else None
    with train.process_group(train_cfg.device) as rank:
        if rank == 0:
            fit(args, seed, model_cfg, train_cfg, eval_cfg)
        else:  # the other ranks train their share and write nothing
            train.train(model_cfg, train_cfg, seed, data.load_prepared(args.data, "train"),
                        progress=False)


def fit(args, seed, model_cfg, train_cfg, eval_cfg) -> None:
    train_data = data.load_prepared(args.data, "train")
    every = train_cfg.snapshot_every if args.evolution else 0
    if every:
        snapshots = sample.evolution_hook(args.evolution, seed, model_cfg,
                                          len(train_data["classes"]))
    elif args.evolution:
        args.evolution.mkdir(parents=True, exist_ok=True)  # DVC wants the output, even empty
    periodic = ((every, snapshots),) if every else ()
    if train_cfg.eval_every > 0:
        if args.classifier is None:
            raise GanError("train.eval_every: the FID during training needs --classifier")
        classifier, classifier_cfg = metrics.load_classifier(args.classifier)
        metrics.check_compatible(classifier_cfg, args.classifier, training_images=(
            train_data["images"].shape[1:], train_data["classes"]))
        fid_of = metrics.training_fid(
            classifier, data.load_prepared(args.data, "test")["images"],
            eval_cfg.train_fid_samples, model_cfg, len(train_data["classes"]), seed)
        # The hook's return is logged (as "fid" at that step) and replayed on resume.
        periodic += ((train_cfg.eval_every, lambda step, g: {"fid": fid_of(g)}),)

    # dvcyaml=False: dvc.yaml declares the plots itself; letting dvclive rewrite it drops
    # and duplicates entries. A resumed run replays its saved log into the fresh folder.
    with Live(str(args.log_dir), dvcyaml=False, save_dvc_exp=False) as live:
        def log(step: int, record: dict[str, float]) -> None:
            live.step = step
            for name, value in record.items():
                live.log_metric(name, value)
            live.make_summary()

        result = train.train(model_cfg, train_cfg, seed, train_data, on_log=log,
                             periodic=periodic,
                             resume_path=args.resume)
    # Recorded without train.checkpoint_every: it only paces .resume/, so it must not change
    # the checkpoint's bytes (dvc.yaml leaves it out of train's params).
    del result.checkpoint["config"]["train"]["checkpoint_every"]
    train.save_checkpoint(result.checkpoint, args.checkpoint)
    args.resume.unlink(missing_ok=True)  # finished: the checkpoint supersedes it
    last = [h for h in result.history if "d_loss" in h][-1]
    print(f"train: {train_cfg.steps} steps of {model_cfg.arch}/{train_cfg.loss}, final "
          f"D loss {last['d_loss']:.3f}, G loss {last['g_loss']:.3f} -> {args.checkpoint}")


if __name__ == "__main__":
    common.run(main)
