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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gan.config import ClassifierConfig, to_record
from gan.data import DeviceBatches
from gan.errors import GanError
from gan.io import read_torch
from gan.runtime import seed_everything, select_device

# The version of models/classifier.pt's layout; a file of another version is refused.
CLASSIFIER_FORMAT = 1
NUM_FEATURES = 128  # width of the penultimate layer: the feature space of FID, KID, P/R
ROTATION = "rotation"  # the judge's task without labels; "task" in its checkpoint's config
ROTATIONS = 4  # its classes: turned by 0, 90, 180 or 270 degrees
# A judge must beat chance by more than this, or by more than two standard errors of a
# guesser's accuracy on the test split (sqrt(c (1 - c) / n)) where that is larger: a pure
# guesser passes that line about 1 time in 40. 5 points is far below what a judge that
# learned gains (Fashion-MNIST's: 91.6 % against 10 %) and above the 1 point by which a
# rotation judge of all-black squares beat its 25 % (26 %).
CHANCE_MARGIN = 0.05


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


def at_chance_error(result: ClassifierResult) -> GanError:
    """The one line the classifier stage stops with for a judge at chance."""
    return GanError(f"classifier: {result.score_name.replace('_', ' ')} "
                    f"{result.test_accuracy:.1%} is within {result.margin:.1%} of chance "
                    f"({result.chance:.1%}): the judge cannot tell these images apart, so "
                    f"every score it gave would be noise; try more images, more "
                    f"classifier.epochs, or other data (classifier.allow_chance: true goes on, "
                    f"each score marked)")


@dataclass
class ClassifierResult:
    classifier: Classifier
    checkpoint: dict[str, Any]
    test_accuracy: float  # on the test split: of the labels, or of the rotations
    score_name: str = "test_accuracy"  # its name: test_accuracy or rotation_accuracy
    chance: float = 0.0  # the accuracy of a judge that learned nothing
    margin: float = 0.0  # how far above it a judge must be (chance_margin)
    at_chance: bool = False  # not that far: the classifier stage stops unless allow_chance


def train_classifier(cfg: ClassifierConfig, train_data: dict, test_data: dict,
                     on_epoch: Callable[[int, float], None] | None = None) -> ClassifierResult:
    """Fit the judge on a prepared train split; ``on_epoch(epoch, test_accuracy)``.

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
    steps = cfg.epochs * batches.per_epoch
    # ATen's fused kernel: fastest, and its square root is ATen's own, where the plain
    # implementations' reaches MKL's vector math, other bits per CPU vendor (gan/mathops.py)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr,
                                 fused=device.type in ("cpu", "cuda"))
    # One-cycle: a short warm-up then annealing to ~0 is what lets two epochs reach ~92%.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=steps,
                                                   pct_start=0.15)
    accuracy = float("nan")
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for _ in range(batches.per_epoch):
            x, y = batches.next()
            if not labelled:
                x, y = rotated(x)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        accuracy = (classifier_accuracy(model, test_data["images"], test_data["labels"],
                                        cfg.batch_size) if labelled else
                    rotation_accuracy(model, test_data["images"], cfg.batch_size))
        if on_epoch is not None:
            on_epoch(epoch, accuracy)
    model.cpu()
    name = "test_accuracy" if labelled else "rotation_accuracy"
    guess = chance(test_data["labels"], labelled)
    # each rotation of each test image is an answer
    answers = test_data["labels"].numel() * (1 if labelled else ROTATIONS)
    at_chance = is_at_chance(accuracy, guess, answers)
    config = {"classifier": to_record(cfg), "image_shape": list(image_shape),
              "classes": list(train_data["classes"])}
    # Each only when so, so that a labelled judge's file stays byte for byte as before.
    if not labelled:
        config["task"] = ROTATION
    if at_chance:  # read by evaluate and gan-score, which mark every score
        config["at_chance"] = True
    checkpoint = {
        "format": CLASSIFIER_FORMAT,
        "config": config,
        "classifier": {k: v.detach().clone() for k, v in model.state_dict().items()},
        name: accuracy,
    }
    return ClassifierResult(model, checkpoint, accuracy, name, guess,
                            chance_margin(guess, answers), at_chance)


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
