"""train.py --with-feedback: merge decisions, compare on one held-out split, promote or refuse."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

import train as train_cli
from modclf.data import DataError
from modclf.feedback import HAM, Decision, FeedbackStore
from modclf.model import MODEL_FILE, load_artifact, sha256_file
from modclf.policy import DEFAULT_POLICY_PATH
from modclf.retrain import merge_decisions, promote
from modclf.serving.state import ServiceState
from modclf.training import train

ROOT = Path(__file__).resolve().parent.parent
PER_LABEL = 40


def _decision(id: str, text: str, label: str, minute: int = 0) -> Decision:
    at = dt.datetime(2026, 1, 1, 12, minute, tzinfo=dt.timezone.utc)
    return Decision(id, text, label, "test", at, at)


# -- merge ------------------------------------------------------------------------------------------

def test_moderator_label_overrides_the_corpus_label_for_the_same_text() -> None:
    corpus = pd.DataFrame({"text": ["Great  piece", "Great piece", "Where is it?", "spam here www.x.com"],
                           "label": ["support", "support", "question", "spam"]})
    decisions = [_decision("1", "Great piece ", "dispute"),           # same text modulo whitespace: both rows
                 _decision("2", "A new comment", "other"),             # not in the corpus: added
                 _decision("3", "Where is it?", "question"),           # confirms
                 _decision("4", "A new comment", "support", minute=5)]  # a later decision on the same text wins
    merged, stats = merge_decisions(corpus, decisions, None)
    assert merged["label"].tolist() == ["dispute", "dispute", "question", "spam", "support"]
    assert merged["text"].tolist()[-1] == "A new comment"
    assert stats["corpus_rows_relabeled"] == 2 and stats["corpus_rows_confirmed"] == 1 and stats["rows_added"] == 1


def test_merged_rows_keep_their_training_weight() -> None:
    corpus = pd.DataFrame({"text": ["Great piece", "Where is it?"], "label": ["support", "question"],
                           "weight": ["3", ""]})
    decisions = [_decision("1", "Great piece", "dispute"), _decision("2", "A new comment", "other")]
    merged, _ = merge_decisions(corpus, decisions, None)
    assert merged[["label", "weight"]].values.tolist() == [["dispute", 3], ["question", 1], ["other", 1]]


def test_ham_decisions_keep_a_non_spam_label_or_ask_the_current_model() -> None:
    corpus = pd.DataFrame({"text": ["Thanks!", "buy now www.x.com"], "label": ["support", "spam"]})
    decisions = [_decision("1", "Thanks!", HAM), _decision("2", "buy now www.x.com", HAM), _decision("3", "Hmm ok", HAM)]
    asked: list[list[str]] = []

    def non_spam(texts: list[str]) -> list[str]:
        asked.append(texts)
        return ["other"] * len(texts)

    merged, _ = merge_decisions(corpus, decisions, non_spam)
    assert dict(zip(merged["text"], merged["label"])) == {"Thanks!": "support", "buy now www.x.com": "other", "Hmm ok": "other"}
    assert sorted(asked[0]) == ["Hmm ok", "buy now www.x.com"]
    with pytest.raises(DataError, match="no current model"):
        merge_decisions(corpus, decisions, None)


# -- end to end, small data -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 comments per label from the shipped corpus: enough to train in about a second."""
    df = pd.read_csv(ROOT / "data" / "comments.csv", dtype=str, keep_default_na=False)
    parts = [g.sample(PER_LABEL, random_state=0) for _, g in df.groupby("label")]
    path = tmp_path_factory.mktemp("small") / "small.csv"
    pd.concat(parts)[["text", "label"]].to_csv(path, index=False)
    return path


def _store(path: Path, rows: list[tuple[str, str, str]]) -> str:
    url = f"sqlite:///{path}"
    store = FeedbackStore(url)
    for id, text, label in rows:
        store.record(id, text, label, "moderator")
    store.close()
    return url


def _run(small: Path, model_dir: Path, url: str) -> int:
    return train_cli.main(["--data", str(small), "--model-dir", str(model_dir), "--with-feedback",
                           "--feedback-db", url, "--no-progress"])


def _files(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir())}


#: A spam wave the corpus does not know, each written differently; moderators label them spam.
WAVE = [f"Join the {name} signal group, {n} coins a day guaranteed, message admin {handle} now"
        for name, n, handle in [("Golden Pump", 40, "gp_admin1"), ("Moon Whales", 35, "mw_boss"),
                                ("Alpha Calls", 50, "alpha_ceo"), ("Pump Kings", 45, "pk_king"),
                                ("Rocket Crew", 30, "rc_cap"), ("Diamond Hands", 60, "dh_lead"),
                                ("Whale Alerts", 25, "wa_chief"), ("Bull Riders", 55, "br_top"),
                                ("Coin Lords", 20, "cl_main"), ("Profit Wave", 65, "pw_desk"),
                                ("Green Candle", 70, "gc_mod"), ("Lambo Club", 75, "lc_vip"),
                                ("Hodl Gang", 80, "hg_boss"), ("Satoshi Circle", 85, "sc_head"),
                                ("Degen Den", 90, "dd_chief"), ("Gem Hunters", 95, "gh_lead"),
                                ("Chart Wizards", 15, "cw_admin"), ("Yield Farm", 12, "yf_desk"),
                                ("Token Tigers", 18, "tt_top"), ("Block Bosses", 22, "bb_main")]]


def test_better_candidate_is_promoted_and_picked_up_by_a_running_service(small: Path, tmp_path: Path, capsys) -> None:
    live = tmp_path / "model"
    train([small], live, folds=0, progress=False, report=lambda _: None)
    service = ServiceState(live, DEFAULT_POLICY_PATH)  # a running service, before promotion
    old_version = service.model_version
    original = pd.read_csv(small, dtype=str, keep_default_na=False)
    text = original.loc[original["label"] == "support", "text"].iloc[0]  # a moderator calls it dispute
    url = _store(tmp_path / "fb.db", [("m1", text, "dispute")] + [(f"w{i}", t, "spam") for i, t in enumerate(WAVE)])
    assert _run(small, live, url) == 0
    out = capsys.readouterr().out
    assert "candidate on the held-out split" in out and "without the feedback" in out
    assert f"current model {old_version} on the same held-out split" in out and "shown, not compared" in out
    assert "promoted model" in out

    meta = json.loads((live / "model.json").read_text())
    assert meta["model_file"].startswith("model-") and meta["model_file"] != MODEL_FILE
    assert sha256_file(live / meta["model_file"]) == sha256_file(live / MODEL_FILE) == meta["model_sha256"]
    fb = meta["training_data"]["feedback"]
    assert fb["decisions"] == 1 + len(WAVE) and fb["rows_added"] == len(WAVE) and fb["corpus_rows_relabeled"] >= 1
    held = meta["metrics"]["retrain_heldout"]
    assert held["candidate"]["macro_f1"] > held["without_feedback"]["macro_f1"]  # it learned the wave
    assert held["previous_version"] == old_version and held["current"] is not None
    assert load_artifact(live).version == meta["model_version"] != old_version
    # the running service swaps to it on reload (what POST /v1/admin/reload and HUP call)
    assert service.reload() == meta["model_version"]
    assert service.classify(["Thanks, very helpful!"])[0]["model_version"] == meta["model_version"]

    # promoting again keeps the current and the previous model files only
    url2 = _store(tmp_path / "fb2.db", [("m3", "Subscribe to my channel for daily crypto signals", "spam")])
    assert _run(small, live, url2) in (0, 3)
    versioned = [p.name for p in live.glob("model-*.joblib")]
    assert len(versioned) <= 2 and json.loads((live / "model.json").read_text())["model_file"] in versioned


def test_confirming_decisions_are_promoted_although_the_current_model_scores_higher(small: Path, tmp_path: Path,
                                                                                     capsys) -> None:
    """The current model was fit on every row, held-out ones included, so it scores its own training
    data; with it as the bar no honest candidate was ever promoted (0.82 against 0.94 on the
    shipped corpus). Decisions that only confirm corpus labels change nothing: promoted."""
    live = tmp_path / "model"
    train([small], live, folds=0, progress=False, report=lambda _: None)
    df = pd.read_csv(small, dtype=str, keep_default_na=False)
    url = _store(tmp_path / "fb.db", [(f"c{i}", t, label) for i, (t, label) in enumerate(zip(df["text"][:5], df["label"][:5]))])
    assert _run(small, live, url) == 0
    held = json.loads((live / "model.json").read_text())["metrics"]["retrain_heldout"]
    assert held["current"]["macro_f1"] > held["candidate"]["macro_f1"] == held["without_feedback"]["macro_f1"]


def test_worse_candidate_is_refused_and_the_model_is_untouched(small: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import modclf.retrain as R

    live = tmp_path / "model"
    train([small], live, folds=0, progress=False, report=lambda _: None)
    before = _files(live)
    df = pd.read_csv(small, dtype=str, keep_default_na=False)
    url = _store(tmp_path / "fb.db", [("c0", df["text"][0], df["label"][0])])
    real_fit = R.fit_model
    fits = []

    def fit_model(texts, labels, seed, weights=None):  # the candidate (first fit) learns shuffled labels
        fits.append(len(texts))
        if len(fits) == 1:
            labels = list(pd.Series(labels).sample(frac=1, random_state=1))
        return real_fit(texts, labels, seed, weights)

    monkeypatch.setattr(R, "fit_model", fit_model)
    assert _run(small, live, url) == 3
    out = capsys.readouterr().out
    assert "refused: candidate macro-F1" in out and "without the feedback" in out and len(fits) == 2
    assert _files(live) == before


def test_missing_store_or_bad_data_exit_2(small: Path, tmp_path: Path, capsys) -> None:
    assert _run(small, tmp_path / "model", f"sqlite:///{tmp_path / 'absent.db'}") == 2
    assert "no such database file" in capsys.readouterr().err
    tiny = tmp_path / "tiny.csv"
    pd.DataFrame({"text": ["a", "b"], "label": ["spam", "other"]}).to_csv(tiny, index=False)
    url = _store(tmp_path / "fb.db", [("x", "hello there", "support")])
    assert train_cli.main(["--data", str(tiny), "--model-dir", str(tmp_path / "m"), "--with-feedback",
                           "--feedback-db", url, "--no-progress"]) == 2


def test_promote_switches_with_one_rename(small: Path, tmp_path: Path) -> None:
    """A reader that read model.json before the switch still loads the model it names, intact; one
    that reads it after loads the new model. (load_artifact checks the sha256, so a mix never loads.)"""
    live = tmp_path / "model"
    train([small], live, folds=0, progress=False, report=lambda _: None)
    pipeline = load_artifact(live).pipeline
    first = promote(pipeline, {"model_version": "promoted-1", "labels": []}, live)
    before_switch = json.loads((live / "model.json").read_text())  # what a slow reader holds
    other = copy.deepcopy(pipeline)
    other.named_steps["clf"].coef_ *= 0.5  # another model: other bytes, other checksum
    second = promote(other, {"model_version": "promoted-2", "labels": []}, live)
    assert first["model_file"] != second["model_file"]
    old_file = live / before_switch["model_file"]
    assert sha256_file(old_file) == before_switch["model_sha256"]  # the old reader's model is intact
    assert load_artifact(live).version == "promoted-2"
    assert sha256_file(live / MODEL_FILE) == second["model_sha256"]
    assert not list(live.glob(".*.tmp"))


def test_promote_writes_the_fast_arrays_under_the_models_name(small: Path, tmp_path: Path) -> None:
    """A promoted model is served by the fast path from its own arrays (no unpickling needed), and
    a reader holding the previous model.json still finds the arrays it names, intact."""
    from modclf.model import FAST_META_KEY, load_fast_arrays
    from modclf.moderator import LoadedModel

    live = tmp_path / "model"
    train([small], live, folds=0, progress=False, report=lambda _: None)
    pipeline = load_artifact(live).pipeline
    first = promote(pipeline, {"model_version": "promoted-1", "labels": []}, live)
    assert first[FAST_META_KEY]["file"] == f"model-{first['model_sha256'][:16]}.fast.npz"
    other = copy.deepcopy(pipeline)
    other.named_steps["clf"].coef_ *= 0.5
    second = promote(other, {"model_version": "promoted-2", "labels": []}, live)
    assert second[FAST_META_KEY]["file"] != first[FAST_META_KEY]["file"]
    assert load_fast_arrays(live, first) is not None  # the old reader's arrays: present, sha256 verified
    arrays = load_fast_arrays(live, json.loads((live / "model.json").read_text()))
    assert arrays is not None
    lazy = LoadedModel.load(live, lazy=True)  # the fast path from the arrays alone
    assert lazy.version == "promoted-2"
    texts = ["Is this true?", "FREE followers at fans4u dot net", "Thank you Iran"]
    import numpy as np

    from modclf.model import ModelArtifact

    assert np.allclose(lazy.predict_proba(texts), ModelArtifact(pipeline=other).predict_proba(texts), atol=1e-12)
    third_pipeline = copy.deepcopy(pipeline)
    third_pipeline.named_steps["clf"].coef_ *= 0.25
    third = promote(third_pipeline, {"model_version": "promoted-3", "labels": []}, live)
    assert not (live / first[FAST_META_KEY]["file"]).exists()  # older than the previous: removed
    assert (live / second[FAST_META_KEY]["file"]).exists() and (live / third[FAST_META_KEY]["file"]).exists()
