"""Portable numerics (gan/numerics.py): the same bytes from any x86-64 machine.

The golden test runs a tiny pipeline, stage by stage as DVC runs them (``python -m
stages.<name>``), and compares its outputs with digests committed in
tests/golden_numerics.json. CI meets other CPU models from one run to the next, so this is
where the promise is checked across machines: when it fails on a CPU model it has not met,
``python -m gan.numerics`` there names the layers whose bits differ (docs/resume.md,
"Portable numerics"). The one-core and other-kernels tests need no committed digests: they
compare a run under ``taskset -c 0``, or in an environment that asks for other kernels and
threads, with the plain run on the same machine.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from gan import numerics
from gan.config import NumericsConfig
from gan.errors import ConfigError, GanError

from conftest import ROOT, copy_project

GOLDEN = Path(__file__).with_name("golden_numerics.json")
# CPU models (their lscpu model name) where the golden run is known to differ, each with
# the reason; empty while every CPU met so far reproduces it (docs/resume.md lists them).
KNOWN_EXCEPTIONS: dict[str, str] = {}
# The outputs compared, by what wrote them.
OUTPUTS = ("data/prepared/train.pt", "models/classifier.pt", "metrics/classifier.json",
           "models/gan.pt", "metrics/eval.json")
STEPS = ("download", "prepare", "classifier", "train", "evaluate")
OTHER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX",
                 "MKL_CBWR": "AUTO", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "3",
                 "OMP_THREAD_LIMIT": "1", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                 "MKL_DOMAIN_NUM_THREADS": "MKL_BLAS=1", "DNNL_MAX_CPU_ISA": "SSE41",
                 "ONEDNN_DEFAULT_FPMATH_MODE": "BF16", "OMP_DYNAMIC": "TRUE"}


def write_folder(folder: Path) -> None:
    """Two classes of 28 px grayscale PNGs a judge tells apart at once: dark and bright
    noise, each with a bar whose place varies (so the GAN has something to learn)."""
    rng = np.random.default_rng(7)
    for label, (low, high) in enumerate(((0, 110), (140, 256))):
        (folder / f"class{label}").mkdir(parents=True)
        for i in range(40):
            pixels = rng.integers(low, high, size=(28, 28), dtype=np.uint8)
            row = int(rng.integers(4, 24))
            pixels[row:row + 3, 4:24] = 255 - pixels[row:row + 3, 4:24]
            Image.fromarray(pixels, mode="L").save(folder / f"class{label}" / f"{i:03d}.png")


def golden_params(path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(dataset="image_folder", path="images", image_size=32, channels=1)
    params["model"].update(arch="dcgan", g_channels=8, d_channels=8, latent_dim=16)
    params["train"].update(steps=8, batch_size=16, log_every=4, eval_every=0,
                           snapshot_every=0, device="cpu")
    params["resume"].update(checkpoint_every=0, store="off")
    params["classifier"].update(steps=60, batch_size=16, width=4)
    params["evaluate"].update(n_samples=48, batch_size=24, train_fid_samples=16)
    params["numerics"] = {"portable": True, "threads": NumericsConfig().threads}
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def stage_args(name: str) -> list[str]:
    return {
        "download": ["--out", "data/raw"],
        "prepare": ["--raw", "data/raw", "--out", "data/prepared", "--metrics",
                    "metrics/data.json"],
        "classifier": ["--data", "data/prepared", "--out", "models/classifier.pt",
                       "--metrics", "metrics/classifier.json"],
        "train": ["--data", "data/prepared", "--checkpoint", "models/gan.pt", "--log-dir",
                  "metrics/train", "--resume", ".resume/train.pt"],
        "evaluate": ["--checkpoint", "models/gan.pt", "--classifier", "models/classifier.pt",
                     "--data", "data/prepared", "--out", "metrics/eval.json"],
    }[name] + ["--machine", "outputs/machine"]


def run_steps(project: Path, steps, prefix: tuple[str, ...] = (),
              env: dict[str, str] | None = None) -> None:
    full_env = {k: v for k, v in os.environ.items() if k != "GAN_DEBUG"}
    full_env.update(env or {})
    for name in steps:
        done = subprocess.run([*prefix, sys.executable, "-m", f"stages.{name}",
                               *stage_args(name)], cwd=project, env=full_env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"


def digests(project: Path, names=OUTPUTS) -> dict[str, str]:
    return {name: hashlib.sha256((project / name).read_bytes()).hexdigest() for name in names}


def make_golden_run(dest: Path) -> Path:
    project = copy_project(dest)
    write_folder(project / "images")
    golden_params(project / "params.yaml")
    run_steps(project, STEPS)
    return project


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory) -> Path:
    return make_golden_run(tmp_path_factory.mktemp("golden"))


@pytest.mark.integration
def test_golden_run_gives_the_committed_bytes(golden_run):
    expected = json.loads(GOLDEN.read_text())
    record = json.loads((golden_run / "outputs/machine/train.json").read_text())
    here = numerics.cpu()["cpu"]
    if here in KNOWN_EXCEPTIONS:
        pytest.xfail(f"{here}: {KNOWN_EXCEPTIONS[here]}")
    assert digests(golden_run) == expected["outputs"], (
        f"the tiny golden run wrote other bytes on this machine ({record['cpu']}, family "
        f"{record['cpu_family']} model {record['cpu_model']}, {record['isa']}) than on "
        f"{expected['made_on']}; the battery's differing layers: {record['differing']}; "
        f"run `python -m gan.numerics` here and see docs/resume.md, \"Portable numerics\"")


@pytest.mark.integration
def test_golden_run_records_where_it_ran(golden_run):
    for stage in ("prepare", "classifier", "train", "evaluate"):
        record = json.loads((golden_run / f"outputs/machine/{stage}.json").read_text())
        assert record["mode"] == "portable" and record["threads"] == NumericsConfig().threads
        assert record["aten_kernels"] == "AVX2" and record["onednn"] is True
        assert record["mkl_path"] == "COMPATIBLE" and record["battery"] in ("matches",
                                                                           "differs")
    assert not (golden_run / "outputs/machine/download.json").exists()  # computes nothing


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is missing")
@pytest.mark.parametrize("how", ["one core", "other kernels"])
def test_one_core_and_other_kernels_give_the_same_bytes(golden_run, tmp_path, how):
    """train and evaluate again on the golden run's data and judge, under ``taskset -c 0``,
    or with the environment asking for scalar kernels, another oneDNN and MKL path and one
    thread: the pins win, so the bytes are the plain run's."""
    project = tmp_path / "again"
    shutil.copytree(golden_run, project, ignore=shutil.ignore_patterns("gan.pt", "eval.json",
                                                                        "train"))
    if how == "one core":
        run_steps(project, ("train", "evaluate"), prefix=("taskset", "-c", "0"))
    else:
        run_steps(project, ("train", "evaluate"), env=OTHER_KERNELS)
    names = ("models/gan.pt", "metrics/eval.json")
    assert digests(project, names) == digests(golden_run, names)


def test_pins_win_over_the_environment(monkeypatch):
    for name, value in OTHER_KERNELS.items():
        monkeypatch.setenv(name, value)
    numerics.pin_environment(True, 2)
    assert {k: os.environ[k] for k in numerics.portable_environment(2)} == \
        numerics.portable_environment(2)
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2" and os.environ["OMP_NUM_THREADS"] == "2"


@pytest.mark.integration
def test_others_running_reads_proc_stat():
    assert numerics.others_running(reads=3, gap=0.0) >= 0  # this machine's count
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert numerics.others_running(reads=5, gap=0.02) >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_portable_mode_removes_the_variables_that_would_change_threads_or_kernels(
        monkeypatch):
    for name in numerics.OVERRIDDEN:
        monkeypatch.setenv(name, "1")
    numerics.pin_environment(True, 2)
    assert not any(name in os.environ for name in numerics.OVERRIDDEN)
    assert os.environ["ONEDNN_DEFAULT_FPMATH_MODE"] == "STRICT"


def test_native_mode_leaves_the_environment_alone(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")
    monkeypatch.delenv("MKL_CBWR", raising=False)
    numerics.pin_environment(False, 2)
    assert os.environ["OMP_NUM_THREADS"] == "1" and "MKL_CBWR" not in os.environ
    assert os.environ["OMP_THREAD_LIMIT"] == "1"


def test_waiting_threads_sleep_on_a_busy_machine_unless_the_environment_says_otherwise(
        monkeypatch):
    for portable in (True, False):
        for others, policy in ((0, None), (3, "PASSIVE")):
            monkeypatch.setattr(numerics, "others_running", lambda n=others: n)
            monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
            monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
            numerics.pin_environment(portable, 2)
            assert os.environ.get("OMP_WAIT_POLICY") == policy
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    numerics.pin_environment(True, 2)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "10000")
    numerics.pin_environment(True, 2)
    assert "OMP_WAIT_POLICY" not in os.environ


BATTERY_UNDER = ("import json, os, sys; from gan import numerics; "
                 "numerics.pin_environment(True, 2); os.environ['MKL_CBWR'] = sys.argv[1]; "
                 "numerics.apply_torch(True, 2); "
                 "print(json.dumps([numerics.machine(True, 2)['mkl_path'], numerics.battery()]))")


@pytest.mark.integration
def test_only_matrix_products_move_with_mkls_code_path():
    """Every battery entry but MKL's matrix products and LAPACK gives the same digest on
    MKL's COMPATIBLE, AUTO and AVX2 paths: an entry whose bits follow MKL's path reaches MKL
    (on an Intel CPU, its vector math too; tests/test_mathops.py watches for that anywhere)."""
    runs = {}
    for path in ("COMPATIBLE", "AUTO", "AVX2"):
        done = subprocess.run([sys.executable, "-c", BATTERY_UNDER, path], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        seen_path, runs[path] = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen_path == path
    assert numerics.MKL_ENTRIES <= set(runs["COMPATIBLE"])
    for path in ("AUTO", "AVX2"):
        moved = set(numerics.differing(runs[path], runs["COMPATIBLE"]))
        assert moved <= numerics.MKL_ENTRIES, f"MKL_CBWR={path}: {sorted(moved)}"


@pytest.mark.parametrize("text, says", [
    (None, "missing"), ("", "unreadable (not JSON)"), ('{"made_on": {', "unreadable"),
    ("[]", "not a numerics fingerprint"), ('{"made_on": {}, "battery": []}',
                                           "not a numerics fingerprint"),
    ('{"made_on": {}, "battery": {}}', "not a numerics fingerprint"),
    ('{"made_on": {}, "battery": {"linear": 3}}', "not a numerics fingerprint"),
])
def test_a_bad_fingerprint_file_is_one_line_naming_it(tmp_path, text, says):
    path = tmp_path / "numerics.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(GanError) as caught:
        numerics.committed(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {says}") and "python -m gan.numerics --write" in message
    assert "\n" not in message and "this machine computes" not in message


@pytest.mark.integration
def test_a_stage_with_a_broken_fingerprint_stops_in_one_line(tmp_path):
    """The stage process names the file and the command, never an AttributeError."""
    project = copy_project(tmp_path / "p")
    (project / "gan/numerics.json").write_text("[]")
    done = subprocess.run([sys.executable, "-m", "stages.prepare", "--raw", "nowhere",
                           "--out", "out", "--metrics", "m.json"], cwd=project,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "numerics.json: not a numerics fingerprint" in done.stderr


def test_the_other_bits_warning_is_said_once_per_run(tmp_path, capsys, monkeypatch):
    """The first computing stage of a run says it; the others of that run only record it."""
    monkeypatch.setattr(numerics, "battery", lambda: {"linear": "x"})
    record = tmp_path / "machine"
    numerics.self_check("prepare", True, 2, record, run=[41, 7])
    assert capsys.readouterr().err.startswith("warning: prepare: this machine")
    numerics.self_check("train", True, 2, record, run=[41, 7])
    assert capsys.readouterr().err == ""
    assert json.loads((record / "train.json").read_text())["battery"] == "differs"
    numerics.self_check("evaluate", True, 2, record, run=[42, 9])  # another run
    assert capsys.readouterr().err.startswith("warning: evaluate: this machine")
    numerics.self_check("sample", True, 2, record, run=None)  # not under dvc
    assert capsys.readouterr().err.startswith("warning: sample: this machine")


def test_settings_and_command_line(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("numerics:\n  portable: false\n  threads: 3\n")
    assert numerics.settings(params) == (False, 3)
    params.write_text("seed: 0\n")  # no section: the defaults
    assert numerics.settings(params) == (True, NumericsConfig().threads)
    params.write_text("numerics:\n  threads: 0\n")
    with pytest.raises(ConfigError, match="numerics.threads"):
        numerics.settings(params)
    assert numerics.config({"numerics": {"threads": 5}}) == NumericsConfig(threads=5)
    assert numerics.config({"seed": 0}) == NumericsConfig()


# --- where a stage starts: one call, and nothing loads torch before it ---------------------

STAGE_SCRIPTS = sorted((ROOT / "stages").glob("*.py"))
STAGE_NAMES = [p.stem for p in STAGE_SCRIPTS if p.stem not in ("__init__", "common")]


def top_level_imports(path: Path) -> set[str]:
    """The modules a file imports when it loads: its module-level imports, not those inside
    functions (a stage's ``if not __package__`` guard holds none)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def loaded_on_import(path: Path) -> set[str]:
    """The top-level names of the third-party packages importing ``path`` loads, following
    the first-party modules' own module-level imports (and their packages' __init__)."""
    seen, todo, third = set(), [path], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in top_level_imports(current):
            top = name.split(".")[0]
            if top not in ("gan", "stages"):
                if top not in sys.stdlib_module_names and top != "__future__":
                    third.add(top)
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                base = ROOT.joinpath(*parts[:i])
                for found in (base.with_suffix(".py"), base / "__init__.py"):
                    if found.is_file():
                        todo.append(found)
    return third


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_a_stage_module_loads_nothing_that_reads_the_pins_before_it_starts(name):
    """OpenMP, MKL and NumPy's BLAS read their variables as they load: a stage module loads
    the standard library and PyYAML only, so common.start pins before torch (or NumPy)."""
    assert loaded_on_import(ROOT / "stages" / f"{name}.py") <= {"yaml"}


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_every_stage_starts_with_one_start_call_before_any_import(name):
    """main calls common.start once, with its own name, and imports nothing before it."""
    tree = ast.parse((ROOT / "stages" / f"{name}.py").read_text())
    main = next(node for node in tree.body
                if isinstance(node, ast.FunctionDef) and node.name == "main")
    calls = [(i, node) for i, statement in enumerate(main.body)
             for node in ast.walk(statement) if isinstance(node, ast.Call)
             and ast.unparse(node.func) == "common.start"]
    assert len(calls) == 1, f"stages/{name}.py: main calls common.start {len(calls)} times"
    at, call = calls[0]
    assert ast.literal_eval(call.args[0]) == name
    before = [node for statement in main.body[:at] for node in ast.walk(statement)
              if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not before, f"stages/{name}.py imports before common.start"


def test_start_pins_only_the_stages_own_process(tmp_path, monkeypatch):
    """Called from a test (this process), start parses and reads the params and pins
    nothing; in the stage's own process it pins before anything else."""
    from stages import common

    params = tmp_path / "p.yaml"
    params.write_text("seed: 3\nnumerics:\n  threads: 1\n")
    pinned = []
    monkeypatch.setattr(numerics, "pin_environment", lambda *a: pinned.append(("pin", a)))
    monkeypatch.setattr(numerics, "apply_torch", lambda *a: pinned.append(("torch", a)))
    monkeypatch.setattr(numerics, "self_check", lambda *a: pinned.append(("check", a[0])))
    monkeypatch.setattr(sys, "argv", ["x", "--params", str(params)])
    args, read = common.start("plot", common.parser("plot"))
    assert args.params == params and read["seed"] == 3 and pinned == []
    monkeypatch.setattr(common, "own_process", lambda stage: True)
    common.start("plot", common.parser("plot"), computes=False)
    assert pinned == [("pin", (True, 1))]
    pinned.clear()
    common.start("prepare", common.parser("prepare"))
    assert pinned == [("pin", (True, 1)), ("torch", (True, 1)), ("check", "prepare")]


CONSOLE_PIN = """
import os, sys
from gan import entry
sys.argv = ["gan-score", *sys.argv[1:]]
print(entry._pin_numerics("gan-score"), "torch" in sys.modules,
      os.environ.get("ATEN_CPU_CAPABILITY"), os.environ.get("OMP_NUM_THREADS"),
      os.environ.get("MKL_CBWR"))
"""


@pytest.mark.integration
def test_console_scripts_pin_their_params_numerics_before_torch(tmp_path):
    """gan-score and gan-sample pin the numerics of --params (params.yaml by default) as
    the stages do, before torch loads; with no params file, nothing."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_CBWR")}

    def pin(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-c", CONSOLE_PIN, *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert pin("folder") == "None False None None None"  # no params.yaml here
    (tmp_path / "params.yaml").write_text("numerics:\n  threads: 1\n")
    assert pin("folder") == "(True, 1) False avx2 1 COMPATIBLE"
    (tmp_path / "other.yaml").write_text("numerics:\n  portable: true\n  threads: 3\n")
    assert pin("folder", "--params", "other.yaml") == "(True, 3) False avx2 3 COMPATIBLE"
    assert pin("--params=other.yaml", "folder") == "(True, 3) False avx2 3 COMPATIBLE"

    (tmp_path / "bad.yaml").write_text("numerics:\n  threads: 0\n")
    score = [sys.executable, "-c", "import sys; from gan.entry import score; sys.exit(score())"]
    proc = subprocess.run([*score, "folder", "--params", "bad.yaml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: numerics.threads: got 0"), proc.stderr


def test_recommit_runs_the_three_steps_in_order_and_stops_at_a_failure(monkeypatch, capsys):
    import subprocess

    ran = []

    def fake_run(argv, cwd):
        ran.append((argv[1:], cwd))
        return subprocess.CompletedProcess(argv, 1 if "--force" in argv and fail else 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    fail = False
    assert numerics.main(["--recommit"]) == 0
    assert [argv for argv, _ in ran] == [["-m", "gan.numerics", "--write"],
                                         ["tests/test_numerics.py", "--write"],
                                         ["-m", "dvc", "repro", "--force"]]
    assert {cwd for _, cwd in ran} == {ROOT}
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == [
        "recommit 1/3", "recommit 2/3", "recommit 3/3", "recommit"]
    assert "(python -m gan.numerics --write)" in out[0] and "(dvc repro --force)" in out[2]
    ran.clear()
    fail = True
    assert numerics.main(["--recommit"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: recommit 3/3: dvc repro --force exited with code 1")


@pytest.mark.integration
def test_a_bad_numerics_value_is_one_line_before_torch_loads(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("numerics:\n  threads: many\n")
    done = subprocess.run([sys.executable, "-m", "stages.download", "--params", str(bad),
                           "--out", str(tmp_path / "raw")], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: numerics.threads") and "many" in done.stderr


def test_differing_names_each_layer_that_differs():
    reference = {"linear": "a", "conv2d": "b", "adam": "c"}
    assert numerics.differing(dict(reference), reference) == []
    assert numerics.differing({"linear": "a", "conv2d": "x", "adam": "c"}, reference) == \
        ["conv2d"]
    assert numerics.differing({"linear": "a"}, reference) == ["adam", "conv2d"]


def test_the_battery_sees_the_pins_and_the_self_check_says_so(tmp_path, capsys):
    """In this test process nothing is pinned (torch loaded long before) and gan.mathops
    computes natively (torch's tanh among others): the battery differs from the committed
    digests, and the self-check says so in one line and records it."""
    diff = numerics.self_check("evaluate", True, NumericsConfig().threads, tmp_path)
    err = capsys.readouterr().err
    record = json.loads((tmp_path / "evaluate.json").read_text())
    assert record["differing"] == diff and "tanh" in diff
    assert diff and record["battery"] == "differs"
    assert len(err.strip().splitlines()) == 1 and err.startswith("warning: evaluate:")
    assert set(numerics.battery()) == set(numerics.committed()["battery"])


if __name__ == "__main__":
    # `python tests/test_numerics.py --write`: commit this machine's golden run (only after
    # a deliberate change of its numbers, made in portable mode; say why in the commit).
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_numerics.py --write")
    with tempfile.TemporaryDirectory() as scratch:
        run = make_golden_run(Path(scratch))
        made_on = json.loads((run / "outputs/machine/train.json").read_text())
        GOLDEN.write_text(json.dumps({"made_on": {k: made_on[k] for k in (
            "cpu", "cpu_family", "cpu_model", "isa", "cores", "threads", "torch")},
            "outputs": digests(run)}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
