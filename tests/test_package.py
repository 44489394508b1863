"""The package as a newcomer meets it: a Flask-free core, one error family, the public Python API,
one command with a fast --help, and an installed wheel that works outside the checkout."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import modclf
from modclf.errors import ConfigError, DataError, FeedbackError, ModclfError, ModelError, PolicyError, ScoringError

from .conftest import DATA, ROOT

WEB_MODULES = ("flask", "werkzeug")
HEAVY_MODULES = ("sklearn", "pandas", "numba", "scipy", "flask", "sqlalchemy", "matplotlib")


def core_modules() -> list[str]:
    """Every module of modclf outside the web layer (modclf.serving) and gunicorn's config."""
    names = []
    for info in pkgutil.walk_packages(modclf.__path__, "modclf."):
        if info.name.startswith("modclf.serving") or info.name in ("modclf.gunicorn_conf", "modclf.__main__"):
            continue
        names.append(info.name)
    return names


def fresh_python(code: str, cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs)


def test_core_modules_never_load_flask_or_werkzeug() -> None:
    modules = core_modules()
    assert {"modclf.moderator", "modclf.feedback", "modclf.retrain", "modclf.scoring", "modclf.cli"} <= set(modules)
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print([m for m in {WEB_MODULES!r} if m in sys.modules])")
    proc = fresh_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"web modules loaded by the core: {proc.stdout}"


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys\nfrom modclf.cli import build_parser\nimport modclf\nbuild_parser().format_help()\n"
            f"print([m for m in {HEAVY_MODULES!r} if m in sys.modules])")
    proc = fresh_python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    help_text = subprocess.run([sys.executable, "-m", "modclf", "--help"], capture_output=True, text=True, timeout=60).stdout
    for command in ("train", "eval", "score", "serve", "feedback"):
        assert command in help_text


# -- one error family ------------------------------------------------------------------------------


def test_every_bad_input_raises_a_modclf_error(tmp_path: Path) -> None:
    from modclf.data import read_labeled
    from modclf.feedback import FeedbackStore
    from modclf.policy import load_policy
    from modclf.scoring import score_file
    from modclf.settings import load_settings

    (tmp_path / "bad.csv").write_text("id,text\n1,hello\n")
    (tmp_path / "policy.yaml").write_text("labels: {spam: [{at_least: 2, action: reject}]}\n")
    cases = [
        (ModelError, lambda: modclf.load(tmp_path / "nowhere")),
        (PolicyError, lambda: load_policy(tmp_path / "policy.yaml")),
        (DataError, lambda: read_labeled(tmp_path / "bad.csv")),
        (ConfigError, lambda: load_settings({"max_batch": "many"}, environ={})),
        (ScoringError, lambda: score_file(tmp_path / "missing.csv", tmp_path / "out.csv", tmp_path)),
        (FeedbackError, lambda: FeedbackStore("not a url")),
    ]
    for expected, call in cases:
        with pytest.raises(expected) as info:
            call()
        assert isinstance(info.value, ModclfError) and "\n" not in str(info.value), expected


@pytest.mark.parametrize("argv,needle", [
    (["train", "--data", "/nonexistent.csv", "--model-dir", "/tmp/x"], "/nonexistent.csv"),
    (["eval", "/nonexistent.csv"], "/nonexistent.csv"),
    (["score", "/nonexistent.csv", "-o", "/tmp/out.csv"], "/nonexistent.csv"),
    (["serve", "--model-dir", "/nonexistent"], "model"),
])
def test_every_command_reports_errors_in_one_line_with_status_2(argv: list[str], needle: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "modclf", *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr


# -- the public Python API -------------------------------------------------------------------------


def test_public_api_load_and_classify(model_dir: Path) -> None:
    moderator = modclf.load(model_dir)
    verdicts = moderator.classify(["Thank you for the report, very helpful.",
                                   "Earn $500 a day from home!!! Click www.easy-cash-now.com and sign up today"])
    assert [v.label for v in verdicts] == ["support", "spam"]
    assert verdicts[1].action == "reject" and verdicts[0].action == "approve"
    assert all(abs(sum(v.probabilities.values()) - 1) < 1e-9 for v in verdicts)
    assert verdicts[0].model_version == moderator.version and verdicts[0].policy_version == moderator.policy_version
    long = moderator.classify(["word " * 5000])[0]
    assert long.truncated and long.action != "approve"
    with pytest.raises(TypeError, match="wrap it in a list"):
        moderator.classify("one string")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a mapping"):
        moderator.classify({"Thanks": 1})  # type: ignore[arg-type]
    generated = moderator.classify(t for t in ["Thanks!", "Is this confirmed?"])  # used up by a check before
    assert [v.label for v in generated] == [v.label for v in moderator.classify(["Thanks!", "Is this confirmed?"])]
    assert len(generated) == 2
    explained = moderator.classify(["Earn money at www.easy-cash-now.com"], explain=True, explain_top=3)[0]
    assert len(explained.explanation["top_ngrams"]) == 3 and "explanation" in explained.as_dict()


# -- installed, outside the checkout ------------------------------------------------------------------


@pytest.mark.slow
def test_wheel_installs_a_working_command_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("modclf-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "modclf/policy.yaml" in names and "modclf/serving/openapi.json" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "modclf = modclf.cli:main" in entry_points
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    work = tmp_path / "empty"
    work.mkdir()
    pd.read_csv(DATA, dtype=str, keep_default_na=False).groupby("label").head(80).to_csv(work / "my.csv", index=False)
    # the installed copy, not the checkout: PYTHONPATH puts it first, the dependencies come from this venv
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def modclf_cmd(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "modclf", *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)

    located = fresh_python("import modclf; print(modclf.__file__)", cwd=work, env=env)
    assert located.stdout.startswith(str(site)), located.stdout + located.stderr
    assert modclf_cmd("train", "--data", "my.csv", "--model-dir", "m", "--folds", "0", "--no-progress").returncode == 0
    pd.DataFrame({"text": ["Thank you Iran", "subscribe to my channel www.x.example", ""]}).to_csv(work / "in.csv", index=False)
    scored = modclf_cmd("score", "in.csv", "-o", "out.csv", "--model-dir", "m")
    assert scored.returncode == 0, scored.stderr
    out = pd.read_csv(work / "out.csv", dtype=str, keep_default_na=False)
    assert len(out) == 3 and set(out["action"]) <= {"approve", "review", "reject"} and out.loc[2, "action"] == "review"
    api = fresh_python("import modclf, json; v = modclf.load('m').classify(['Thank you Iran'])[0]; "
                       "print(json.dumps(v.as_dict()))", cwd=work, env=env)
    assert api.returncode == 0 and json.loads(api.stdout)["action"] in ("approve", "review", "reject"), api.stderr
