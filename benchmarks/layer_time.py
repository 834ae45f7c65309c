"""Layer by layer: the time and FLOP rate of each layer of an architecture's G and D.

Builds params.yaml's models for ``--arch``, records every leaf layer's input shape from one
forward pass at ``--batch-size``, then times each layer alone on such an input (in the
layout the training would use): its forward, and its forward plus backward with gradients
for the weights and the input. FLOPs come from FlopCounterMode; the rate is their sum over
the forward-plus-backward time, next to the device's measured fp32 matmul rate. It shows
which layers run far below the matmul rate (docs/performance.md, "Where the train step's
time goes").

    python -m benchmarks.layer_time --arch dcgan --batch-size 64
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.train_throughput import matmul_rate, sync
from gan import memory, models, runtime
from gan.config import load_section, read_params


def leaf_inputs(net: nn.Module, *inputs) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(name, layer, a copy of its input) for each leaf layer, in the order they ran."""
    seen: list[tuple[str, nn.Module, torch.Tensor]] = []
    handles = [module.register_forward_hook(
        lambda mod, args, _out, name=name: seen.append((name, mod, args[0].detach().clone())))
        for name, module in net.named_modules() if not list(module.children())]
    with torch.no_grad():
        net(*inputs)
    for handle in handles:
        handle.remove()
    return seen


def time_layer(layer: nn.Module, x: torch.Tensor, device: torch.device, repeats: int,
               input_grad: bool = True) -> tuple[float, float, int]:
    """(forward s, forward+backward s, FLOPs of forward+backward) of ``layer`` on ``x``;
    the backward computes the input's gradient too when ``input_grad``."""
    x = x.requires_grad_(input_grad and x.is_floating_point())
    out = layer(x.clone() if x.requires_grad else x)  # in-place layers must not hit x
    grad = torch.randn_like(out)

    def fwd():
        return layer(x.clone() if x.requires_grad else x)

    def both():
        y = fwd()
        if y.requires_grad:
            y.backward(grad)

    with FlopCounterMode(display=False) as counter:
        both()
    timings = []
    for fn in (fwd, both):
        for _ in range(max(repeats // 10, 3)):
            fn()
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync(device)
        timings.append((time.perf_counter() - start) / repeats)
    return timings[0], timings[1], counter.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--arch", default=None, help="default: params.yaml's model.arch")
    p.add_argument("--batch-size", type=int, default=None, help="default: params.yaml's")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=100)
    args = p.parse_args()
    memory.keep_freed_memory()  # as every stage does

    params = read_params(args.params)
    model_raw = {**params["model"], "conditional": False}
    if args.arch:
        model_raw["arch"] = args.arch
    model_cfg = load_section({"model": model_raw}, "model")
    train_cfg = load_section({"train": {**params["train"], "device": args.device}}, "train")
    batch = args.batch_size or train_cfg.batch_size
    device = runtime.select_device(args.device)
    layout = runtime.resolve_memory_format(train_cfg.memory_format, device, model_cfg.arch)
    size = params["data"]["image_size"]
    torch.manual_seed(0)
    generator, discriminator = models.build(model_cfg, (1, size, size), 10)
    rate = matmul_rate(device)
    print(f"{model_cfg.arch}, batch {batch}, {device} ({torch.get_num_threads()} threads), "
          f"{str(layout).removeprefix('torch.')}; matmul {rate / 1e9:.1f} GFLOP/s (fp32); "
          f"torch {torch.__version__}")
    print("| net | layer | input | forward ms | forward+backward ms | MFLOP | GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    z = torch.randn(batch, model_cfg.latent_dim, device=device)
    images = torch.randn(batch, 1, size, size, device=device)
    totals = {}
    for tag, net, inputs in (("G", generator, (z,)), ("D", discriminator, (images,))):
        net.to(device, memory_format=layout).train()
        inputs = tuple(t.contiguous(memory_format=layout) if t.dim() == 4 else t
                       for t in inputs)
        for index, (name, layer, x) in enumerate(leaf_inputs(net, *inputs)):
            if x.dim() == 4:
                x = x.contiguous(memory_format=layout)
            # The noise needs no gradient; everything else does in one of the two steps.
            fwd, both, flops = time_layer(layer, x, device, args.repeats,
                                          input_grad=index > 0 or tag == "D")
            totals[tag] = totals.get(tag, 0.0) + both
            gflops = f"{flops / both / 1e9:.1f}" if flops else "-"
            print(f"| {tag} | {name} {type(layer).__name__} | {tuple(x.shape[1:])} | "
                  f"{fwd * 1e3:.3f} | {both * 1e3:.3f} | {flops / 1e6:.1f} | {gflops} |",
                  flush=True)
    print("\n" + ", ".join(f"{tag}: {ms * 1e3:.2f} ms forward+backward in all"
                           for tag, ms in totals.items()))


if __name__ == "__main__":
    main()
