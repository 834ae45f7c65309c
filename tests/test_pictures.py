"""Pictures of a trained G: walks, arithmetic, real versus fake, class rows, evolution GIF,
the gan-sample command, the accuracy panel, and offline `dvc plots diff` pages in Chromium."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from gan import cli, plots, sample, train
from gan.checkpoint import save_checkpoint
from gan.config import ModelConfig, SampleConfig, to_dict
from gan.hooks import EvolutionSnapshots

from conftest import ROOT, VENV, shell_env, tiny_split, unit_train

MODEL = ModelConfig(arch="mlp", latent_dim=8, g_channels=1, d_channels=1)


class FakeG(nn.Module):
    """Records every call; image pixels hold the label / 10 (or z's mean without labels)."""

    def __init__(self, size: int = 6):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))  # generate() asks for a parameter's device
        self.size = size
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def forward(self, z, labels=None):
        self.calls.append((z.clone(), None if labels is None else labels.clone()))
        value = z.mean(1) if labels is None else labels.float() / 10
        value = (value + self.weight.detach()).clamp(-1, 1)
        return value.view(-1, 1, 1, 1).expand(-1, 1, self.size, self.size)


def sample_cfg(**overrides) -> SampleConfig:
    base = dict(n=4, seed=3, interpolation_rows=2, interpolation_steps=5, real_vs_fake=5,
                per_class=3)
    return SampleConfig(**{**base, **overrides})


# -- latent walks ---------------------------------------------------------------------------

def test_slerp_keeps_endpoints_and_walks_the_sphere_at_constant_speed():
    a, b = sample.fixed_latent(2, 64, seed=0)
    radius = 8.0
    a, b = a / a.norm() * radius, b / b.norm() * radius
    path = sample.slerp(a, b, torch.linspace(0, 1, 9))  # (9, 64)
    assert path.shape == (9, 64)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path.norm(dim=1), torch.full((9,), radius))
    # equal angles between neighbours: the walk moves at constant speed along the arc
    cosines = torch.nn.functional.cosine_similarity(path[:-1], path[1:], dim=1)
    torch.testing.assert_close(cosines, cosines[:1].expand(8))
    # the straight line cuts inside the sphere: the reason for slerp
    assert sample.lerp(a, b, torch.tensor([0.5]))[0].norm() < radius * 0.9


def test_slerp_of_parallel_endpoints_is_the_straight_line():
    a = torch.ones(4)
    path = sample.slerp(a, 2 * a, torch.linspace(0, 1, 3))
    torch.testing.assert_close(path, torch.stack([a, 1.5 * a, 2 * a]))


def test_interpolation_rows_walk_between_their_own_endpoints():
    rows, steps, dim = 3, 5, 8
    walk = sample.interpolation_latents(rows, steps, dim, seed=4, noise="uniform",
                                        method="linear")
    assert walk.shape == (rows * steps, dim)
    ends = sample.fixed_latent(2 * rows, dim, seed=4, noise="uniform")
    walk = walk.view(rows, steps, dim)
    torch.testing.assert_close(walk[:, 0], ends[:rows])
    torch.testing.assert_close(walk[:, -1], ends[rows:])
    torch.testing.assert_close(walk[:, 2], (ends[:rows] + ends[rows:]) / 2)
    assert walk.abs().max() <= 1  # a straight walk stays inside uniform noise's cube


def test_auto_interpolation_follows_the_noise():
    assert sample.interpolation_method("auto", "normal") == "spherical"
    assert sample.interpolation_method("auto", "uniform") == "linear"
    assert sample.interpolation_method("linear", "normal") == "linear"
    uniform = sample.fixed_latent(1000, 4, seed=0, noise="uniform")
    assert -1 <= uniform.min() < -0.99 and 0.99 < uniform.max() <= 1


def test_arithmetic_is_a_minus_b_plus_c():
    terms = sample.arithmetic_latents(8, seed=5, noise="normal")
    a, b, c = sample.fixed_latent(3, 8, seed=5)
    torch.testing.assert_close(terms, torch.stack([a, b, c, a - b + c]))


# -- real versus fake -----------------------------------------------------------------------

def test_real_vs_fake_key_marks_exactly_the_generated_tiles():
    n, size, padding, nrow = 7, 6, 6, 4
    real, fake = torch.full((n, 1, size, size), -0.6), torch.full((n, 1, size, size), 0.6)
    mixed, is_fake = sample.real_vs_fake(real, fake, seed=2)
    assert is_fake.sum() == n and not torch.equal(is_fake, is_fake.sort().values)  # shuffled
    grid = sample.to_grid_image(mixed, nrow=nrow, padding=padding)
    key = sample.mark_tiles(grid, is_fake, (size, size), nrow=nrow, padding=padding)
    assert key.mode == "RGB" and key.width == grid.width and key.height > grid.height
    for i, fake_tile in enumerate(is_fake.tolist()):
        x, y = padding + (i % nrow) * (size + padding), padding + (i // nrow) * (size + padding)
        tile = grid.getpixel((x + 1, y + 1))
        assert (tile > 128) == fake_tile  # the grid holds what the mask says
        assert key.getpixel((x + 1, y + 1)) == (tile,) * 3  # the key leaves tiles untouched
        colour = sample.FAKE_COLOUR if fake_tile else sample.REAL_COLOUR
        assert key.getpixel((x - 1, y + 2)) == colour and key.getpixel((x + size, y)) == colour
        assert key.getpixel((x - padding // 2 - 1, y + 2)) == (255, 255, 255)  # a gap between


def test_pick_real_refuses_more_than_the_split_holds():
    with pytest.raises(Exception, match="sample.real_vs_fake: got 5.*only 4"):
        sample.pick_real(torch.zeros(4, 1, 2, 2), 5, seed=0)


# -- pictures of conditional and unconditional models ---------------------------------------

def test_class_rows_ask_g_for_each_class_with_shared_columns():
    generator = FakeG()
    cfg = sample_cfg()
    out = sample.pictures(generator, replace(MODEL, conditional=True), 4, cfg,
                          real=torch.zeros(20, 1, 6, 6))
    assert set(out) == {"interpolation", "real_vs_fake", "real_vs_fake_key", "class_rows",
                        "class_interpolation"}
    walk, rvf, rows, class_walk = generator.calls
    # the walk: row r at class r, constant along the row
    assert walk[1].tolist() == [0] * 5 + [1] * 5
    assert rvf[1].tolist() == [0, 1, 2, 3, 0]
    z, labels = rows
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    torch.testing.assert_close(z.view(4, 3, -1), z[:3].expand(4, 3, -1))  # one z per column
    z, labels = class_walk
    assert labels.tolist() == [c for c in range(4) for _ in range(5)]
    torch.testing.assert_close(z.view(4, 5, -1), z[:5].expand(4, 5, -1))  # one walk, 4 classes
    # the class-row picture: row c is grey level c / 10
    picture = out["class_rows"]
    assert picture.size == (3 * 8 + 2, 4 * 8 + 2)
    assert [picture.getpixel((4, 4 + 8 * c)) for c in range(4)] == [128, 140, 153, 166]


def test_unconditional_pictures_pass_no_labels():
    generator = FakeG()
    out = sample.pictures(generator, MODEL, 10, sample_cfg(), real=torch.zeros(20, 1, 6, 6))
    assert set(out) == {"interpolation", "real_vs_fake", "real_vs_fake_key"}
    assert all(labels is None for _, labels in generator.calls)
    assert out["interpolation"].size == (5 * 8 + 2, 2 * 8 + 2)
    assert out["real_vs_fake"].size == (4 * 12 + 6, 3 * 12 + 6)  # 10 tiles, 4 per row
    terms = sample.arithmetic_images(generator, MODEL, seed=1)
    assert terms.shape == (4, 1, 6, 6) and generator.calls[-1][1] is None


# -- evolution ------------------------------------------------------------------------------

def test_evolution_snapshots_share_one_latent_batch_and_make_a_gif(tmp_path):
    folder = tmp_path / "evolution"
    folder.mkdir()
    (folder / "step_000002.png").write_bytes(b"kept: before the first snapshot (a resume)")
    (folder / "step_009999.png").write_bytes(b"stale: from another run")
    generator = FakeG()
    hook = EvolutionSnapshots(5, folder, 0, ModelConfig(arch="mlp", latent_dim=8, g_channels=4,
                                                        d_channels=4), 10)
    for step in (5, 10, 12):
        generator.weight.data.fill_(step / 20)  # "training" changes G between snapshots
        hook(step, generator)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["step_000002.png", "step_000005.png", "step_000010.png",
                     "step_000012.png"]
    names = names[1:]
    assert all(torch.equal(generator.calls[0][0], z) for z, _ in generator.calls)
    frames = [Image.open(folder / name) for name in names]
    sample.save_gif(frames, tmp_path / "evolution.gif", frame_ms=50)
    gif = Image.open(tmp_path / "evolution.gif")
    # (PIL merges identical neighbouring frames: G changed, so none are)
    assert gif.n_frames == 3 and gif.info["loop"] == 0
    assert oct((tmp_path / "evolution.gif").stat().st_mode & 0o777) == "0o644"
    with pytest.raises(Exception, match="no frames"):
        sample.save_gif([], tmp_path / "empty.gif")


def test_evolution_snapshots_come_back_from_their_state(tmp_path):
    """A resumed run puts back the snapshots taken before the interruption, byte for byte,
    and removes any other from the folder."""
    model = ModelConfig(arch="mlp", latent_dim=8, g_channels=4, d_channels=4)
    generator = FakeG()
    before = EvolutionSnapshots(5, tmp_path / "before", 0, model, 10)
    for step in (5, 10):
        generator.weight.data.fill_(step / 20)
        before(step, generator)
    state = before.state_dict()
    assert state == {p.name: p.read_bytes() for p in (tmp_path / "before").iterdir()}
    folder = tmp_path / "after"
    folder.mkdir()
    (folder / "step_000015.png").write_bytes(b"from another run")
    after = EvolutionSnapshots(5, folder, 0, model, 10)
    after.load_state_dict(state)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == state
    after(15, generator)
    assert sorted(after.state_dict()) == ["step_000005.png", "step_000010.png",
                                          "step_000015.png"]
    assert after.state_dict()["step_000015.png"] != b"from another run"


# -- figures --------------------------------------------------------------------------------

def test_loss_curves_have_a_d_accuracy_panel():
    log = pd.DataFrame({"d_loss": [1.0, 0.9], "g_loss": [2.0, 1.8], "d_real": [0.7, 0.6],
                        "d_fake": [0.3, 0.4], "d_acc_real": [0.9, 0.8],
                        "d_acc_fake": [0.95, 0.7]}, index=pd.Index([50, 100], name="step"))
    fig = plots.loss_curves(log)
    try:
        assert len(fig.axes) == 3
        panel = fig.axes[2]
        assert panel.get_ylabel() == "D accuracy"
        lines = {line.get_label(): list(line.get_ydata()) for line in panel.get_lines()}
        assert lines["real called real"] == [0.9, 0.8]
        assert lines["generated called generated"] == [0.95, 0.7]
    finally:
        plots.plt.close(fig)


def test_arithmetic_figure_shows_four_labelled_images():
    fig = plots.arithmetic_figure(torch.linspace(-1, 1, 4).view(4, 1, 1, 1).expand(4, 1, 5, 5))
    try:
        shown = [ax for ax in fig.axes if ax.get_images()]
        assert [ax.get_title() for ax in shown] == ["a", "b", "c", "a − b + c"]
        assert shown[3].get_images()[0].get_array()[0, 0] == 1.0
    finally:
        plots.plt.close(fig)


# -- gan-sample -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = ModelConfig(arch="mlp", latent_dim=8, g_channels=4, d_channels=4)
    cfg = unit_train(loss="non_saturating", optimizer="adam", lr=2e-4, batch_size=16,
                      steps=2, log_every=1, device="cpu")
    result = train.train(model, cfg, 0, tiny_split(), progress=False)
    path = tmp_path_factory.mktemp("ckpt") / "gan.pt"
    save_checkpoint(result.checkpoint, path)
    assert result.checkpoint["config"]["model"] == to_dict(model)
    return path


def test_gan_sample_grid_walk_and_images(checkpoint, tmp_path, capsys):
    assert cli.main(["grid", str(checkpoint), "-o", str(tmp_path / "g.png"), "--n", "9",
                     "--seed", "3"]) == 0
    assert Image.open(tmp_path / "g.png").size == (3 * 30 + 2, 3 * 30 + 2)
    assert cli.main(["walk", str(checkpoint), "-o", str(tmp_path / "w.png"), "--n", "2",
                     "--steps", "5"]) == 0
    assert Image.open(tmp_path / "w.png").size == (5 * 30 + 2, 2 * 30 + 2)
    assert "spherical walks" in capsys.readouterr().out
    assert cli.main(["images", str(checkpoint), "-o", str(tmp_path / "many"), "--n", "3",
                     "--seed", "3"]) == 0
    files = sorted((tmp_path / "many").iterdir())
    assert [f.name for f in files] == ["000.png", "001.png", "002.png"]
    assert Image.open(files[0]).size == (28, 28)
    # the same seed gives the same images: image 0 is the grid's first tile
    grid_tile = Image.open(tmp_path / "g.png").crop((2, 2, 30, 30))
    assert grid_tile.tobytes() == Image.open(files[0]).tobytes()


@pytest.mark.parametrize("make,fragment", [
    (lambda p: p / "missing.pt", "checkpoint not found"),
    (lambda p: (torch.save({"state_dict": {}}, p / "f.pt"), p / "f.pt")[1],
     "not a checkpoint of this project"),
    (lambda p: ((p / "t.pt").write_text("hello"), p / "t.pt")[1], "not a readable checkpoint"),
])
def test_gan_sample_missing_or_foreign_checkpoint_is_one_line_exit_2(tmp_path, make,
                                                                     fragment, capsys):
    ckpt = make(tmp_path)
    assert cli.main(["grid", str(ckpt), "-o", str(tmp_path / "g.png")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {ckpt}") and fragment in lines[0]
    assert not (tmp_path / "g.png").exists()


@pytest.mark.integration
def test_python_m_gan_cli_exits_2_on_a_foreign_checkpoint(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    env = {k: v for k, v in os.environ.items() if k != "GAN_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "gan.cli", "walk", str(tmp_path / "foreign.pt"),
                           "-o", str(tmp_path / "w.png")], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"error: {tmp_path / 'foreign.pt'}: not a checkpoint of this " \
        "project (format 1 expected)\n"


def test_gan_sample_label_needs_a_conditional_model(checkpoint, tmp_path, capsys):
    assert cli.main(["grid", str(checkpoint), "-o", str(tmp_path / "g.png"),
                     "--label", "1"]) == 2
    assert "--label: this checkpoint's model is not conditional" in capsys.readouterr().err


# -- offline plots in a real browser --------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")


def chromium(page, profile, *args: str) -> subprocess.CompletedProcess:
    # virtual time: Chromium waits for the page's scripts (and vega's render) before dumping.
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           "--virtual-time-budget=10000", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs "
                    "Debian's chromium)")
@pytest.mark.integration
def test_offline_plots_diff_page_draws_both_revisions_curves(tmp_path):
    modules = ROOT / "web" / "node_modules"
    if not (modules / "vega" / "package.json").is_file():
        pytest.skip("web/node_modules is missing: run `bash .ci/run setup` (npm ci in web/)")
    if not (VENV / "bin" / "dvc").exists():
        pytest.skip(".venv is missing: run `bash .ci/run setup`")
    spec = importlib.util.spec_from_file_location("web_build", ROOT / "web" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    template = build.build(ROOT / "web" / "template.html", modules, tmp_path / "offline.html")

    repo = tmp_path / "repo"
    repo.mkdir()
    env = shell_env(VENV)  # dvc as a user runs it, after README's `. .venv/bin/activate`

    def sh(*cmd):
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"{cmd}: {proc.stdout}{proc.stderr}"

    def write_logs(d_loss, g_loss):
        for name, values in (("d_loss", d_loss), ("g_loss", g_loss)):
            rows = "".join(f"{step}\t{v}\n" for step, v in enumerate(values, 1))
            (repo / f"{name}.tsv").write_text(f"step\t{name}\n{rows}")

    (repo / "dvc.yaml").write_text(
        "plots:\n  - Losses:\n      template: linear\n      x: step\n      y:\n"
        "        d_loss.tsv: d_loss\n        g_loss.tsv: g_loss\n")
    write_logs([1.0, 0.8, 0.6, 0.5], [3.0, 2.5, 2.0, 1.5])
    sh("git", "init", "-q", "-b", "main")
    sh("dvc", "init", "-q")
    sh("dvc", "config", "--local", "plots.html_template", str(template))
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "first run")
    write_logs([1.2, 1.1, 0.9, 0.7], [2.0, 1.9, 1.7, 1.6])
    sh("dvc", "plots", "diff", "HEAD", "-o", "plots")  # the workspace against HEAD
    page = repo / "plots" / "index.html"
    html = page.read_text()
    assert not re.search(r"<script[^>]*\bsrc=", html)  # every script is inlined: no network

    dump = chromium(page, tmp_path / "profile-dom", "--dump-dom")
    assert dump.returncode == 0, dump.stderr
    body = re.sub(r"<script.*?</script>", "", dump.stdout, flags=re.S)
    lines = re.findall(r'<path aria-label="([^"]*)"[^>]*aria-roledescription="line mark"'
                       r'[^>]*\bd="([^"]*)"[^>]*stroke="(#[0-9a-f]{6})"([^>]*)>', body)
    drawn = {}
    for label, path, stroke, rest in lines:
        if "opacity" not in rest:  # vega also draws each line faded, for hover highlights
            rev, field = re.search(r"rev: (\w+); .*::(\w+)", label).groups()
            drawn[rev, field] = (path.count("L") + 1, stroke)
    assert set(drawn) == {(r, f) for r in ("workspace", "HEAD") for f in ("d_loss", "g_loss")}
    assert {points for points, _ in drawn.values()} == {4}
    assert ">workspace</text>" in body and ">HEAD</text>" in body  # the legend

    shot = tmp_path / "shot.png"
    proc = chromium(page, tmp_path / "profile-shot", f"--screenshot={shot}",
                    "--window-size=900,700", "--hide-scrollbars")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr
    pixels = Image.open(shot).convert("RGB")
    counts = {colour: 0 for colour in {stroke for _, stroke in drawn.values()}}
    for pixel, n in ((p, n) for n, p in pixels.getcolors(pixels.width * pixels.height)):
        for colour in counts:
            target = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
            if max(abs(a - b) for a, b in zip(pixel, target, strict=True)) < 12:
                counts[colour] += n
    assert len(counts) == 2 and min(counts.values()) > 200, counts  # both revisions' curves
