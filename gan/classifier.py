"""The judge of sample quality: a small CNN trained on the real labels, and its features.

Its penultimate layer is the feature space of FID, KID and precision/recall (gan.metrics);
its softmax is the label oracle of class coverage and label accuracy. Data of one class
(a folder without class subfolders) has no labels to learn from: the judge then learns to
tell which of four rotations an image was turned by (Gidaris et al., 2018), which needs
shapes, and its softmax means nothing about classes, so no class score is computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gan import mathops
from gan.batches import DeviceBatches
from gan.errors import GanError
from gan.io import read_torch
from gan.progress import progress
from gan.runtime import seed_everything, select_device
from gan.sections import to_record
from gan.sections.classifier import ClassifierConfig

# The version of models/classifier.pt's layout; a file of another version is refused.
CLASSIFIER_FORMAT = 1
NUM_FEATURES = 128  # width of the penultimate layer: the feature space of FID, KID, P/R
ROTATION = "rotation"  # the judge's task without labels; "task" in its checkpoint's config
ROTATIONS = 4  # its classes: turned by 0, 90, 180 or 270 degrees
PR_NEIGHBOURS = 3  # k of Kynkäänniemi et al. (2019): the k-NN balls of precision/recall
# A judge must beat chance by more than this, or by more than two standard errors of a
# guesser's accuracy on the test split (sqrt(c (1 - c) / n)) where that is larger: a pure
# guesser passes that line about 1 time in 40. 5 points is far below what a judge that
# learned gains (Fashion-MNIST's: 91.6 % against 10 %) and above the 1 point by which a
# rotation judge of all-black squares beat its 25 % (26 %).
CHANCE_MARGIN = 0.05
# The held-out accuracy is measured after each of CHECKS equal parts of the judge's updates;
# a judge whose accuracy rose by more than LEARNING_MARGIN (or two standard errors, on a
# small test split) over the last part is still learning. The one-cycle schedule's last
# fifth anneals the learning rate to ~0, which a trained judge turns into a point or so.
CHECKS = 5
LEARNING_MARGIN = 0.02


def is_labelled(classes: list) -> bool:
    """Whether data of these classes trains a classifier (else the rotation judge)."""
    return len(classes) > 1


def rotated(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(each image (B, C, S, S) turned by 0, 90, 180, 270 degrees (4B, C, S, S), k (4B,))."""
    turns = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(ROTATIONS)])
    k = torch.arange(ROTATIONS, device=images.device).repeat_interleave(images.shape[0])
    return turns, k


class Classifier(nn.Module):
    """A small CNN: images (B, C, S, S) in [-1, 1] -> class logits (B, K)."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, width: int = 16):
        super().__init__()
        channels = image_shape[0]

        def conv(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *conv(channels, width), nn.MaxPool2d(2),  # (B, w, S/2, S/2)
            *conv(width, 2 * width), nn.MaxPool2d(2),  # (B, 2w, S/4, S/4)
            *conv(2 * width, 4 * width),  # (B, 4w, S/4, S/4)
            nn.AdaptiveAvgPool2d(7), nn.Flatten(),  # (B, 4w * 49); the identity at 28 px
            nn.Linear(4 * width * 49, NUM_FEATURES, bias=False), nn.BatchNorm1d(NUM_FEATURES),
            nn.ReLU(inplace=True),  # (B, F): the features
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(NUM_FEATURES, num_classes))
        # oneDNN's convolutions run faster in channels_last on the CPU (the GAN's step:
        # docs/performance.md, "Where the train step's time goes"); .to(device) and
        # load_state_dict keep the layout.
        self.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, NUM_FEATURES)."""
        return self.body(x.contiguous(memory_format=torch.channels_last))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def chance(test_labels: torch.Tensor, labelled: bool) -> float:
    """The accuracy of a judge that learned nothing: always naming the test split's largest
    class, or one of the four rotations."""
    if not labelled:
        return 1 / ROTATIONS
    return float(torch.bincount(test_labels).max()) / test_labels.numel()


def chance_margin(chance_accuracy: float, n_predictions: int) -> float:
    """How far above chance a judge's accuracy over ``n_predictions`` answers must be to
    count as learned: CHANCE_MARGIN, or two standard errors of a guesser's accuracy if more."""
    return max(CHANCE_MARGIN, 2 * math.sqrt(chance_accuracy * (1 - chance_accuracy)
                                            / max(1, n_predictions)))


def is_at_chance(accuracy: float, chance_accuracy: float, n_predictions: int) -> bool:
    """Whether an accuracy over ``n_predictions`` answers is within chance_margin of chance."""
    return accuracy <= chance_accuracy + chance_margin(chance_accuracy, n_predictions)


def judge_steps(cfg: ClassifierConfig, per_epoch: int) -> int:
    """The judge's optimizer updates: classifier.steps, or when that is null
    classifier.epochs passes over the training split (``per_epoch`` batches each), but at
    least classifier.min_steps. Fashion-MNIST's 60,000 images at batch 128 take 2 x 468 = 936,
    the updates of the judge before steps existed; a folder of 1,000 images gets 900, some
    115 passes, where 2 passes would be 14 updates and leave it half-trained."""
    if cfg.steps is not None:
        return cfg.steps
    return max(cfg.epochs * per_epoch, cfg.min_steps)


def check_points(steps: int) -> list[int]:
    """The updates after which the held-out accuracy is measured: the end of each of
    CHECKS equal parts of the training, the last being ``steps``."""
    return sorted({max(1, steps * i // CHECKS) for i in range(1, CHECKS + 1)})


def learning_margin(accuracy: float, n_predictions: int) -> float:
    """How much the held-out accuracy may still rise over the last part of the training for
    the judge to count as trained: LEARNING_MARGIN, or two standard errors of an accuracy
    over ``n_predictions`` answers if more (a small test split's accuracy moves by chance)."""
    return max(LEARNING_MARGIN, 2 * math.sqrt(accuracy * (1 - accuracy) / max(1, n_predictions)))


def is_still_learning(curve: list[tuple[int, float]], n_predictions: int) -> bool:
    """Whether the held-out accuracy rose by more than learning_margin over the last part
    of ``curve`` ([(update, accuracy)], one point per check_points)."""
    if len(curve) < 2:
        return False
    (_, before), (_, last) = curve[-2], curve[-1]
    return last - before > learning_margin(last, n_predictions)


def gate_errors(result: ClassifierResult) -> dict[str, str]:
    """{gate: its one-line reason} of each gate the judge fails (at_chance, still_learning,
    blind_to_junk, the keys of its checkpoint's config); empty for a judge fit to score."""
    name = result.score_name.replace("_", " ")
    reasons = {}
    if result.at_chance:
        reasons["at_chance"] = (
            f"{name} {result.test_accuracy:.1%} is within {result.margin:.1%} of chance "
            f"({result.chance:.1%}): the judge cannot tell these images apart, so every "
            f"score it gave would be noise")
    if result.still_learning:
        (_, before), (step, last) = result.curve[-2], result.curve[-1]
        reasons["still_learning"] = (
            f"{name} still rose from {before:.1%} to {last:.1%} over the last fifth of its "
            f"{step} updates (more than {learning_margin(last, result.answers):.1%}): the "
            f"judge is still learning, and a half-trained judge flatters a generator")
    if result.blind_to_junk:
        reasons["blind_to_junk"] = (
            f"{result.blind_to_junk} junk lies inside the test images' manifold as often as "
            f"real training images do: the judge cannot tell junk from images, so precision "
            f"and the other scores would flatter junk")
    return reasons


def gate_error(result: ClassifierResult) -> GanError:
    """The one line the classifier stage stops with for a judge that fails a gate."""
    return GanError(f"classifier: {'; '.join(gate_errors(result).values())}; give it more "
                    f"updates (classifier.steps, or classifier.min_steps), more images, or "
                    f"other data (classifier.allow_weak: true goes on, each score marked)")


@dataclass
class ClassifierResult:
    classifier: Classifier
    checkpoint: dict[str, Any]
    test_accuracy: float  # on the test split: of the labels, or of the rotations
    score_name: str = "test_accuracy"  # its name: test_accuracy or rotation_accuracy
    chance: float = 0.0  # the accuracy of a judge that learned nothing
    margin: float = 0.0  # how far above it a judge must be (chance_margin)
    at_chance: bool = False  # not that far: the classifier stage stops unless allow_weak
    steps: int = 0  # optimizer updates (judge_steps)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (update, held-out accuracy)
    answers: int = 0  # the answers behind each accuracy (test images, x4 for rotations)
    still_learning: bool = False  # is_still_learning: the stage stops unless allow_weak
    blind_to_junk: str = ""  # the junk the judge mistakes for images (set by the stage)

    def mark_weak(self) -> None:
        """Record the gates failed in the checkpoint, for evaluate and gan-score to mark
        every score; only the failed ones, so that a fit judge's file keeps its bytes."""
        config = self.checkpoint["config"]
        for key, failed in (("at_chance", self.at_chance),
                            ("still_learning", self.still_learning),
                            ("blind_to_junk", bool(self.blind_to_junk))):
            if failed:
                config[key] = True


def train_classifier(cfg: ClassifierConfig, train_data: dict, test_data: dict,
                     on_check: Callable[[int, int, float], None] | None = None,
                     show_progress: bool = False) -> ClassifierResult:
    """Fit the judge on a prepared train split for judge_steps updates;
    ``on_check(update, steps, test_accuracy)`` at each of check_points; a progress bar (or
    lines) on stderr with ``show_progress``.

    With one class the judge learns the four rotations of each batch instead (4x the
    images per step) and the accuracy is of the rotations of the test split.
    """
    device = select_device("auto")
    seed_everything(cfg.seed)
    images, labels = train_data["images"], train_data["labels"]
    if cfg.batch_size > images.shape[0]:
        raise GanError(f"classifier.batch_size: got {cfg.batch_size}, must be at most the "
                       f"{images.shape[0]} training images")
    image_shape = tuple(images.shape[1:])
    labelled = is_labelled(train_data["classes"])
    outputs = len(train_data["classes"]) if labelled else ROTATIONS
    model = Classifier(image_shape, outputs, cfg.width).to(device)
    batches = DeviceBatches(images, labels, cfg.batch_size, cfg.seed, device)
    steps = judge_steps(cfg, batches.per_epoch)
    # ATen's fused kernel: fastest, and its square root is ATen's own, where the plain
    # implementations' reaches MKL's vector math, other bits per CPU vendor (gan/mathops.py)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr,
                                 fused=device.type in ("cpu", "cuda"))
    # One-cycle: a short warm-up then annealing to ~0 is what lets two epochs reach ~92%.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=steps,
                                                   pct_start=0.15)
    checks = set(check_points(steps))
    curve: list[tuple[int, float]] = []
    model.train()
    for step in progress(range(1, steps + 1), desc="classifier", unit="update", total=steps,
                         enabled=show_progress):
        x, y = batches.next()
        if not labelled:
            x, y = rotated(x)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step in checks:  # eval mode draws no random numbers and moves no statistics
            model.eval()
            curve.append((step, classifier_accuracy(model, test_data["images"],
                                                    test_data["labels"], cfg.batch_size)
                          if labelled else
                          rotation_accuracy(model, test_data["images"], cfg.batch_size)))
            model.train()
            if on_check is not None:
                on_check(step, steps, curve[-1][1])
    model.eval().cpu()
    accuracy = curve[-1][1]
    name = "test_accuracy" if labelled else "rotation_accuracy"
    guess = chance(test_data["labels"], labelled)
    # each rotation of each test image is an answer
    answers = test_data["labels"].numel() * (1 if labelled else ROTATIONS)
    config = {"classifier": to_record(cfg), "image_shape": list(image_shape),
              "classes": list(train_data["classes"])}
    # Only when so, so that a labelled judge's file stays byte for byte as before.
    if not labelled:
        config["task"] = ROTATION
    checkpoint = {
        "format": CLASSIFIER_FORMAT,
        "config": config,
        "classifier": {k: v.detach().clone() for k, v in model.state_dict().items()},
        name: accuracy,
    }
    result = ClassifierResult(model, checkpoint, accuracy, name, guess,
                              chance_margin(guess, answers),
                              is_at_chance(accuracy, guess, answers), steps, curve, answers,
                              is_still_learning(curve, answers))
    result.mark_weak()
    return result


def load_classifier(path: Path) -> tuple[Classifier, dict]:
    """Rebuild a classifier from its file; returns (classifier in eval mode on CPU, config)."""
    ckpt = read_torch(path, CLASSIFIER_FORMAT, "classifier",
                      "; run the classifier stage (dvc repro classifier)")
    if "classifier" not in ckpt:
        raise GanError(f"{path}: not a classifier of this project (format "
                       f"{CLASSIFIER_FORMAT} expected)")
    cfg = ckpt["config"]
    outputs = ROTATIONS if cfg.get("task") == ROTATION else len(cfg["classes"])
    model = Classifier(tuple(cfg["image_shape"]), outputs, cfg["classifier"]["width"])
    model.load_state_dict(ckpt["classifier"])
    return model.eval(), cfg


def check_compatible(classifier_cfg: dict, where: Path, **image_sets: tuple) -> None:
    """Raise GanError unless every ``name=(image_shape, classes)`` is what the classifier
    at ``where`` was trained on."""
    shape, classes = tuple(classifier_cfg["image_shape"]), list(classifier_cfg["classes"])
    for name, (other_shape, other_classes) in image_sets.items():
        if (tuple(other_shape), list(other_classes)) != (shape, classes):
            raise GanError(f"{where}: trained on {shape} images of {len(classes)} classes, "
                           f"but the {name} are {tuple(other_shape)} of {len(other_classes)} "
                           f"classes; rerun dvc repro")


@torch.no_grad()
def extract(classifier: nn.Module, images: torch.Tensor,
            batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, F), logits (N, K)), float64 on the CPU, of CPU images (N, C, S, S)."""
    device = next(classifier.parameters()).device
    feats, logits = [], []
    for chunk in images.split(batch_size):
        f = classifier.features(chunk.to(device))
        # To the CPU first: MPS has no float64.
        feats.append(f.cpu().double())
        logits.append(classifier.head(f).cpu().double())
    return torch.cat(feats), torch.cat(logits)


def label_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of images (logits (N, K)) the classifier assigns to ``labels`` (N,)."""
    return float((logits.argmax(dim=1) == labels.to(logits.device)).double().mean())


def classifier_accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                        batch_size: int = 500) -> float:
    """Test accuracy of a classifier in eval mode on CPU images and labels."""
    _, logits = extract(classifier, images, batch_size)
    return label_accuracy(logits, labels)


def rotation_accuracy(classifier: nn.Module, images: torch.Tensor,
                      batch_size: int = 500) -> float:
    """Share of the four rotations of CPU images (N, C, S, S) a rotation judge names right."""
    right, total = 0, 0
    for chunk in images.split(batch_size):
        turns, k = rotated(chunk)
        _, logits = extract(classifier, turns, batch_size)
        right += int((logits.argmax(dim=1) == k).sum())
        total += k.numel()
    return right / total


def knn_radii(feats: torch.Tensor, k: int = PR_NEIGHBOURS, chunk: int = 1000) -> torch.Tensor:
    """Distance (N,) from each of ``feats`` (N, F) to its k-th nearest other point."""
    if feats.shape[0] <= k:
        raise GanError(f"precision/recall need more than {k} samples, got {feats.shape[0]}")
    feats = feats.float()
    # The (k+1)-th smallest distance, the first being the point itself; topk is ~10x faster
    # than kthvalue on the CPU.
    return torch.cat([mathops.cdist(part, feats).topk(k + 1, dim=1, largest=False).values[:, -1]
                      for part in feats.split(chunk)])
