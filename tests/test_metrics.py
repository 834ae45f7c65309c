"""Metrics that mean something: FID orders noise levels, collapse shows, P/R by hand."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch import nn

from gan import classifier as clf
from gan import data, metrics
from gan.checkpoint import Trained, save_checkpoint
from gan.config import ClassifierConfig, EvaluateConfig, ModelConfig

from conftest import FASHION_MIRROR, ROOT, run_stage, tiny_split

needs_fashion = pytest.mark.skipif(
    not FASHION_MIRROR.is_dir(),
    reason=f"real Fashion-MNIST is not at {FASHION_MIRROR} (Debian's dataset-fashion-mnist)")


# --- hand-checkable cases -----------------------------------------------------------------

def points(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)[:, None]  # (N, 1) features on a line


def test_precision_recall_by_hand_k1():
    # Real radii (nearest other point): 1, 1, 1, 1, 7. Fakes 0.5 and 2.5 lie inside, 20 and
    # 25 (10 and 15 from the point 10) do not: precision 2/4. Fake radii: 2, 2, 5, 5; every
    # real point but 10 lies within 2 of 0.5 or 2.5: recall 4/5.
    real, fake = points(0, 1, 2, 3, 10), points(0.5, 2.5, 20, 25)
    assert metrics.precision_recall(real, fake, k=1) == (0.5, 0.8)


def test_precision_recall_by_hand_default_k3():
    # Third-nearest radii of 0..4: 3, 2, 2, 2, 3, so the real manifold is [-3, 7]; of the
    # fakes, 6.5 and -2.9 lie inside it, 7.5 and -3.1 do not. Each fake's radius reaches
    # the farthest other fake (>= 9.4), covering every real point.
    real, fake = points(0, 1, 2, 3, 4), points(6.5, 7.5, -2.9, -3.1)
    assert metrics.precision_recall(real, fake) == (0.5, 1.0)


def test_density_and_coverage_by_hand_k1():
    # Real radii (nearest other point): 1, 1, 1, 1, 7. Fake 0.5 lies in the balls of 0 and
    # 1, 3.5 in those of 3 and 10 (which reaches 3), 20 in none: density 4 / 3. Covered:
    # 0, 1, 3 and 10, not 2 (1.5 from either fake): coverage 4 / 5.
    real, fake = points(0, 1, 2, 3, 10), points(0.5, 3.5, 20)
    density, coverage = metrics.density_coverage(real, fake, k=1)
    assert density == pytest.approx(4 / 3) and coverage == 0.8
    assert metrics.density_coverage(real, points(20, 30), k=1) == (0.0, 0.0)


def direct_density_coverage(real, fake, k):
    """Naeem et al.'s definitions, point by point."""
    radii = [sorted(float((a - b).norm()) for b in real)[k] for a in real]
    inside = [[float((y - x).norm()) <= r for x, r in zip(real, radii, strict=True)] for y in fake]
    density = sum(map(sum, inside)) / (k * len(fake))
    coverage = sum(any(row[i] for row in inside) for i in range(len(real))) / len(real)
    return density, coverage


def test_density_and_coverage_match_a_direct_computation():
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(60, 4, generator=gen), torch.randn(40, 4, generator=gen) + 0.3
    got = metrics.density_coverage(real, fake, chunk=7)
    assert got == pytest.approx(direct_density_coverage(real, fake, metrics.DC_NEIGHBOURS))


def test_density_and_coverage_of_same_sets_and_of_one_repeated_sample():
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(2000, 8, generator=gen)
    # Identical sets: each point lies in its own ball and in those of the k points that
    # have it among their k nearest, so density is (k + 1) / k, coverage 1 (a k-th
    # neighbour lies on its ball's edge, where float rounding may leave it out).
    k = metrics.DC_NEIGHBOURS
    assert metrics.density_coverage(real, real) == (pytest.approx((k + 1) / k, rel=0.01), 1.0)
    # A second sample of the same distribution: density near 1, coverage near 1.
    density, coverage = metrics.density_coverage(real, torch.randn(2000, 8, generator=gen))
    assert 0.85 < density < 1.15 and coverage > 0.9
    # One image repeated: it covers only the few balls it lies in.
    density, coverage = metrics.density_coverage(real, real[:1].repeat(500, 1))
    assert coverage < 0.01
    # Precision is fooled by fakes at a few outlying reals; density is not.
    far = real[real.norm(dim=1).argsort()[-20:]]
    fakes = far.repeat(25, 1) + 0.01 * torch.randn(500, 8, generator=gen)
    precision, _ = metrics.precision_recall(real, fakes)
    density, _ = metrics.density_coverage(real, fakes)
    assert precision > 0.9 and density < 0.5


def test_memorised_counts_samples_closer_than_their_training_image_s_neighbour():
    # Training radii (nearest other): 0 -> 1, 1 -> 1, 5 -> 4; their median, how near
    # training images are to each other, 1. 0.2 is 0.2 from 0 (< 1): a copy; 3.5 is 1.5
    # from 5, nearer than 5's own neighbour (4) but not than the median: not; 2.9 is 1.9
    # from 1 (> 1): not; 9.5 is 4.5 from 5 (> 4): not.
    train = points(0, 1, 5)
    assert metrics.copy_distance(train) == 1.0
    assert metrics.memorised(train, points(0.2, 3.5, 2.9, 9.5)) == 0.25
    assert metrics.memorised(train, train) == 1.0


def test_memorised_matches_a_direct_computation_and_sits_at_its_floor_for_new_data():
    gen = torch.Generator().manual_seed(2)
    train = torch.randn(500, 6, generator=gen)
    fresh = torch.randn(300, 6, generator=gen)
    dist = torch.cdist(train, train) + torch.diag(torch.full((500,), float("inf")))
    radii = dist.min(dim=1).values
    to_train = torch.cdist(fresh, train)
    nearest = to_train.argmin(dim=1)
    bound = radii.median()  # every training image's radius: 500 are under COPY_SAMPLE
    direct = float((to_train.min(dim=1).values < radii[nearest].clamp(max=bound))
                   .double().mean())
    assert metrics.memorised(train, fresh, chunk=64) == pytest.approx(direct)
    # Unseen samples of the training distribution stay far below the copies' 1.
    assert 0.2 < direct < 0.7
    copies = train[:300] + 1e-4 * torch.randn(300, 6, generator=gen)
    assert metrics.memorised(train, copies) == 1.0


def test_inception_score_of_uniform_and_of_sharp_balanced_predictions():
    assert metrics.inception_score(torch.zeros(100, 10)) == pytest.approx(1.0, abs=1e-12)
    sharp = 50.0 * torch.eye(10).repeat(10, 1)  # confident, every class equally often
    assert metrics.inception_score(sharp) == pytest.approx(10.0, rel=1e-6)
    one_class = 50.0 * torch.eye(10)[[3] * 100]  # confident but collapsed
    assert metrics.inception_score(one_class) == pytest.approx(1.0, abs=1e-6)


def test_class_coverage_and_kl():
    balanced = torch.arange(100) % 10
    assert metrics.class_coverage(balanced, 10) == 1.0
    assert metrics.class_kl(balanced, 10) == pytest.approx(0.0, abs=1e-12)
    collapsed = torch.full((100,), 7)
    assert metrics.class_coverage(collapsed, 10) == pytest.approx(0.1)
    assert metrics.class_kl(collapsed, 10) == pytest.approx(math.log(10))
    # Class 9 gets 4 of 100 samples (< half of 10), class 8 gets 5 (exactly half), 0 gets 11.
    counts = [11, 10, 10, 10, 10, 10, 10, 10, 5, 4]
    skewed = torch.repeat_interleave(torch.arange(10), torch.tensor(counts))
    assert metrics.class_coverage(skewed, 10) == pytest.approx(0.9)


def test_fid_and_kid_of_identical_and_shifted_gaussians():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 4, generator=gen, dtype=torch.float64)
    assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, means 2 apart along one axis: FID = |mu_a - mu_b|^2 = 4.
    assert metrics.fid(a, a + torch.tensor([2.0, 0, 0, 0], dtype=torch.float64)) \
        == pytest.approx(4.0, abs=1e-6)
    b = torch.randn(2000, 4, generator=gen, dtype=torch.float64)
    same, shifted = metrics.kid(a, b, 0, subsets=5), metrics.kid(a, b + 1.0, 0, subsets=5)
    assert abs(same[0]) < 0.01 < shifted[0] and same[1] >= 0
    assert metrics.kid(a, b + 1.0, 0, subsets=5) == shifted  # seeded subsets


# --- the classifier -------------------------------------------------------------------------

def test_classifier_training_is_seeded_and_round_trips(tmp_path):
    split = tiny_split(n=64)
    cfg = ClassifierConfig(epochs=2, min_steps=1, batch_size=16, lr=1e-3, width=4, seed=3)
    first = clf.train_classifier(cfg, split, split)
    second = clf.train_classifier(cfg, split, split)
    for name, value in first.checkpoint["classifier"].items():
        torch.testing.assert_close(value, second.checkpoint["classifier"][name])
    save_checkpoint(first.checkpoint, tmp_path / "c.pt")
    loaded, config = clf.load_classifier(tmp_path / "c.pt")
    assert config["image_shape"] == [1, 28, 28] and not loaded.training
    feats, logits = clf.extract(loaded, split["images"])
    assert feats.shape == (64, clf.NUM_FEATURES) and logits.shape == (64, 10)
    torch.testing.assert_close(logits, clf.extract(first.classifier.eval(),
                                                       split["images"])[1])


def stand_in(generator: nn.Module, latent_dim: int, conditional: bool) -> Trained:
    """A stand-in generator as evaluate receives a trained one."""
    model = ModelConfig(arch="mlp", latent_dim=latent_dim, g_channels=1, d_channels=1,
                        conditional=conditional)
    return Trained(generator, model, (1, 28, 28), [str(i) for i in range(10)])


class RealImages(nn.Module):
    """A stand-in generator: each latent picks one of ``images`` (plus optional noise)."""

    def __init__(self, images: torch.Tensor, noise: float = 0.0):
        super().__init__()
        self.register_buffer("images", images)
        self.noise = noise
        self.anchor = nn.Parameter(torch.zeros(()))  # so callers can find its device

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        pick = (z[:, 0].abs() * 1e6).long() % self.images.shape[0]
        out = self.images[pick]
        if self.noise:
            out = out + self.noise * z[:, 1:2, None, None]  # (B, 1, 1, 1): a per-image shift
        return out.clamp(-1, 1)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """Real Fashion-MNIST subsets and a classifier trained on 6000 of its images."""
    if not FASHION_MIRROR.is_dir():
        pytest.skip(f"real Fashion-MNIST is not at {FASHION_MIRROR}")
    raw = tmp_path_factory.mktemp("raw")
    data.download("fashion_mnist", raw / "fashion", str(FASHION_MIRROR))
    splits = data.load_raw("fashion_mnist", raw / "fashion")
    classes = list(data.dataset_spec("fashion_mnist").classes)

    def take(split: str, n: int) -> dict:
        images, labels = splits[split]
        return {"images": data.to_unit_range(images[:n], 28),
                "labels": torch.from_numpy(labels[:n]), "classes": classes}

    train, test = take("train", 8000), take("test", 2000)
    cfg = ClassifierConfig(epochs=2, min_steps=1, batch_size=100, lr=3e-3, width=8, seed=0)
    head = {k: v[:6000] if k != "classes" else v for k, v in train.items()}
    classifier = clf.train_classifier(cfg, head, test).classifier.eval()
    return classifier, train, test


def fid_to_test(fashion, images: torch.Tensor) -> float:
    classifier, _, test = fashion
    real, _ = clf.extract(classifier, test["images"])
    return metrics.fid(real, clf.extract(classifier, images)[0])


@needs_fashion
def test_classifier_learns_real_fashion(fashion):
    classifier, _, test = fashion
    assert clf.classifier_accuracy(classifier, test["images"], test["labels"]) > 0.75


@needs_fashion
def test_fid_orders_real_light_noise_heavy_noise_and_pure_noise(fashion):
    _, train, _ = fashion
    real = train["images"][-2000:]  # not seen by the classifier, as the test split
    gen = torch.Generator().manual_seed(1)

    def noised(sigma: float) -> torch.Tensor:
        return (real + sigma * torch.randn(real.shape, generator=gen)).clamp(-1, 1)

    # Noise of std 0.2 (a tenth of the pixel range) is light; 0.5 is heavy.
    fids = [fid_to_test(fashion, x) for x in
            (real, noised(0.2), noised(0.5), torch.rand(real.shape, generator=gen) * 2 - 1)]
    assert 3 * fids[0] < fids[1] and 3 * fids[1] < fids[2] < fids[3], fids


@needs_fashion
def test_memorised_tells_training_images_from_unseen_ones(fashion):
    classifier, train, test = fashion
    train_feats, _ = clf.extract(classifier, train["images"])
    test_feats, _ = clf.extract(classifier, test["images"])
    assert metrics.memorised(train_feats, train_feats[:2000]) > 0.95
    assert metrics.memorised(train_feats, test_feats) < 0.65


@needs_fashion
def test_single_class_generator_is_caught_and_seeds_agree(fashion):
    classifier, train, test = fashion
    cfg = EvaluateConfig(n_samples=1000, seed=0)
    bags = train["images"][train["labels"] == 8]  # class 8: "Bag"
    collapsed = metrics.evaluate(stand_in(RealImages(bags), 4, False), classifier, train, test,
                                 cfg)
    assert collapsed["class_coverage"] == pytest.approx(0.1)
    assert collapsed["class_kl"] > 1.5  # log 10 = 2.3 when perfectly collapsed
    assert collapsed["recall"] < 0.3 < collapsed["recall_real"]
    assert collapsed["fid"] > 10 * collapsed["fid_real"]

    faithful = RealImages(train["images"], noise=0.2)
    runs = [metrics.evaluate(stand_in(faithful, 4, False), classifier, train, test,
                             EvaluateConfig(n_samples=1000, seed=seed)) for seed in (0, 1)]
    assert runs[0]["class_coverage"] == 1.0
    # Seeds move FID by far less than the gap between the floor and a collapsed generator.
    gap = collapsed["fid"] - runs[0]["fid_real"]
    assert abs(runs[0]["fid"] - runs[1]["fid"]) < 0.05 * gap
    assert abs(runs[0]["fid_real"] - runs[1]["fid_real"]) < 0.05 * gap
    assert abs(runs[0]["recall"] - runs[1]["recall"]) < 0.05


def test_conditional_generators_get_label_accuracy():
    split = tiny_split(n=40)
    classifier = clf.train_classifier(
        ClassifierConfig(epochs=1, min_steps=1, batch_size=8, lr=1e-3, width=4, seed=0),
        split, split
    ).classifier.eval()

    class AskedFor(nn.Module):  # returns the training image of the class asked for
        def __init__(self):
            super().__init__()
            self.anchor = nn.Parameter(torch.zeros(()))

        def forward(self, z, labels):
            return split["images"][labels]  # labels 0..9 are images 0..9

    out = metrics.evaluate(stand_in(AskedFor(), 2, True), classifier, split, split,
                           EvaluateConfig(n_samples=20, seed=0))
    predicted = clf.extract(classifier, split["images"][:10])[1].argmax(1)
    assert out["label_accuracy"] == pytest.approx(float((predicted == torch.arange(10))
                                                        .double().mean()))
    # The floor: the classifier on the 20 real training images evaluate picks with its seed.
    pick = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:20]
    real_predicted = clf.extract(classifier, split["images"][pick])[1].argmax(1)
    assert out["label_accuracy_real"] == pytest.approx(
        float((real_predicted == split["labels"][pick]).double().mean()))
    assert out["n_samples"] == 20


# --- the stages ------------------------------------------------------------------------------

def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.integration
def test_evaluate_stage_names_a_missing_classifier(tmp_path):
    out = tmp_path / "eval.json"
    proc = run_stage("evaluate", "--params", str(ROOT / "params.yaml"), "--checkpoint",
                     str(tmp_path / "gan.pt"), "--classifier", str(tmp_path / "nothere.pt"),
                     "--data", str(tmp_path), "--out", str(out))
    assert_one_line_error(proc, "nothere.pt", "classifier not found", "dvc repro classifier")
    assert not out.exists()


@pytest.mark.integration
def test_classifier_and_train_stages_with_fid_during_training(tmp_path, params):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    torch.save(tiny_split(n=64), prepared / "train.pt")
    torch.save(tiny_split(n=32, seed=1), prepared / "test.pt")
    params = yaml.safe_load(yaml.safe_dump(params))
    # random blobs: the judge learns nothing, so it is let through and every score marked
    params["classifier"].update(steps=4, batch_size=16, width=4, allow_weak=True)
    params["model"].update(arch="mlp")
    params["train"].update(steps=4, log_every=2, eval_every=2, batch_size=16, device="cpu")
    params["evaluate"].update(train_fid_samples=20, n_samples=20)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    p = ["--params", str(tmp_path / "params.yaml")]
    train_args = ["--data", str(prepared), "--checkpoint", str(tmp_path / "gan.pt"),
                  "--log-dir", str(tmp_path / "live"), "--resume", str(tmp_path / "resume.pt"),
                  "--classifier", str(tmp_path / "clf.pt")]

    proc = run_stage("train", *p, *train_args)  # before the classifier exists
    assert_one_line_error(proc, "clf.pt", "classifier not found")

    proc = run_stage("classifier", *p, "--data", str(prepared), "--out",
                     str(tmp_path / "clf.pt"), "--metrics", str(tmp_path / "clf.json"))
    assert proc.returncode == 0, proc.stderr
    classifier, _ = clf.load_classifier(tmp_path / "clf.pt")
    test = torch.load(prepared / "test.pt")
    judged = yaml.safe_load((tmp_path / "clf.json").read_text())
    assert judged["test_accuracy"] == round(
        clf.classifier_accuracy(classifier, test["images"], test["labels"]), 6)
    assert judged["at_chance"] == 1 and "classifier.allow_weak" in proc.stderr

    proc = run_stage("train", *p, *train_args)
    assert proc.returncode == 0, proc.stderr
    tsv = (tmp_path / "live" / "plots" / "metrics" / "fid.tsv").read_text().splitlines()
    assert tsv[0].split("\t") == ["step", "fid"] and [r.split("\t")[0] for r in tsv[1:]] \
        == ["2", "4"]
    assert all(float(r.split("\t")[1]) >= 0 for r in tsv[1:])

    proc = run_stage("evaluate", *p, "--checkpoint", str(tmp_path / "gan.pt"), "--classifier",
                     str(tmp_path / "clf.pt"), "--data", str(prepared), "--out",
                     str(tmp_path / "eval.json"))
    assert proc.returncode == 0, proc.stderr
    scores = yaml.safe_load((tmp_path / "eval.json").read_text())
    assert scores["n_samples"] == 20 and "label_accuracy" not in scores
    assert scores["flag_judge_at_chance"] == 1  # the judge was let through at chance
    assert "the judge was no better than chance" in proc.stdout
    for name in ("fid", "kid", "kid_std", "inception_score", "class_coverage", "class_kl",
                 "precision", "recall"):
        assert name in scores and f"{name}_real" in scores
    for name in metrics.JUNK_SCORES:  # junk beside the floor, each kind
        assert all(f"{name}_junk_{kind}" in scores for kind in metrics.JUNK_KINDS)
    # progress of the scoring's parts: samples, floor, copies, one per junk kind
    assert "scoring: 7/7 parts (100%)" in proc.stderr
