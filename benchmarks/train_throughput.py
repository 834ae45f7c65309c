"""Training throughput: the project's loop against a tutorial-style loop, and the FLOP floor.

For each architecture at its params.yaml size, on the same device, batch size and models:
- ``project``: ``gan.train.train`` itself on data/prepared, timed between periodic hooks
  (each window holds ``--window`` steps and one log read; the first is warm-up);
- ``reference``: the tutorials' loop: torchvision's FashionMNIST with per-image
  ToTensor/Normalize through a DataLoader, noise drawn with NumPy and moved to the device,
  BCE targets built every step and ``.item()`` on every loss every step.
The reference draws fresh fakes for G's step, as the Keras tutorials do; the project
reuses the D step's fakes (``train.reuse_fakes``, its default) and runs one G forward per
step. The floor is the project's step's FLOPs (FlopCounterMode over one D+G step, as the
project runs it) over the device's measured matmul rate.

    python -m benchmarks.train_throughput --device cpu --batch-size 64
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from gan import data, losses, memory, models, runtime, train
from gan.config import load_section, read_params
from gan.hooks import Every

RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torchvision_root(raw: Path, dest: Path) -> Path:
    """A root torchvision's FashionMNIST reads: dest/FashionMNIST/raw/<unzipped IDX files>."""
    folder = dest / "FashionMNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        for src in (raw / name, raw / f"{name}.gz"):
            if src.is_file():
                opener = gzip.open if src.suffix == ".gz" else open
                with opener(src, "rb") as fin, open(folder / name, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                break
        else:
            raise SystemExit(f"{raw}: {name}(.gz) not found")
    return dest


def project_rate(model_cfg, train_cfg, split, window: int, windows: int,
                 device: torch.device) -> list[float]:
    """Seconds per step of each timed window of the real training loop."""
    stamps: list[float] = []

    def stamp(step, _generator):
        sync(device)
        stamps.append(time.perf_counter())

    cfg = train_cfg.__class__(**{**train_cfg.__dict__, "steps": window * (windows + 1),
                                 "log_every": window, "ema_decay": None})
    train.train(model_cfg, cfg, 0, split, hooks=(Every(window, stamp),), progress=False)
    times = np.diff(stamps) / window  # the first stamp ends the warm-up window
    return list(times)


def reference_rate(model_cfg, split_shape, num_classes, root: Path, batch: int, window: int,
                   windows: int, device: torch.device, lr: float) -> list[float]:
    """Seconds per step of each timed window of a tutorial-style loop over the same models."""
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    np.random.seed(0)
    generator, discriminator = models.build(model_cfg, split_shape, num_classes)
    generator.to(device).train()
    discriminator.to(device).train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    criterion = nn.BCEWithLogitsLoss()
    dataset = datasets.FashionMNIST(str(root), train=True, download=False,
                                    transform=transforms.Compose([
                                        transforms.ToTensor(),
                                        transforms.Normalize((0.5,), (0.5,))]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True,
                                         drop_last=True)
    stamps, step, history = [], 0, []
    while len(stamps) < windows + 1:
        for images, _ in loader:
            images = images.to(device)
            z = torch.from_numpy(np.random.normal(0, 1, (batch, model_cfg.latent_dim)))
            fake = generator(z.float().to(device))
            ones = torch.ones(batch, device=device)
            zeros = torch.zeros(batch, device=device)
            d_loss = criterion(discriminator(images), ones) + \
                criterion(discriminator(fake.detach()), zeros)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            z = torch.from_numpy(np.random.normal(0, 1, (batch, model_cfg.latent_dim)))
            g_loss = criterion(discriminator(generator(z.float().to(device))), ones)
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            history.append((d_loss.item(), g_loss.item()))  # a sync per step, as they do
            step += 1
            if step % window == 0:
                sync(device)
                stamps.append(time.perf_counter())
                if len(stamps) == windows + 1:
                    break
    return list(np.diff(stamps) / window)


def step_flops(model_cfg, train_cfg, split, device: torch.device) -> int:
    """FLOPs of one D step and one G step of the project's loss at this batch size."""
    torch.manual_seed(0)
    shape, classes = tuple(split["images"].shape[1:]), len(split["classes"])
    generator, discriminator = models.build(model_cfg, shape, classes)
    generator.to(device).train()
    discriminator.to(device).train()
    loss, batch = losses.get(train_cfg.loss), train_cfg.batch_size
    real = split["images"][:batch].to(device)
    counter = FlopCounterMode(display=False)
    with counter:  # the project's step: one G forward with reuse_fakes, else two
        z = torch.randn(batch, model_cfg.latent_dim, device=device)
        with torch.set_grad_enabled(train_cfg.reuse_fakes):
            fake = generator(z)
        loss.d(discriminator(real), discriminator(fake.detach())).backward()
        if not train_cfg.reuse_fakes:
            fake = generator(z)
        loss.g(discriminator(fake)).backward()
    return counter.get_total_flops()


def matmul_rate(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n fp32 matmul on the device (best of ``repeats``)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--data", type=Path, default=Path("data/prepared"))
    p.add_argument("--raw", type=Path, default=Path("data/raw"),
                   help="IDX files (plain or .gz) for the reference's torchvision dataset")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--archs", default="mlp,dcgan,resize_conv")
    p.add_argument("--window", type=int, default=50, help="steps per timed window")
    p.add_argument("--windows", type=int, default=5, help="timed windows (median is shown)")
    p.add_argument("--rounds", type=int, default=3, help="project/reference alternations")
    p.add_argument("--precision", default="auto")
    p.add_argument("--memory-format", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--malloc", choices=("keep", "default"), default="keep",
                   help="keep: glibc keeps freed memory, as every stage sets it (both loops "
                        "run under it); default: glibc's own settings")
    args = p.parse_args()
    kept = args.malloc == "keep" and memory.keep_freed_memory()

    params = read_params(args.params)
    device = runtime.select_device(args.device)
    split = data.load_prepared(args.data, "train")
    shape, classes = tuple(split["images"].shape[1:]), len(split["classes"])
    rate = matmul_rate(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch_size}; "
          f"matmul {rate / 1e9:.1f} GFLOP/s (fp32); malloc: "
          f"{'freed memory kept' if kept else 'glibc defaults'}")
    header = ("| arch | project img/s | project steps/s | reference img/s | "
              "reference steps/s | ratio | GFLOP/step | floor ms | measured ms | x floor |")
    rows = [header, "|" + "---|" * 10]
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(args.raw, Path(tmp))
        for arch in args.archs.split(","):
            model_raw = {**params["model"], "arch": arch, "conditional": False}
            model_cfg = load_section({"model": model_raw}, "model")
            train_raw = {**params["train"], "batch_size": args.batch_size,
                         "device": args.device, "loss": "non_saturating",
                         "eval_every": 0, "snapshot_every": 0}
            train_raw.update(precision=args.precision, memory_format=args.memory_format,
                             compile=args.compile)
            train_cfg = load_section({"train": train_raw}, "train")
            ours_times, ref_times = [], []
            for _ in range(args.rounds):  # interleaved, so a busy spell hits both loops
                ours_times += project_rate(model_cfg, train_cfg, split, args.window,
                                           args.windows, device)
                ref_times += reference_rate(model_cfg, shape, classes, root, args.batch_size,
                                            args.window, args.windows, device, train_cfg.lr)
            ours, ref = statistics.median(ours_times), statistics.median(ref_times)
            flops = step_flops(model_cfg, train_cfg, split, device)
            floor = flops / rate
            rows.append(f"| {arch} | {args.batch_size / ours:,.0f} | {1 / ours:,.1f} | "
                        f"{args.batch_size / ref:,.0f} | {1 / ref:,.1f} | {ref / ours:.2f}x | "
                        f"{flops / 1e9:.3f} | {floor * 1e3:.2f} | {ours * 1e3:.2f} | "
                        f"{ours / floor:.1f}x |")
            print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
