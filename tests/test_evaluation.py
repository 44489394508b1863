"""Decision and calibration measures of ``train.py --eval`` (modclf.evaluation, training.evaluate)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modclf.evaluation import (
    SWEEP_THRESHOLDS,
    calibration_metrics,
    decision_metrics,
    escalation_sweep,
    format_decisions,
    format_sweep,
    policy_actions,
    proba_in_label_order,
    save_reliability_png,
    true_action,
)
from modclf.labels import LABELS
from modclf.language import detect
from modclf.model import sha256_file
from modclf.policy import parse_policy
from modclf.training import evaluate, train

from .conftest import DATA

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: A small policy whose every outcome below is worked out by hand.
POLICY = parse_policy({
    "min_confidence": 0.5,
    "below_min_confidence": "review",
    "default": "review",
    "labels": {
        "spam": [{"at_least": 0.9, "action": "reject"}, {"at_least": 0.0, "action": "review"}],
        "dispute": [{"at_least": 0.0, "action": "review"}],
        "question": [{"at_least": 0.0, "action": "approve"}],
        "support": [{"at_least": 0.0, "action": "approve"}],
        "other": [{"at_least": 0.0, "action": "approve"}],
    },
    "escalate": [{"label": "spam", "at_least": 0.3, "action": "review"}],
    "floors": {"truncated": "review"},
})

# Columns in LABELS order: spam, dispute, question, support, other.
# true label, probabilities, the action POLICY takes (true actions: spam reject, dispute review, else approve)
ROWS = [
    ("spam", [0.95, 0.05, 0, 0, 0]),      # 1 spam 0.95 -> reject            (agrees)
    ("spam", [0.60, 0, 0, 0, 0.40]),      # 2 spam 0.60 -> review            (differs)
    ("spam", [0.20, 0, 0, 0, 0.80]),      # 3 other 0.80 -> approve          (differs, spam published)
    ("dispute", [0, 0.70, 0, 0, 0.30]),   # 4 dispute -> review              (agrees)
    ("dispute", [0, 0.30, 0, 0, 0.70]),   # 5 other -> approve               (differs, dispute approved)
    ("other", [0.35, 0, 0, 0, 0.65]),     # 6 other, p(spam) 0.35 -> review  (differs, escalated)
    ("other", [0.92, 0, 0, 0, 0.08]),     # 7 spam 0.92 -> reject            (differs, non-spam rejected)
    ("support", [0, 0, 0, 0.90, 0.10]),   # 8 support -> approve             (agrees)
    ("question", [0, 0.2, 0.4, 0.1, 0.3]),  # 9 question 0.40 < 0.5 -> review  (differs)
    ("other", [0, 0, 0, 0.10, 0.90]),     # 10 other -> approve, but truncated -> review (differs)
]
Y = [label for label, _ in ROWS]
PROBA = np.array([p for _, p in ROWS], dtype=float)
TRUNCATED = [False] * 9 + [True]
SOURCES = ["video"] * 3 + ["news"] * 7


def test_true_action_is_the_policy_on_a_certain_prediction() -> None:
    assert {label: true_action(label, POLICY) for label in LABELS} == {
        "spam": "reject", "dispute": "review", "question": "approve", "support": "approve", "other": "approve"}


def test_policy_actions_row_by_row() -> None:
    expected = ["reject", "review", "approve", "review", "approve", "review", "reject", "approve", "review"]
    assert policy_actions(PROBA, POLICY, TRUNCATED) == expected + ["review"]
    assert policy_actions(PROBA, POLICY) == expected + ["approve"]  # not truncated: approved


def test_decision_metrics_by_hand() -> None:
    d = decision_metrics(Y, PROBA, POLICY, truncated=TRUNCATED)
    assert d["n"] == 10
    assert d["actions"] == {"approve": {"count": 3, "share": 0.3}, "review": {"count": 5, "share": 0.5},
                            "reject": {"count": 2, "share": 0.2}}
    assert d["action_differs"] == {"count": 7, "share": 0.7}
    assert d["spam_published"] == {"count": 1, "of": 3, "share": 0.3333}
    assert d["non_spam_rejected"] == {"count": 1, "of": 7, "share": 0.1429}
    assert d["disputes_approved"] == {"count": 1, "of": 2, "share": 0.5}
    assert d["truncated"] == 1
    # rows: true action approve / review / reject; columns: action taken approve / review / reject
    assert d["action_confusion"]["rows_true_cols_action"] == [[1, 3, 1], [1, 1, 0], [1, 1, 1]]
    assert "by_source" not in d


def test_decision_metrics_without_truncation_flags_approves_the_long_row() -> None:
    d = decision_metrics(Y, PROBA, POLICY)
    assert d["actions"]["approve"]["count"] == 4 and d["action_differs"]["count"] == 6 and d["truncated"] == 0


def test_decision_metrics_per_source_by_hand() -> None:
    by = decision_metrics(Y, PROBA, POLICY, truncated=TRUNCATED, sources=SOURCES)["by_source"]
    assert list(by) == ["news", "video"]
    video, news = by["video"], by["news"]
    # video: three spam rows, predicted spam, spam, other -> spam F1 = 2*1*(2/3)/(1+2/3) = 0.8
    assert video["n"] == 3 and video["accuracy"] == 0.6667 and video["macro_f1"] == 0.8
    assert video["labels"] == ["spam"]
    assert video["actions"] == {"approve": 0.3333, "review": 0.3333, "reject": 0.3333}
    assert video["spam_published"] == {"count": 1, "of": 3, "share": 0.3333}
    # news: 5 of 7 right; F1 dispute 2/3, question 1, support 1, other 2/3 -> macro 0.8333
    assert news["n"] == 7 and news["accuracy"] == 0.7143 and news["macro_f1"] == 0.8333
    assert news["labels"] == ["dispute", "question", "support", "other"]
    assert news["actions"]["approve"] == 0.2857
    assert news["spam_published"] == {"count": 0, "of": 0, "share": None}
    assert news["disputes_approved"] == {"count": 1, "of": 2, "share": 0.5}


def test_escalation_sweep_by_hand() -> None:
    """POLICY has no dispute escalation: at 0.50 row 5 (other 0.70, p(dispute) 0.30) is approved;
    at 0.25 it is held, and nothing else changes (row 9's p(dispute) 0.2 stays under both)."""
    high, low = escalation_sweep(Y, PROBA, POLICY, "dispute", thresholds=(0.25, 0.5), truncated=TRUNCATED)
    assert [high["threshold"], low["threshold"]] == [0.5, 0.25] and not high["current"] and not low["current"]
    assert high["label_approved"] == {"count": 1, "of": 2, "share": 0.5}
    assert low["label_approved"] == {"count": 0, "of": 2, "share": 0.0}
    assert high["actions"] == {"approve": 0.3, "review": 0.5, "reject": 0.2}
    assert low["actions"] == {"approve": 0.2, "review": 0.6, "reject": 0.2}
    # the spam escalation stays in force: row 6 (p(spam) 0.35) is held at both thresholds
    assert high["spam_published"] == low["spam_published"] == {"count": 1, "of": 3, "share": 0.3333}


def test_escalation_sweep_includes_and_marks_the_current_threshold() -> None:
    rows = escalation_sweep(Y, PROBA, POLICY, "spam", thresholds=(0.5, 0.1), truncated=TRUNCATED)
    assert [r["threshold"] for r in rows] == [0.5, 0.3, 0.1]
    current = rows[1]
    assert current["current"] and not rows[0]["current"] and not rows[2]["current"]
    d = decision_metrics(Y, PROBA, POLICY, truncated=TRUNCATED)  # the policy as it is
    assert current["actions"] == {a: d["actions"][a]["share"] for a in ("approve", "review", "reject")}
    assert current["action_differs"] == d["action_differs"]["share"]
    assert rows[2]["spam_published"]["count"] == 0  # p(spam) 0.20 >= 0.1: row 3 held
    table = format_sweep(rows, "spam", "title")
    assert "*0.30" in table and "p(spam) >=" in table and "1/3" in table and "0/3" in table
    with pytest.raises(ValueError, match="unknown label"):
        escalation_sweep(Y, PROBA, POLICY, "spma")


def test_decision_metrics_refuses_mismatched_input() -> None:
    with pytest.raises(ValueError, match="LABELS order"):
        decision_metrics(Y, PROBA[:, :4], POLICY)
    with pytest.raises(ValueError, match="probability rows"):
        decision_metrics(Y[:5], PROBA, POLICY)
    with pytest.raises(ValueError, match="sources"):
        decision_metrics(Y, PROBA, POLICY, sources=SOURCES[:3])


def test_proba_in_label_order_reorders_and_fills_missing_labels() -> None:
    classes = ["other", "spam", "dispute", "support"]  # no "question"
    raw = np.array([[0.1, 0.2, 0.3, 0.4]])
    assert proba_in_label_order(raw, classes).tolist() == [[0.2, 0.3, 0.0, 0.4, 0.1]]


def _rows(conf: float, n: int, correct: int) -> tuple[list[str], list[list[float]]]:
    """``n`` rows whose top label is spam with probability ``conf``; the first ``correct`` are spam."""
    rest = (1 - conf) / 4
    return ["spam"] * correct + ["dispute"] * (n - correct), [[conf, rest, rest, rest, rest]] * n


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    y1, p1 = _rows(0.75, 4, 3)  # bin (0.7, 0.8]: confidence 0.75, accuracy 3/4
    y2, p2 = _rows(0.45, 20, 9)  # bin (0.4, 0.5]: confidence 0.45, accuracy 9/20
    cal = calibration_metrics(y1 + y2, np.array(p1 + p2))
    assert cal["ece"] == 0.0 and cal["mce"] == 0.0
    assert cal["n"] == 24 and len(cal["bins"]) == 10
    filled = {(b["lo"], b["hi"]): (b["n"], b["confidence"], b["accuracy"]) for b in cal["bins"] if b["n"]}
    assert filled == {(0.7, 0.8): (4, 0.75, 0.75), (0.4, 0.5): (20, 0.45, 0.45)}
    assert all(b["confidence"] is None and b["accuracy"] is None for b in cal["bins"] if not b["n"])


def test_ece_of_an_overconfident_model() -> None:
    y1, p1 = _rows(0.95, 4, 2)  # confidence 0.95, accuracy 0.5: gap 0.45
    y2, p2 = _rows(0.35, 2, 2)  # confidence 0.35, accuracy 1.0: gap 0.65
    cal = calibration_metrics(y1 + y2, np.array(p1 + p2))
    assert cal["ece"] == pytest.approx(4 / 6 * 0.45 + 2 / 6 * 0.65, abs=1e-4)  # 0.5167
    assert cal["mce"] == 0.65
    assert cal["mean_confidence"] == 0.75 and cal["accuracy"] == 0.6667


def test_reliability_png_is_written(tmp_path: Path) -> None:
    cal = calibration_metrics(Y, PROBA)
    path = save_reliability_png(cal, tmp_path / "sub" / "r.png", "toy", baseline=calibration_metrics(Y, PROBA[::-1]))
    assert path == tmp_path / "sub" / "r.png"
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_format_decisions_shows_every_measure() -> None:
    d = decision_metrics(Y, PROBA, POLICY, truncated=TRUNCATED, sources=SOURCES)
    text = format_decisions(d, "toy decisions", calibration_metrics(Y, PROBA))
    assert text.startswith("toy decisions")
    for part in ("approve 3 (30.0%)", "review 5 (50.0%)", "reject 2 (20.0%)", "7 of 10 (70.0%)",
                 "spam published without review:  1 of 3 (33.3%)", "non-spam rejected:               1 of 7 (14.3%)",
                 "disputes auto-approved:          1 of 2 (50.0%)", "video", "news", "ECE"):
        assert part in text, part


# -- training.evaluate end to end --------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A model trained without cross-validation on 60 rows per label of the corpus."""
    df = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    base = tmp_path_factory.mktemp("small")
    data = base / "small.csv"
    df.groupby("label").head(60).to_csv(data, index=False)
    train([data], base / "model", folds=0, progress=False, report=lambda s: None)
    return data, base / "model"


@pytest.fixture()
def labeled_with_sources(tmp_path: Path) -> Path:
    """20 held-out corpus rows in two sources, plus one comment longer than the model's window."""
    corpus = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    last = corpus.groupby("label").tail(40)
    english = last[[d.lang == "en" and d.reliable for d in map(detect, last["text"])]]  # the small model reads English only
    df = english.groupby("label").tail(4)[["text", "label"]]
    df["source"] = ["forum", "video"] * (len(df) // 2)
    long = pd.DataFrame([{"text": "The council meeting ran long again tonight. " * 300, "label": "other",
                          "source": "forum"}])
    path = tmp_path / "tiny_eval.csv"
    pd.concat([df, long], ignore_index=True).to_csv(path, index=False)
    return path


def test_evaluate_reports_and_records_decisions_and_calibration(
    tmp_path: Path, small_model: tuple[Path, Path], labeled_with_sources: Path
) -> None:
    data, model_dir = small_model
    digest = sha256_file(model_dir / "model.joblib")
    lines: list[str] = []
    png = tmp_path / "plots" / "cm.png"
    out = evaluate(labeled_with_sources, model_dir, data_paths=[data], report=lines.append, png_path=png)
    text = "\n".join(lines)
    for part in ("macro-F1", "decisions of model", "decisions of the naive baseline", "spam published without review",
                 "disputes auto-approved", "non-spam rejected", "calibration", "ECE", "forum", "video"):
        assert part in text, part
    assert text.index("confusion matrix") < text.index("decisions of model")  # after the label report

    for who in ("model", "baseline"):
        d = out["decisions"][who]
        assert d["n"] == 21 and d["truncated"] == 1
        assert sum(a["count"] for a in d["actions"].values()) == 21
        assert set(d["by_source"]) == {"forum", "video"} and d["by_source"]["forum"]["n"] == 11
        assert out["calibration"][who]["n"] == 21 and 0.0 <= out["calibration"][who]["ece"] <= 1.0
    assert out["policy"]["file"] == "policy.yaml"

    assert png.read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "plots" / "cm_reliability.png").read_bytes()[:8] == PNG_MAGIC
    recorded = json.loads((model_dir / "model.json").read_text())["evaluations"]["tiny_eval.csv"]
    assert recorded["decisions"] == json.loads(json.dumps(out["decisions"]))
    assert recorded["calibration"] == json.loads(json.dumps(out["calibration"]))
    assert sha256_file(model_dir / "model.joblib") == digest


def test_evaluate_uses_the_given_policy_and_never_approves_a_truncated_comment(
    tmp_path: Path, small_model: tuple[Path, Path], labeled_with_sources: Path
) -> None:
    data, model_dir = small_model
    approve_all = tmp_path / "approve_all.yaml"
    approve_all.write_text("version: 1\ndefault: approve\nlabels: {}\n")  # floors keep their safe default
    out = evaluate(labeled_with_sources, model_dir, data_paths=[data], record=False, report=lambda s: None,
                   policy_path=approve_all)
    # the baseline is decided by the policy alone: everything approved but the long (truncated) comment
    base = out["decisions"]["baseline"]["actions"]
    assert base["review"]["count"] == 1 and base["approve"]["count"] == 20
    # the model's decisions are the service's under that policy: the truncated comment is held too,
    # and the readings of cue sentences and foreign parts may hold a few more; nothing is rejected
    import modclf
    from modclf.policy import load_policy

    texts = pd.read_csv(labeled_with_sources, dtype=str, keep_default_na=False)["text"].tolist()
    service = [v.action for v in modclf.Moderator.load(model_dir, load_policy(approve_all)).classify(texts)]
    actions = out["decisions"]["model"]["actions"]
    assert {a: actions[a]["count"] for a in ("approve", "review", "reject")} == {
        a: service.count(a) for a in ("approve", "review", "reject")}
    assert service[-1] == "review" and "reject" not in service and service.count("approve") >= 15
    assert out["policy"]["file"] == "approve_all.yaml"


def test_evaluate_sweeps_the_dispute_escalation(small_model: tuple[Path, Path], labeled_with_sources: Path) -> None:
    data, model_dir = small_model
    lines: list[str] = []
    out = evaluate(labeled_with_sources, model_dir, data_paths=[data], record=False, report=lines.append,
                   sweep="dispute")
    rows = out["sweep"]["rows"]
    assert out["sweep"]["label"] == "dispute"
    assert len(rows) == len(SWEEP_THRESHOLDS) + 1 and sum(r["current"] for r in rows) == 1  # + the policy's 0.18
    approved = [r["actions"]["approve"] for r in rows]
    assert approved == sorted(approved, reverse=True)  # a lower threshold never approves more
    assert rows[0]["label_approved"]["count"] >= rows[-1]["label_approved"]["count"]
    assert "p(dispute) >=" in "\n".join(lines)


def test_evaluate_on_the_real_dev_file_breaks_down_by_source(real_dev: Path, small_model: tuple[Path, Path]) -> None:
    data, model_dir = small_model
    out = evaluate(real_dev, model_dir, data_paths=[data], record=False, report=lambda s: None)
    sources = set(pd.read_csv(real_dev, dtype=str, keep_default_na=False)["source"])
    assert set(out["decisions"]["model"]["by_source"]) == sources
    assert sum(s["n"] for s in out["decisions"]["model"]["by_source"].values()) == out["model"]["n"]


def test_eval_command_prints_the_sweep(small_model: tuple[Path, Path], labeled_with_sources: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from modclf.cli import main

    data, model_dir = small_model
    status = main(["eval", "--no-record", "--model-dir", str(model_dir), "--data", str(data), "--sweep", "spam",
                   str(labeled_with_sources)])
    out = capsys.readouterr().out
    assert status == 0 and "escalation on p(spam) moved" in out and "*0.15" in out  # the shipped policy's 0.15
    assert "spam approved" in out


def test_eval_of_a_file_with_only_a_header_is_a_one_line_error(small_model: tuple[Path, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from modclf.cli import main

    _, model_dir = small_model
    (tmp_path / "hdr.csv").write_text("text,label\n")
    assert main(["eval", "--no-record", "--model-dir", str(model_dir), str(tmp_path / "hdr.csv")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'hdr.csv'}: no data rows (only a header); nothing to evaluate\n"


def test_macro_f1_leaves_out_a_label_neither_the_file_nor_the_model_uses() -> None:
    from modclf.evaluation import compute_metrics

    y = ["spam", "spam", "other", "support"]
    assert compute_metrics(y, y)["macro_f1"] == 1.0  # no dispute or question anywhere: not five classes
    # a label the model predicts that the file lacks still counts (F1 0)
    assert compute_metrics(y, ["spam", "spam", "other", "question"])["macro_f1"] == 0.5  # spam 1, other 1, support 0, question 0


def test_eval_decisions_are_the_services_decisions(tmp_path: Path, model_dir: Path) -> None:
    """A plug appended to an ordinary comment is held by the reading of its cue sentence, which the
    policy alone (top label, probabilities) does not see: eval counted such comments as approved."""
    import modclf
    from modclf.training import evaluate

    texts = ["Thanks for the clear report, it helped me understand the vote.",
             "Thanks for the clear report, it helped me understand the vote. More here: \uff53\uff59\uff52\uff49\uff41.\uff43\uff4f\uff4d",
             "Is there a list of the polling stations somewhere?", "This is simply false and you know it."]
    path = tmp_path / "e.csv"
    pd.DataFrame({"text": texts, "label": ["support", "spam", "question", "dispute"]}).to_csv(path, index=False)
    out = evaluate(path, model_dir, record=False, report=lambda s: None)
    service = [v.action for v in modclf.load(model_dir).classify(texts)]
    counts = out["decisions"]["model"]["actions"]
    assert {a: counts[a]["count"] for a in ("approve", "review", "reject")} == {
        a: service.count(a) for a in ("approve", "review", "reject")}
    assert service[1] != "approve" and out["decisions"]["model"]["spam_published"]["count"] == 0
