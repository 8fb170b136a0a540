"""The package as installed, not as checked out: a wheel built from a copy of the tree
holds the shipped models and only the ``serstream`` package, and, installed into a
virtual environment and run from a folder away from the checkout, finds its model.

(`.ci/wheel-check` does the same from an isolated ``python -m build`` into an
environment that shares nothing with this machine's packages.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from procs import EXAMPLES, ROOT


def _run(*cmd, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert r.returncode == 0, f"{cmd}: {r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


def _tree_copy(dest: Path) -> Path:
    """The files a clone would have (tracked, and new ones git does not ignore)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src, dst = ROOT / name, dest / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        else:
            shutil.copy2(src, dst)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pkg")
    tree = _tree_copy(tmp / "tree")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", tmp / "dist", tree, cwd=tmp)
    (found,) = (tmp / "dist").glob("serstream-*.whl")
    return found


def _modules() -> list[str]:
    """Every module of the package in the checkout, as dotted names."""
    pkg = ROOT / "serstream"
    return sorted(".".join(("serstream", *p.relative_to(pkg).with_suffix("").parts)).removesuffix(".__init__")
                  for p in pkg.rglob("*.py") if p.name != "__main__.py")


def test_wheel_holds_the_shipped_models_and_no_train(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"serstream"}, top  # no top-level `train` (or anything else) in site-packages
    code = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "serstream").rglob("*.py"))
    missing = [c for c in code if c not in names]
    assert not missing, f"modules left out of the wheel: {missing}"
    shipped = sorted(p.name for p in (ROOT / "models").iterdir() if p.suffix in (".onnx", ".md", ".txt"))
    assert any(n.endswith(".onnx") for n in shipped)
    packaged = sorted(n.removeprefix("serstream/models/") for n in names if n.startswith("serstream/models/"))
    assert packaged == shipped  # every model and card, and not the data split
    assert "serstream/schema/event.schema.json" in names
    # serstream view's page and the chart library it draws with, with its licence
    static = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "serstream" / "view" / "static").rglob("*")
                    if p.is_file())
    assert {"serstream/view/static/index.html", "serstream/view/static/vendor/uplot/LICENSE"} <= set(static)
    assert [f for f in static if f not in names] == []


def test_installed_wheel_finds_its_model_away_from_the_checkout(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    # the machine's packages provide the dependencies (no index needed); serstream itself
    # comes from the wheel, installed into the venv's own site-packages
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    py = env_dir / "bin" / "python"
    _run(py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    away = tmp_path / "elsewhere"
    away.mkdir()
    info = json.loads(_run(env_dir / "bin" / "serstream", "info", "whisper", "--json", cwd=away).stdout)
    # every module comes from the venv (the machine may also have an editable serstream)
    script = "import importlib, sys\nfor m in sys.argv[1:]: print(importlib.import_module(m).__file__)"
    files = _run(py, "-c", script, *_modules(), cwd=away).stdout.split()
    outside = [f for f in files if not Path(f).is_relative_to(env_dir)]
    assert files and not outside, f"imported from outside the installed wheel: {outside}"
    site = Path(files[0]).parent
    assert Path(info["path"]) == site / "models" / "serstream-whisper.onnx"
    assert not Path(info["path"]).is_symlink() and info["labels"]
    clip = EXAMPLES / "sad_savee_DC_sa01.wav"
    r = _run(env_dir / "bin" / "serstream", "replay", "--speed", "0", "--no-publish", "--json", clip, cwd=away)
    events = [json.loads(x) for x in r.stdout.splitlines()]
    assert events and events[-1]["final"] and events[-1]["label"] in info["labels"]
