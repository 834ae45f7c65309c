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

from gan import mathops
from gan.checkpoint import Trained
from gan.classifier import PR_NEIGHBOURS, extract, is_labelled, knn_radii, label_accuracy
from gan.errors import GanError
from gan.junk import JUNK_KINDS, junk_images
from gan.progress import progress
from gan.sample import fixed_latent, generate, grid_labels
from gan.sections.evaluate import EvaluateConfig
from gan.sections.model import ModelConfig

# KID's mean and std are over KID_SUBSETS random subsets of KID_SUBSET_SIZE samples (half the
# smaller set when that is fewer); torchmetrics' 100 subsets cost ~25 s per KID on 2 CPU cores.
KID_SUBSETS = 20
KID_SUBSET_SIZE = 1000
DC_NEIGHBOURS = 5  # k of Naeem et al. (2020), density and coverage
MIN_SAMPLES = PR_NEIGHBOURS + 1  # each point needs k others; evaluate.n_samples' minimum
# Density and coverage need DC_NEIGHBOURS others per real image: the test split's minimum.
MIN_TEST = DC_NEIGHBOURS + 1
# Below this many test images FID and KID are still far from their large-sample values (FID
# is biased by about 1/N, Chong & Forsyth 2020) and below 128 (the features' width) FID's
# covariance is singular; the scores are then only comparable on the same split.
RELIABLE_TEST_IMAGES = 1000
# A feature distance this small, relative to the training features' mean length, is the
# same image: float32 convolutions of one image in two batches differ by ~1e-7 of it.
SAME_IMAGE = 1e-4
# Training images behind copy_distance, the median distance between training neighbours.
COPY_SAMPLE = 2000
# Real training images that cover less than this share of the test split's 5-NN balls, no
# more than the samples do, mean a judge whose features do not tell image from image
# (Fashion-MNIST's real images cover 0.97).
REAL_COVERAGE_MIN = 0.5
# The scores junk is scored by, and whether more is better: junk at least as good as the
# real floor (real training images) under one is flagged flag_<score>_junk.
JUNK_SCORES = {"fid": False, "kid": False, "precision": True, "recall": True,
               "density": True, "coverage": True}


def check_test_split(n_test: int, where: Path) -> None:
    """Refuse a test split too small for the k-NN scores, naming its file."""
    if n_test < MIN_TEST:
        raise GanError(f"{where}: the test split holds {n_test} images; scoring needs at "
                       f"least {MIN_TEST}")


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
    # Imported where used, as kid's: torchmetrics' import brings torchvision's and
    # torch._dynamo's (seconds), which a stage that only extracts features need not pay.
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Given(real.shape[1]).eval())
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kid(real: torch.Tensor, fake: torch.Tensor, seed: int,
        subsets: int = KID_SUBSETS) -> tuple[float, float]:
    """Unbiased polynomial-kernel KID of feature sets: (mean, std) over random subsets."""
    # Subsets of a whole set would all be the same set, and their std zero.
    size = max(2, min(KID_SUBSET_SIZE, real.shape[0] // 2, fake.shape[0] // 2))
    from torchmetrics.image.kid import KernelInceptionDistance

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
    # softmax and log_softmax are ATen's own kernels; the marginal's K logs are
    # mathops.log's (exp and log of torch's reach MKL's vector math, gan/mathops.py)
    logits = logits.double()
    p, log_p = logits.softmax(dim=1), logits.log_softmax(dim=1)
    log_marginal = mathops.log(p.mean(dim=0))
    return math.exp(float((p * (log_p - log_marginal)).sum(dim=1).mean()))


def class_coverage(predicted: torch.Tensor, num_classes: int) -> float:
    """Share of classes that receive at least half their fair share (1/K) of the samples."""
    counts = torch.bincount(predicted, minlength=num_classes)
    # count >= n / (2K), in integers so that exactly half a share counts
    return float((counts * 2 * num_classes >= predicted.numel()).double().mean())


def class_kl(predicted: torch.Tensor, num_classes: int) -> float:
    """KL(sample class histogram || uniform) in nats: 0 when balanced, log K when collapsed."""
    share = torch.bincount(predicted, minlength=num_classes).double() / predicted.numel()
    return float(torch.special.xlogy(share, share * num_classes).sum())


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
        dist = mathops.cdist(part, real)  # (chunk, N_real)
        fake_inside.append((dist <= real_radii).any(dim=1))
        real_inside |= (dist <= radii[:, None]).any(dim=0)
    return float(torch.cat(fake_inside).double().mean()), float(real_inside.double().mean())


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = DC_NEIGHBOURS,
                     real_radii: torch.Tensor | None = None,
                     chunk: int = 1000) -> tuple[float, float]:
    """Naeem et al. (2020): density and coverage of fakes (M, F) against reals (N, F).

    Around each real point, a ball reaching its k-th nearest other real point. density: the
    mean number of balls a fake lies in, over k (about 1 when fakes are distributed as the
    reals, above 1 when they crowd where reals are dense, and not raised by fakes near a few
    outlying reals as precision is). coverage: the share of real balls holding at least one
    fake. ``real_radii`` (of ``knn_radii(real, k)``) may be reused.
    """
    real, fake = real.float(), fake.float()
    real_radii = knn_radii(real, k, chunk) if real_radii is None else real_radii
    inside_count = torch.zeros((), dtype=torch.float64)
    covered = torch.zeros(real.shape[0], dtype=torch.bool)
    for part in fake.split(chunk):
        inside = mathops.cdist(part, real) <= real_radii  # (chunk, N_real)
        inside_count += inside.sum(dtype=torch.float64)
        covered |= inside.any(dim=0)
    return float(inside_count / (k * fake.shape[0])), float(covered.double().mean())


def nearest(queries: torch.Tensor, feats: torch.Tensor,
            chunk: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance (M,), index (M,)) of each query's nearest point of ``feats`` (N, F)."""
    feats = feats.float()
    found = [mathops.cdist(part, feats).min(dim=1) for part in queries.float().split(chunk)]
    return torch.cat([f.values for f in found]), torch.cat([f.indices for f in found])


def nearest_other(feats: torch.Tensor, rows: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    """Distance (R,) from each point ``feats[rows]`` to its nearest other point of ``feats``."""
    feats = feats.float()
    out = []
    for part in rows.split(chunk):
        dist = mathops.cdist(feats[part], feats)
        dist[torch.arange(part.numel()), part] = float("inf")  # not the point itself
        out.append(dist.min(dim=1).values)
    return torch.cat(out) if out else torch.zeros(0)


def copy_distance(train_feats: torch.Tensor, chunk: int = 1000) -> float:
    """How near training images are to each other: the median distance from a training
    image to its nearest other one, over COPY_SAMPLE of them (a fixed draw)."""
    n = train_feats.shape[0]
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:COPY_SAMPLE]
    return float(nearest_other(train_feats, rows, chunk).median())


def copies(train_feats: torch.Tensor, feats: torch.Tensor,
           chunk: int = 1000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """For each of ``feats`` (M, F): whether it copies a training image (the test of
    ``memorised``), its distance to its nearest training image, and that image's index; and
    copy_distance, the bound every copy is nearer than."""
    distance, index = nearest(feats, train_feats, chunk)
    needed = index.unique()  # only these training images' own neighbours are needed
    radii = torch.full((train_feats.shape[0],), float("nan"))
    radii[needed] = nearest_other(train_feats, needed, chunk)
    # Nearer than the training image's own nearest other one (a lone training image's is
    # far: noise near a pale icon with no twin is not a copy of it), and nearer than
    # training images typically are to each other.
    bound = copy_distance(train_feats, chunk)
    # An exact copy is a copy even of a training image with a twin (radius 0), which no
    # image can be nearer than.
    same = distance <= SAME_IMAGE * float(train_feats.float().norm(dim=1).mean())
    return (distance < radii[index].clamp(max=bound)) | same, distance, index, bound


def memorised(train_feats: torch.Tensor, feats: torch.Tensor, chunk: int = 1000) -> float:
    """Share of ``feats`` (M, F) that copy a training image: closer to their nearest
    training image than that image is to its own nearest other training image, and than
    training images typically are to each other (copy_distance).

    The authenticity test of Alaa et al. (2022), each failure counted as a copy, with a
    bound calibrated on the training images themselves, and a feature-for-feature copy of a
    training image that has twins counted too. Real images no model saw (the test split)
    fail it too, for a share that depends on the data: that share is the floor.
    """
    if train_feats.shape[0] < 2:
        raise GanError(f"the memorisation check needs at least 2 training images, got "
                       f"{train_feats.shape[0]}")
    return float(copies(train_feats, feats, chunk)[0].double().mean())


def closest_pairs(classifier: nn.Module, images: torch.Tensor, train_images: torch.Tensor,
                  n: int, batch_size: int = 500) -> dict[str, torch.Tensor | int]:
    """The ``n`` of ``images`` closest to a training image in the judge's features, closest
    first: {"samples": their indices, "train": their nearest training images' indices,
    "distance": the distances, "copies": how many of all ``images`` count as copies,
    "bound": copy_distance, which each copy is nearer than}."""
    train_feats, _ = extract(classifier, train_images, batch_size)
    feats, _ = extract(classifier, images, batch_size)
    return pairs_of_features(train_feats, feats, n)


def pairs_of_features(train_feats: torch.Tensor, feats: torch.Tensor,
                      n: int) -> dict[str, torch.Tensor | int]:
    """``closest_pairs`` of the judge's features of the training images and of the images."""
    is_copy, distance, index, bound = copies(train_feats, feats)
    order = distance.argsort(stable=True)[:n]
    return {"samples": order, "train": index[order], "distance": distance[order],
            "copies": int(is_copy.sum()), "bound": bound}


def quality(real: torch.Tensor, fake: torch.Tensor, fake_logits: torch.Tensor, seed: int,
            real_radii: torch.Tensor | None = None, labelled: bool = True,
            dc_radii: torch.Tensor | None = None) -> dict[str, float]:
    """Every label-free score of fake features (N, F) and logits (N, K) against real
    features (M, F), and with ``labelled`` the class scores of the logits; ``real_radii``
    as for ``precision_recall``, ``dc_radii`` for ``density_coverage``."""
    precision, recall = precision_recall(real, fake, real_radii=real_radii)
    density, coverage = density_coverage(real, fake, real_radii=dc_radii)
    kid_mean, kid_std = kid(real, fake, seed)
    scores = {"fid": fid(real, fake), "kid": kid_mean, "kid_std": kid_std}
    if labelled:
        predicted = fake_logits.argmax(dim=1)
        classes = fake_logits.shape[1]
        scores.update(inception_score=inception_score(fake_logits),
                      class_coverage=class_coverage(predicted, classes),
                      class_kl=class_kl(predicted, classes))
    return {**scores, "precision": precision, "recall": recall, "density": density,
            "coverage": coverage}


def evaluate(trained: Trained, classifier: nn.Module, train_data: dict, test_data: dict,
             cfg: EvaluateConfig, show_progress: bool = False) -> dict[str, float]:
    """Scores of ``cfg.n_samples`` generated images against the real test split, and the
    same scores of as many real training images (the floor, keys ending in ``_real``)."""
    images, asked = seeded_samples(trained.generator, cfg.n_samples, trained.model,
                                   len(test_data["classes"]), cfg.seed, cfg.batch_size)
    return score_images(images, asked, classifier, train_data, test_data, cfg, show_progress)


def score_images(images: torch.Tensor, asked: torch.Tensor | None, classifier: nn.Module,
                 train_data: dict, test_data: dict, cfg: EvaluateConfig,
                 show_progress: bool = False) -> dict[str, float]:
    """evaluate's scores of CPU images (N, C, S, S) in [-1, 1] (generated, or read from a
    folder by gan-score), with the labels asked for (N,) of a conditional G or None; the
    floor is N real training images (N test images for ``memorised``). cfg.n_samples is
    not read: N is."""
    fake_feats, fake_logits = extract(classifier, images, cfg.batch_size)
    return score_features(fake_feats, fake_logits, asked, classifier, train_data, test_data,
                          cfg, show_progress)


def score_features(fake_feats: torch.Tensor, fake_logits: torch.Tensor,
                   asked: torch.Tensor | None, classifier: nn.Module, train_data: dict,
                   test_data: dict, cfg: EvaluateConfig,
                   show_progress: bool = False) -> dict[str, float]:
    """``score_images`` of the judge's features (N, F) and logits (N, K) of the images; with
    ``show_progress`` a bar (or lines) on stderr, one step per part scored."""
    labelled = is_labelled(test_data["classes"])
    n = fake_feats.shape[0]
    test_feats, _ = extract(classifier, test_data["images"], cfg.batch_size)
    # The test split's k-NN radii, shared by the samples', the floor's and the junk's scores.
    radii = {"real_radii": knn_radii(test_feats),
             "dc_radii": knn_radii(test_feats, DC_NEIGHBOURS)}
    pick = torch.randperm(train_data["images"].shape[0],
                          generator=torch.Generator().manual_seed(cfg.seed))[:n]
    scores: dict[str, float] = {}
    floor: dict[str, float] = {}
    junk: dict[str, float] = {}

    def samples() -> None:
        scores.update(quality(test_feats, fake_feats, fake_logits, cfg.seed,
                              labelled=labelled, **radii))
        if asked is not None and labelled:
            scores["label_accuracy"] = label_accuracy(fake_logits, asked)

    def real() -> None:
        real_feats, real_logits = extract(classifier, train_data["images"][pick],
                                          cfg.batch_size)
        floor.update(quality(test_feats, real_feats, real_logits, cfg.seed,
                             labelled=labelled, **radii))
        if asked is not None and labelled:
            floor["label_accuracy"] = label_accuracy(real_logits, train_data["labels"][pick])

    def copied() -> None:
        # Copies of training images, against every one of them; the floor here is the
        # share of as many test images (all of them when N is the split's size or more),
        # images no model saw: training images would all count as copies.
        train_feats, _ = extract(classifier, train_data["images"], cfg.batch_size)
        scores["memorised"] = memorised(train_feats, fake_feats)
        unseen = torch.randperm(test_feats.shape[0],
                                generator=torch.Generator().manual_seed(cfg.seed))[:n]
        floor["memorised"] = memorised(train_feats, test_feats[unseen])

    def junk_of(kind: str) -> Callable[[], None]:
        return lambda: junk.update(junk_scores(classifier, train_data["images"][pick],
                                               test_feats, cfg, kinds=(kind,), **radii))

    parts = [samples, real, copied, *(junk_of(kind) for kind in JUNK_KINDS)]
    for part in progress(parts, desc="scoring", unit="part", total=len(parts),
                         enabled=show_progress):
        part()
    return {"n_samples": n, **scores,
            **{f"{name}_real": value for name, value in floor.items()}, **junk}


def junk_scores(classifier: nn.Module, real: torch.Tensor, test_feats: torch.Tensor,
                cfg: EvaluateConfig, real_radii: torch.Tensor, dc_radii: torch.Tensor,
                kinds: tuple[str, ...] = JUNK_KINDS) -> dict[str, float]:
    """{<score>_junk_<kind>: value} of JUNK_SCORES for each of ``kinds``, as many junk
    images as ``real`` (the floor's real training images, which blurred and shuffled are
    made of: the test images, blurred, would be scored against themselves), seeded by
    cfg.seed, against the test features."""
    out = {}
    for kind in kinds:
        feats, _ = extract(classifier, junk_images(real, kind, cfg.seed), cfg.batch_size)
        precision, recall = precision_recall(test_feats, feats, real_radii=real_radii)
        density, coverage = density_coverage(test_feats, feats, real_radii=dc_radii)
        values = {"fid": fid(test_feats, feats), "kid": kid(test_feats, feats, cfg.seed)[0],
                  "precision": precision, "recall": recall, "density": density,
                  "coverage": coverage}
        out.update({f"{name}_junk_{kind}": values[name] for name in JUNK_SCORES})
    return out


def junk_checks(scores: dict[str, float]) -> dict[str, str]:
    """{flag_<score>_junk: one-line reason} for each of JUNK_SCORES under which some junk
    scores as well as the real training images (the floor) or better: that score cannot
    tell junk from images here, so it says nothing of a generator."""
    flags = {}
    for name, higher_is_better in JUNK_SCORES.items():
        real = scores.get(f"{name}_real")
        if real is None:
            continue
        fooled = {kind: scores[f"{name}_junk_{kind}"] for kind in JUNK_KINDS
                  if f"{name}_junk_{kind}" in scores
                  and (scores[f"{name}_junk_{kind}"] >= real if higher_is_better
                       else scores[f"{name}_junk_{kind}"] <= real)}
        if fooled:
            said = ", ".join(f"{kind} {value:.4g}" for kind, value in fooled.items())
            flags[f"flag_{name}_junk"] = (
                f"{name}: junk scores as well as real training images ({said}; real "
                f"{real:.4g}): {name} cannot tell junk from images under this judge, so it "
                f"says nothing of the generator")
    return flags


def judge_checks(scores: dict[str, float], judge_cfg: dict) -> dict[str, str]:
    """{flag: one-line reason} for readings no generator can cause, which mean that the judge
    cannot separate these images, and for scores that junk fools (junk_checks): eval.json
    and gan-score write each flag as 1."""
    flags = {}
    if judge_cfg.get("at_chance"):
        flags["flag_judge_at_chance"] = (
            "classifier.allow_weak: the judge was no better than chance on the test split; "
            "every score here is noise")
    if judge_cfg.get("still_learning"):
        flags["flag_judge_still_learning"] = (
            "classifier.allow_weak: the judge was still learning at its last update; every "
            "score here flatters the generator")
    if judge_cfg.get("blind_to_junk"):
        flags["flag_judge_blind_to_junk"] = (
            "classifier.allow_weak: the judge could not tell noise from real images; "
            "every score here may flatter junk")
    if scores["fid"] < scores["fid_real"]:
        flags["flag_fid_below_real"] = (
            f"FID {scores['fid']:.2f} is below the real training images' "
            f"{scores['fid_real']:.2f}: the judge cannot separate these images from real ones "
            f"(a judge that sees nothing, or copies of real images), so FID says nothing of a "
            f"generator")
    if scores["coverage_real"] < REAL_COVERAGE_MIN and scores["coverage"] >= scores[
            "coverage_real"]:
        flags["flag_real_coverage_low"] = (
            f"real training images cover {scores['coverage_real']:.3f} of the test split, no "
            f"more than the samples' {scores['coverage']:.3f}: the judge cannot separate these "
            f"images")
    if scores.get("class_coverage_real", 1.0) < 1.0:  # absent without classes
        flags["flag_real_class_coverage_low"] = (
            f"class_coverage of real training images is {scores['class_coverage_real']:.2f}: "
            f"the judge cannot separate these classes (or they are very unequal), so the "
            f"class scores say nothing of the generator")
    return {**flags, **junk_checks(scores)}


def collapse_warning(scores: dict[str, float]) -> str | None:
    """A one-line warning when the samples' class coverage is below the real images' own
    (absent without classes); as low for real images, it is the judge's, not the generator's
    (judge_checks says so)."""
    if scores.get("class_coverage", 1.0) >= min(1.0, scores.get("class_coverage_real", 1.0)):
        return None
    return (f"warning: class_coverage {scores['class_coverage']:.2f}: some classes get less "
            f"than half their fair share of samples; the generator may be mode-collapsing")


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
