"""docs/experiments.md's sweep across machines over a real server: OpenSSH's sshd, started
here on 127.0.0.1 with keys made here, serves the team's git repository (git over ssh://)
and its DVC remote (dvc-ssh, SFTP). Two machines run their parts of a seed sweep and push at
the same time, a third pulls and compares them; a push killed half-way is pushed again; and
the lines DVC prints when the server is unreachable, refuses the key, lacks room, or the
plugin is missing are the ones the page's troubleshooting table quotes.

Nothing outside the test's folders is read or changed: every process the tests start has a
home folder made here (its ~/.ssh/config and ~/.gitconfig name the key and the known host),
DVC gets its key and user from each clone's `.dvc/config.local`, and the user's agent is
left out. As root, sshd needs its privilege separation folder /run/sshd (what Debian's
service makes); the test makes it when missing and removes it after. The full-disk test
mounts a 1 MiB tmpfs in its own folder (root only; skipped where mount is refused)."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from test_queue import (
    experiments,
    push_baseline,
    run,
    sh,
    start_queue,
    stop_everything,
    wait_for_queue,
)

from conftest import END_TO_END, ROOT, VENV, shell_env, tiny_project

SSHD = Path("/usr/sbin/sshd")
PRIVSEP = Path("/run/sshd")

pytestmark = [
    *END_TO_END,
    pytest.mark.skipif(not SSHD.is_file(), reason="OpenSSH's server is not installed "
                       "(Debian's openssh-server; `bash .ci/run setup` installs it)"),
]

TROUBLESHOOTING = ROOT / "docs" / "experiments.md"


@dataclass
class Server:
    """An sshd of this test: where it listens, who logs in, with which key."""

    port: int
    user: str
    keyfile: Path
    folder: Path  # the test's side of the server: bare repositories, DVC remotes

    def url(self, path: Path) -> str:
        """A DVC remote's URL; the user and the key go in each clone's config.local."""
        return f"ssh://127.0.0.1:{self.port}{path}"

    def git_url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def answers_ssh(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            return conn.recv(8).startswith(b"SSH-2.0")
    except OSError:
        return False


def start_sshd(folder: Path, user: str) -> tuple[subprocess.Popen, int]:
    """sshd in the foreground on a free port of 127.0.0.1: keys only, the one user, SFTP
    served in-process (DVC's transfers); its log in ``folder``/sshd.log."""
    for _ in range(3):  # a free port can be taken between the probe and sshd's bind
        port = free_port()
        config = folder / "sshd_config"
        config.write_text(f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {folder / 'host_key'}
PidFile {folder / 'sshd.pid'}
AuthorizedKeysFile {folder / 'authorized_keys'}
AllowUsers {user}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 30
Subsystem sftp internal-sftp
LogLevel VERBOSE
""")
        with open(folder / "sshd.log", "ab") as log:
            proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if answers_ssh(port):
                return proc, port
            time.sleep(0.1)
        proc.kill()
        proc.wait()
    raise AssertionError(f"sshd did not start:\n{(folder / 'sshd.log').read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """sshd for this module, and a home folder of its own for everything the tests start:
    ~/.ssh/config names the user, the key and the known host, as a user's would, and
    ~/.gitconfig's core.sshCommand points OpenSSH's client at it (ssh finds ~ in the passwd
    file, not in $HOME). The config holds only options that asyncssh reads too, so
    `dvc exp push` and `dvc exp pull` talk to git through asyncssh, as they do for most
    users (with others, such as BatchMode, DVC runs `ssh` instead)."""
    folder = tmp_path_factory.mktemp("sshd")
    user = getpass.getuser()
    host_key, client_key = keygen(folder / "host_key"), keygen(folder / "client_key")
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    made_privsep = os.geteuid() == 0 and not PRIVSEP.exists()
    if made_privsep:
        PRIVSEP.mkdir(mode=0o755)
    proc = None
    saved = {name: os.environ.get(name) for name in ("HOME", "GIT_SSH_COMMAND", "GIT_SSH",
                                                     "SSH_AUTH_SOCK", "GIT_CONFIG_GLOBAL")}
    try:
        proc, port = start_sshd(folder, user)
        home = folder / "home"
        (home / ".ssh").mkdir(parents=True)
        known_hosts = home / ".ssh" / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {Path(f'{host_key}.pub').read_text()}")
        ssh_config = home / ".ssh" / "config"
        ssh_config.write_text(f"""\
Host 127.0.0.1
  User {user}
  IdentityFile {client_key}
  IdentitiesOnly yes
  UserKnownHostsFile {known_hosts}
  GlobalKnownHostsFile /dev/null
""")
        (home / ".gitconfig").write_text(
            f"[core]\n\tsshCommand = ssh -F {shlex.quote(str(ssh_config))}\n")
        # shell_env copies os.environ: every git, dvc and queue worker the tests start
        os.environ["HOME"] = str(home)
        for name in ("GIT_SSH_COMMAND", "GIT_SSH", "SSH_AUTH_SOCK", "GIT_CONFIG_GLOBAL"):
            os.environ.pop(name, None)
        served = folder / "served"
        served.mkdir()
        yield Server(port, user, client_key, served)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if made_privsep:
            PRIVSEP.rmdir()


def connect(repo: Path, server: Server, remote: str = "storage",
            keyfile: Path | None = None) -> None:
    """What each machine sets once for itself: its user and key on the DVC remote, in
    `.dvc/config.local` (not committed)."""
    sh(repo, "dvc", "remote", "modify", "--local", remote, "user", server.user)
    sh(repo, "dvc", "remote", "modify", "--local", remote, "keyfile",
       str(keyfile or server.keyfile))


def add_remote(repo: Path, server: Server, name: str, path: Path,
               keyfile: Path | None = None, url: str | None = None) -> None:
    """One more DVC remote of this clone alone (config.local)."""
    sh(repo, "dvc", "remote", "add", "--local", name, url or server.url(path))
    connect(repo, server, name, keyfile)


@pytest.fixture(scope="module")
def team(server, tmp_path_factory) -> dict[str, Path]:
    """docs/experiments.md's "Once, on the machine that ran the baseline", over SSH: the tiny
    project after `dvc repro`, its commit pushed to a bare repository and its outputs to a
    DVC remote, both served by sshd."""
    plugin = subprocess.run([str(VENV / "bin" / "python"), "-c", "import dvc_ssh"],
                            capture_output=True)
    assert plugin.returncode == 0, ".venv has no dvc-ssh: run `bash .ci/run setup` " \
                                   "(requirements.lock installs it)"
    base = tmp_path_factory.mktemp("team_ssh")
    seed = tiny_project(base / "seed")
    origin, storage = server.folder / "origin.git", server.folder / "dvc-storage"
    sh(base, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    push_baseline(seed, server.git_url(origin), server.url(storage),
                  lambda repo: connect(repo, server))
    return {"seed": seed, "origin": origin, "storage": storage}


def clone(server: Server, team: dict[str, Path], dest: Path) -> Path:
    sh(dest.parent, "git", "clone", "-q", server.git_url(team["origin"]), str(dest))
    connect(dest, server)
    return dest


def objects(storage: Path) -> dict[str, Path]:
    """{hash: file} of a DVC remote's objects (files/md5/ab/cdef...)."""
    found = {}
    for path in (storage / "files" / "md5").glob("*/*"):
        name = path.parent.name + path.name
        if re.fullmatch(r"[0-9a-f]{32}(\.dir)?", name):
            found[name.removesuffix(".dir")] = path
    return found


def leftovers(storage: Path) -> list[Path]:
    """Files of the remote that are no object: a transfer's temporaries."""
    kept = set(objects(storage).values())
    return [path for path in storage.rglob("*") if path.is_file() and path not in kept]


def assert_whole(storage: Path) -> None:
    """Every object's bytes hash to its name: no file under an object's name is torn."""
    for digest, path in objects(storage).items():
        assert hashlib.md5(path.read_bytes()).hexdigest() == digest, path


def test_a_sweep_over_ssh_meets_on_a_third_clone(team, server, tmp_path):
    """docs/experiments.md's sweep across machines and its seeds, over SSH: machine A runs
    seed 1 of the committed setting, machine B seeds 0 and 1 of another lr (DVC's `range`
    sweep), each through its own queue, and both `dvc exp push` at the same time. A laptop
    pulls everything: every run's curves and sample grid in one `dvc plots diff`,
    `gan-compare` pools the runs with the committed one (seed 0) into one group per lr, the
    seed ignored, and each experiment's model and pictures come out of the cache: nothing
    retrains."""
    committed = yaml.safe_load((team["seed"] / "params.yaml").read_text())
    other = 0.0015
    assert committed["seed"] == 0 and committed["train"]["lr"] != other
    lines = {"machine-a": ["-S", "seed=1"],
             "machine-b": ["-S", "seed=range(0,2)", "-S", f"train.lr={other}"]}
    counts = {"machine-a": 1, "machine-b": 2}
    machines = {name: tmp_path / name for name in (*lines, "laptop")}
    try:
        for name, line in lines.items():
            clone(server, team, machines[name])
            sh(machines[name], "dvc", "pull")  # the baseline's outputs: nothing before train
            sh(machines[name], "dvc", "exp", "run", "--queue", *line)
        for name in lines:  # each machine runs its part; here the two side by side
            start_queue(machines[name], 1)
        for name, n in counts.items():
            # all listed and ended: between two runs DVC can list the next one nowhere
            status = wait_for_queue(machines[name], lambda s, n=n: len(s) == n and set(
                s.values()) <= {"Success", "Failed"}, between_runs=True)
            assert sorted(status.values()) == ["Success"] * n, status

        env = shell_env(VENV)
        pushes = {name: subprocess.Popen(["dvc", "exp", "push", "origin", "--all-commits"],
                                         cwd=machines[name], env=env, text=True,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT) for name in lines}
        assert all(proc.poll() is None for proc in pushes.values())  # both at once
        for name, proc in pushes.items():
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"{name}: {out}"
        refs = sh(machines["machine-a"], "git", "ls-remote", "origin", "refs/exps/*")
        assert len(refs.splitlines()) == 3, refs  # both machines' experiments

        laptop = clone(server, team, machines["laptop"])
        sh(laptop, "dvc", "exp", "pull", "origin", "--all-commits")
        found = experiments(laptop)
        assert sorted(float(exp["lr"]) for exp in found) == sorted(
            [committed["train"]["lr"], other, other]), found
        assert all(exp["step"] == 6 for exp in found), found
        names = [exp["name"] for exp in found]
        sh(laptop, "dvc", "plots", "diff", *names, "-o", "sweep")
        html = (laptop / "sweep" / "index.html").read_text()
        for name in names:
            assert f'"rev": "{name}"' in html, name  # its curves
            assert f"static/{name}_outputs_samples.png" in html, name  # its sample grid
            assert (laptop / "sweep" / "static" / f"{name}_outputs_samples.png").is_file()

        report = json.loads(run(laptop, "gan-compare", "--json", "--metric", "fid").stdout)
        assert report["differing_params"] == ["train.lr"], report
        groups = {g["params"]["train.lr"]: g for g in report["groups"]}
        assert sorted(groups) == sorted([committed["train"]["lr"], other]), groups
        for group in groups.values():
            assert sorted(group["seeds"]) == [0, 1], group
            fid = group["scores"]["fid"]
            assert group["n"] == 2 and len(set(fid["values"])) == 2, group
            low, high = fid["interval"]
            assert low < fid["mean"] < high, fid
        assert sorted(groups[other]["runs"]) == sorted(
            exp["name"] for exp in found if float(exp["lr"]) == other), groups
        (difference,) = [d for d in report["differences"] if d["metric"] == "fid"]
        assert difference["verdict"] in ("significant", "not significant"), difference

        for exp in found:  # outputs out of the cache the pull filled: no stage runs
            sh(laptop, "dvc", "exp", "apply", exp["name"])
            lock = yaml.safe_load((laptop / "dvc.lock").read_text())
            for stage, path in (("train", "models/gan.pt"), ("sample", "outputs/samples.png")):
                (out,) = [o for o in lock["stages"][stage]["outs"] if o["path"] == path]
                digest = hashlib.md5((laptop / path).read_bytes()).hexdigest()
                assert digest == out["md5"], (exp, path)
            assert (laptop / "outputs" / "pictures").is_dir()
            assert "Data and pipelines are up to date." in sh(laptop, "dvc", "status"), exp
    finally:
        for path in machines.values():
            if path.is_dir():
                stop_everything(path)


def test_a_push_killed_half_way_is_pushed_again(team, server):
    """`kill -9` of `dvc push` once the remote holds some of the baseline's files: what
    arrived is whole, the rest is missing, and the same push again completes it."""
    seed, killed = team["seed"], server.folder / "killed-storage"
    add_remote(seed, server, "killed", killed)
    proc = subprocess.Popen(["dvc", "push", "-r", "killed"], cwd=seed, env=shell_env(VENV),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and len(objects(killed)) < 20:
            assert time.monotonic() < deadline, "the push sent nothing in 120 s"
            time.sleep(0.02)
    finally:
        proc.kill()
    assert proc.wait() == -9, "the push ended before it could be killed half-way"

    arrived = len(objects(killed))
    assert arrived >= 20, arrived
    assert_whole(killed)
    for path in leftovers(killed):  # a transfer's temporary, beside the objects
        assert re.fullmatch(r"\.[\w-]+\.tmp", path.name), path

    again = sh(seed, "dvc", "push", "-r", "killed")
    total = len(objects(killed))
    assert total > arrived, (total, arrived)  # it was half-way
    assert f"{total - arrived} files pushed" in again, (again, total, arrived)
    assert "in sync" in sh(seed, "dvc", "status", "-c", "-r", "killed")
    assert set(objects(killed)) <= set(objects(team["storage"]))  # the baseline's, all of it
    assert_whole(killed)


def fails(repo: Path, *cmd: str) -> str:
    """A command that must fail: its output, DVC's traceback-free lines."""
    proc = subprocess.run(cmd, cwd=repo, env=shell_env(VENV), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode != 0, f"{' '.join(cmd)} did not fail:\n{proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


def documented(line: str) -> None:
    """docs/experiments.md's troubleshooting table quotes what DVC printed."""
    assert line in TROUBLESHOOTING.read_text(), f"docs/experiments.md does not quote: {line}"


def test_an_unreachable_server_is_named_with_its_port(team, server):
    seed, port = team["seed"], free_port()  # nothing listens there
    add_remote(seed, server, "unreachable", Path("/srv/storage"),
               url=f"ssh://127.0.0.1:{port}/srv/storage")
    out = fails(seed, "dvc", "push", "-r", "unreachable")
    assert f"ERROR: unexpected error - [Errno 111] Connect call failed ('127.0.0.1', {port})" \
        in out, out
    documented("ERROR: unexpected error - [Errno 111] Connect call failed")

    # git's side of `dvc exp push` / `dvc exp pull`: the same line
    url = f"ssh://{server.user}@127.0.0.1:{port}{team['origin']}"
    out = fails(seed, "dvc", "exp", "pull", url, "--all-commits")
    assert f"ERROR: unexpected error - [Errno 111] Connect call failed ('127.0.0.1', {port})" \
        in out, out


def test_a_refused_key_is_named_with_its_user(team, server, tmp_path):
    seed, stranger = team["seed"], keygen(tmp_path / "stranger_key")  # not authorized
    add_remote(seed, server, "refused", server.folder / "dvc-storage", keyfile=stranger)
    out = fails(seed, "dvc", "push", "-r", "refused")
    assert f"ERROR: unexpected error - Permission denied for user {server.user} on host " \
           "127.0.0.1" in out, out
    documented("ERROR: unexpected error - Permission denied for user")

    # git's side: a user the server does not let in
    url = f"ssh://nobody@127.0.0.1:{server.port}{team['origin']}"
    out = fails(seed, "dvc", "exp", "pull", url, "--all-commits")
    assert f"ERROR: Authentication failed for: 'nobody@127.0.0.1:{server.port}'" in out, out
    documented("ERROR: Authentication failed for:")


def test_without_the_plugin_dvc_names_it(team):
    """`pip install -e .` without `[ssh]`: dvc_ssh cannot be imported (here, hidden from
    this one dvc process)."""
    hidden = ("import sys\n"
              "class Hidden:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name == 'dvc_ssh':\n"
              "            raise ModuleNotFoundError(\"No module named 'dvc_ssh'\", name=name)\n"
              "sys.meta_path.insert(0, Hidden())\n"
              "from dvc.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    out = fails(team["seed"], "python", "-c", hidden, "push")
    line = "ERROR: unexpected error - ssh is supported, but requires 'dvc-ssh' to be installed: " \
           "No module named 'dvc_ssh'"
    assert line in out, out
    documented(line)


@pytest.fixture
def small_disk(server):
    """A 1 MiB tmpfs on the server's side (mount needs root): unmounted after."""
    disk = server.folder / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"no small disk to fill: mount -t tmpfs failed here "
                    f"({mounted.stderr.strip() or mounted.returncode})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_fails_the_push_and_keeps_what_arrived_whole(team, server, small_disk):
    """The prepared tensors (about 3 MiB) into 1 MiB: the push fails with DVC's lines, every
    object that arrived is whole and no temporary is left; once the server has room the same
    push completes."""
    seed, storage = team["seed"], small_disk / "storage"
    add_remote(seed, server, "small", storage)
    out = fails(seed, "dvc", "push", "-r", "small", "prepare")
    assert re.search(r"ERROR: failed to transfer '[0-9a-f]{32}(\.dir)?' - Failure", out), out
    assert re.search(r"ERROR: failed to push data to the cloud - \d+ files failed to upload",
                     out), out
    documented("ERROR: failed to transfer")
    documented("files failed to upload")
    assert_whole(storage)
    assert leftovers(storage) == []

    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
    assert "files pushed" in sh(seed, "dvc", "push", "-r", "small", "prepare")
    assert "in sync" in sh(seed, "dvc", "status", "-c", "-r", "small", "prepare")
    assert_whole(storage)
