"""Sample quality in a small classifier's feature space: FID, KID, IS, coverage, precision/recall.

Inception-based scores download ImageNet weights at run time and suit 28 px grayscale
poorly; here the small CNN of gan.classifier, trained on the real training split, is the
feature extractor (its penultimate layer) and the label oracle (its softmax), so every
number is offline. Data of one class gets the rotation judge (gan.classifier), whose softmax
says nothing of classes: the class scores (inception score, class coverage and KL, label
accuracy) are then left out, never written as a meaningless 1.0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from gan.checkpoint import Trained
from gan.classifier import extract, is_labelled, label_accuracy
from gan.config import EvaluateConfig, ModelConfig
from gan.errors import GanError
from gan.sample import fixed_latent, generate, grid_labels

# KID's mean and std are over KID_SUBSETS random subsets of KID_SUBSET_SIZE samples (half the
# smaller set when that is fewer); torchmetrics' 100 subsets cost ~25 s per KID on 2 CPU cores.
KID_SUBSETS = 20
KID_SUBSET_SIZE = 1000
PR_NEIGHBOURS = 3  # k of Kynkäänniemi et al. (2019)
MIN_SAMPLES = PR_NEIGHBOURS + 1  # each point needs k others; evaluate.n_samples' minimum
# Below this many test images FID and KID are still far from their large-sample values (FID
# is biased by about 1/N, Chong & Forsyth 2020) and below 128 (the features' width) FID's
# covariance is singular; the scores are then only comparable on the same split.
RELIABLE_TEST_IMAGES = 1000


def check_test_split(n_test: int, where: Path) -> None:
    """Refuse a test split too small for the k-NN scores, naming its file."""
    if n_test < MIN_SAMPLES:
        raise GanError(f"{where}: the test split holds {n_test} images; scoring needs at "
                       f"least {MIN_SAMPLES}")


def small_split_warning(n_test: int) -> str | None:
    """A one-line warning when the test split is too small to score against, else None."""
    if n_test >= RELIABLE_TEST_IMAGES:
        return None
    return (f"warning: the test split holds {n_test} images; FID, KID, precision and recall "
            f"from fewer than {RELIABLE_TEST_IMAGES} are biased and noisy: compare them only "
            f"with scores on the same split")


def seeded_samples(generator: nn.Module, n: int, model: ModelConfig, num_classes: int, seed: int,
                   batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images (n, C, H, W) on the CPU, the labels asked for (n,) or None), seeded."""
    z = fixed_latent(n, model.latent_dim, seed, model.noise)
    # Balanced requests, so a conditional G's class histogram should be flat.
    labels = grid_labels(n, num_classes, model.conditional)
    return generate(generator, z, labels, batch_size), labels


class _Given(nn.Identity):
    """Feature module for torchmetrics when features are extracted once and shared."""

    def __init__(self, num_features: int):
        super().__init__()
        # Without num_features torchmetrics probes the module with a 3x299x299 dummy image.
        self.num_features = num_features


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance of two feature sets (N, F) and (M, F), in float64."""
    metric = FrechetInceptionDistance(feature=_Given(real.shape[1]).eval())
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kid(real: torch.Tensor, fake: torch.Tensor, seed: int,
        subsets: int = KID_SUBSETS) -> tuple[float, float]:
    """Unbiased polynomial-kernel KID of feature sets: (mean, std) over random subsets."""
    # Subsets of a whole set would all be the same set, and their std zero.
    size = max(2, min(KID_SUBSET_SIZE, real.shape[0] // 2, fake.shape[0] // 2))
    with warnings.catch_warnings():  # "will save all extracted features in buffer": we know
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Given(real.shape[1]).eval(),
                                         subsets=subsets, subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    # torchmetrics draws its subsets from the global generator: seed it, then restore it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def inception_score(logits: torch.Tensor) -> float:
    """exp(E_x[KL(p(y|x) || p(y))]) of class logits (N, K); 1 (none) to K (sharp, balanced)."""
    # Over the whole set: torchmetrics' InceptionScore averages 10 random splits instead and
    # returns a NaN std for one split.
    log_p = logits.double().log_softmax(dim=1)
    log_marginal = log_p.exp().mean(dim=0).log()
    return math.exp(float((log_p.exp() * (log_p - log_marginal)).sum(dim=1).mean()))


def class_coverage(predicted: torch.Tensor, num_classes: int) -> float:
    """Share of classes that receive at least half their fair share (1/K) of the samples."""
    counts = torch.bincount(predicted, minlength=num_classes)
    # count >= n / (2K), in integers so that exactly half a share counts
    return float((counts * 2 * num_classes >= predicted.numel()).double().mean())


def class_kl(predicted: torch.Tensor, num_classes: int) -> float:
    """KL(sample class histogram || uniform) in nats: 0 when balanced, log K when collapsed."""
    share = torch.bincount(predicted, minlength=num_classes).double() / predicted.numel()
    return float(torch.special.xlogy(share, share * num_classes).sum())


def knn_radii(feats: torch.Tensor, k: int = PR_NEIGHBOURS, chunk: int = 1000) -> torch.Tensor:
    """Distance (N,) from each of ``feats`` (N, F) to its k-th nearest other point."""
    if feats.shape[0] <= k:
        raise GanError(f"precision/recall need more than {k} samples, got {feats.shape[0]}")
    feats = feats.float()
    # The (k+1)-th smallest distance, the first being the point itself; topk is ~10x faster
    # than kthvalue on the CPU.
    return torch.cat([torch.cdist(part, feats).topk(k + 1, dim=1, largest=False).values[:, -1]
                      for part in feats.split(chunk)])


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_NEIGHBOURS,
                     real_radii: torch.Tensor | None = None,
                     chunk: int = 1000) -> tuple[float, float]:
    """Kynkäänniemi et al. (2019): share of fakes inside the real manifold, and vice versa.

    A set's manifold is the union of balls around its points reaching each point's k-th
    nearest neighbour in the set. ``real_radii`` (of ``knn_radii(real, k)``) may be reused.
    """
    real, fake = real.float(), fake.float()
    real_radii = knn_radii(real, k, chunk) if real_radii is None else real_radii
    fake_radii = knn_radii(fake, k, chunk)
    fake_inside, real_inside = [], torch.zeros(real.shape[0], dtype=torch.bool)
    # One pass over the fake-real distances serves both directions.
    for part, radii in zip(fake.split(chunk), fake_radii.split(chunk), strict=True):
        dist = torch.cdist(part, real)  # (chunk, N_real)
        fake_inside.append((dist <= real_radii).any(dim=1))
        real_inside |= (dist <= radii[:, None]).any(dim=0)
    return float(torch.cat(fake_inside).double().mean()), float(real_inside.double().mean())


def quality(real: torch.Tensor, fake: torch.Tensor, fake_logits: torch.Tensor, seed: int,
            real_radii: torch.Tensor | None = None, labelled: bool = True) -> dict[str, float]:
    """Every label-free score of fake features (N, F) and logits (N, K) against real
    features (M, F), and with ``labelled`` the class scores of the logits; ``real_radii``
    as for ``precision_recall``."""
    precision, recall = precision_recall(real, fake, real_radii=real_radii)
    kid_mean, kid_std = kid(real, fake, seed)
    scores = {"fid": fid(real, fake), "kid": kid_mean, "kid_std": kid_std}
    if labelled:
        predicted = fake_logits.argmax(dim=1)
        classes = fake_logits.shape[1]
        scores.update(inception_score=inception_score(fake_logits),
                      class_coverage=class_coverage(predicted, classes),
                      class_kl=class_kl(predicted, classes))
    return {**scores, "precision": precision, "recall": recall}


def evaluate(trained: Trained, classifier: nn.Module, train_data: dict, test_data: dict,
             cfg: EvaluateConfig) -> dict[str, float]:
    """Scores of ``cfg.n_samples`` generated images against the real test split, and the
    same scores of as many real training images (the floor, keys ending in ``_real``)."""
    images, asked = seeded_samples(trained.generator, cfg.n_samples, trained.model,
                                   len(test_data["classes"]), cfg.seed, cfg.batch_size)
    return score_images(images, asked, classifier, train_data, test_data, cfg)


def score_images(images: torch.Tensor, asked: torch.Tensor | None, classifier: nn.Module,
                 train_data: dict, test_data: dict, cfg: EvaluateConfig) -> dict[str, float]:
    """evaluate's scores of CPU images (N, C, S, S) in [-1, 1] (generated, or read from a
    folder by gan-score), with the labels asked for (N,) of a conditional G or None; the
    floor is N real training images. cfg.n_samples is not read: N is."""
    labelled = is_labelled(test_data["classes"])
    test_feats, _ = extract(classifier, test_data["images"], cfg.batch_size)
    test_radii = knn_radii(test_feats)  # shared by the samples' and the floor's P/R

    fake_feats, fake_logits = extract(classifier, images, cfg.batch_size)
    scores = quality(test_feats, fake_feats, fake_logits, cfg.seed, test_radii, labelled)

    pick = torch.randperm(train_data["images"].shape[0],
                          generator=torch.Generator().manual_seed(cfg.seed))[:images.shape[0]]
    real_feats, real_logits = extract(classifier, train_data["images"][pick], cfg.batch_size)
    floor = quality(test_feats, real_feats, real_logits, cfg.seed, test_radii, labelled)
    if asked is not None and labelled:
        scores["label_accuracy"] = label_accuracy(fake_logits, asked)
        floor["label_accuracy"] = label_accuracy(real_logits, train_data["labels"][pick])
    return {"n_samples": images.shape[0], **scores,
            **{f"{name}_real": value for name, value in floor.items()}}


def training_fid(classifier: nn.Module, real_images: torch.Tensor, n_samples: int,
                 model_cfg: ModelConfig, num_classes: int, seed: int,
                 batch_size: int = 500) -> Callable[[nn.Module], float]:
    """A function generator -> FID of ``n_samples`` fixed-latent samples against
    ``real_images``, for a cheap curve during training (real features computed once)."""
    real: list[torch.Tensor] = []

    def score(generator: nn.Module) -> float:
        classifier.to(next(generator.parameters()).device)
        if not real:
            real.append(extract(classifier, real_images, batch_size)[0])
        # The same latents every time, so the curve moves only with the generator.
        images, _ = seeded_samples(generator, n_samples, model_cfg, num_classes, seed,
                                   batch_size)
        return fid(real[0], extract(classifier, images, batch_size)[0])

    return score
