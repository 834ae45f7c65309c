"""README's first command, pasted as it stands into a fresh shell with no virtual environment.

The command is read from README.md, not copied here, so the test follows what README says.
It runs the real setup in a copy of the project (a new .venv installed from
requirements.lock, the offline plot page) and then the whole pipeline on tiny params.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import FASHION_MIRROR, ROOT, shell_env, tiny_project


def readme_first_command() -> str:
    """The first line of README's first ```bash block, comment and all, as a user pastes it."""
    match = re.search(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(),
                      flags=re.M | re.S)
    assert match, "README.md has no ```bash block"
    return match.group(1).splitlines()[0]


def declared_outputs(dvc_yaml: Path) -> dict[str, list[str]]:
    """Every stage of dvc.yaml with the paths it writes (outs, metrics and plots)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {name: [entry if isinstance(entry, str) else next(iter(entry))
                   for key in ("outs", "metrics", "plots") for entry in stage.get(key, [])]
            for name, stage in stages.items()}


def locked(lines: str) -> set[str]:
    return {line.strip() for line in lines.splitlines()
            if line.strip() and not line.startswith("#")}


@pytest.mark.e2e
@pytest.mark.skipif(not FASHION_MIRROR.is_dir(), reason="Debian's dataset-fashion-mnist is "
                    "not installed (.ci/run installs it)")
def test_readme_first_command_runs_the_whole_pipeline_from_a_fresh_shell(tmp_path):
    command = readme_first_command()
    repo = tiny_project(tmp_path / "clone", folder=False)
    env = shell_env(venv=None)
    assert "VIRTUAL_ENV" not in env
    assert not any((Path(entry).parent / "pyvenv.cfg").is_file()
                   for entry in env["PATH"].split(os.pathsep))
    try:
        proc = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=1800)
        out, returncode = proc.stdout + proc.stderr, proc.returncode
        assert returncode == 0, f"README's first command failed: {command}\n{out[-6000:]}"

        for stage, paths in declared_outputs(repo / "dvc.yaml").items():
            assert f"Running stage '{stage}'" in out, (stage, out[-6000:])
            for path in paths:
                assert (repo / path).exists(), f"{stage} did not write {path}"
        scores = json.loads((repo / "metrics" / "eval.json").read_text())
        assert scores["n_samples"] == 200 and scores["fid"] > scores["fid_real"] >= 0

        dvc = repo / ".venv" / "bin" / "dvc"  # the environment the command itself set up
        status = subprocess.run([str(dvc), "status"], cwd=repo, env=env, capture_output=True,
                                text=True, timeout=300)
        assert "up to date" in status.stdout, status.stdout + status.stderr

        # Setup installed exactly requirements.lock, and the project with nothing beside it.
        frozen = subprocess.run([str(repo / ".venv" / "bin" / "python"), "-m", "pip", "freeze",
                                 "--exclude-editable", "--disable-pip-version-check"],
                                env=env, capture_output=True, text=True, check=True).stdout
        assert locked(frozen) == locked((ROOT / "requirements.lock").read_text())
    finally:
        shutil.rmtree(repo / ".venv", ignore_errors=True)  # gigabytes of torch
