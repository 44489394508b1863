#!/usr/bin/env python
"""Evasion report: how often disguised link drops still get `spam` and a non-approve action.

Every spam comment of the corpus (or --sample of them) is disguised once per kind by
modclf.evasion: look-alike letters (Cyrillic/Greek/Armenian), fullwidth, mathematical and enclosed
letters, invisible characters, combining marks, letters spaced out or split by punctuation, "dot"
written out, buried in 1,000-9,000 characters of benign comments, several at once. For each kind,
on the same rows, the report gives:

- normalized back: share of variants whose normalize_text equals the original's;
- the share classified `spam` and the share the policy does not approve, for the undisguised
  originals and for the variants;
- kept: the share of variants not approved among the rows whose original was not approved (what
  the disguise failed to win).

Every comment is decided exactly as the service decides it (modclf.moderator.Moderator: the window,
long comments also read in segments, sentences with a link or contact read apart, language, the
policy's floors). With the padding kind it also prints the price of that: the share of long
benign-only comments (corpus comments joined) that are held.

    python bench/evasion_report.py                                  # model/ (trained there if missing)
    python bench/evasion_report.py --model-dir /tmp/m --sample 300 --json /tmp/evasion.json
    python bench/evasion_report.py --train --model-dir /tmp/m      # (re)train with the current code first

The variants are generated, deterministic (--seed) test data, never training data.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from modclf.evasion import KINDS, long_benign, variants  # noqa: E402
from modclf.model import DEFAULT_MODEL_DIR, load_artifact  # noqa: E402
from modclf.moderator import LoadedModel, Moderator  # noqa: E402
from modclf.policy import load_policy  # noqa: E402
from modclf.text import normalize_text  # noqa: E402

CORPUS = ROOT / "data" / "comments.csv"
PADDING_LABELS = ("other", "support")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                   help="model to evaluate; trained there from --data when it has none (default: %(default)s)")
    p.add_argument("--train", action="store_true", help="train the model into --model-dir first, even if one is there")
    p.add_argument("--data", type=Path, default=CORPUS, help="labeled corpus: spam rows to disguise, benign padding "
                   "(default: %(default)s)")
    p.add_argument("--policy", type=Path, default=None, help="policy file (default: policy.yaml / $MODCLF_POLICY)")
    p.add_argument("--kinds", default=",".join(KINDS), help="disguise kinds (default: all)")
    p.add_argument("--sample", type=int, default=0, help="disguise this many spam rows, drawn with --seed (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true", help="score with the fast path (same numbers, compiles on first use)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--examples", type=int, default=0, help="print this many approved variants per kind (stderr)")
    return p.parse_args(argv)


def ensure_model(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    if args.train or not (args.model_dir / "model.json").is_file():
        from modclf.training import train

        print(f"training {args.model_dir} on {args.data} ...", file=sys.stderr)
        train([args.data], args.model_dir, seed=0, folds=0, progress=False, report=logging.getLogger("train").info)
    return load_artifact(args.model_dir)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        print(f"error: unknown kinds {sorted(unknown)} (known: {', '.join(KINDS)})", file=sys.stderr)
        return 2
    artifact = ensure_model(args)
    policy = load_policy(args.policy)
    # decided exactly as the service decides: window, segments, link sentences, language, policy floors
    moderator = Moderator(LoadedModel.from_artifact(artifact, args.model_dir, fast=args.fast), policy)
    corpus = pd.read_csv(args.data, dtype=str, keep_default_na=False)
    spam = corpus.loc[corpus["label"] == "spam", "text"].tolist()
    benign = corpus.loc[corpus["label"].isin(PADDING_LABELS), "text"].tolist()
    rows = None
    if args.sample and args.sample < len(spam):
        rows = sorted(np.random.default_rng(args.seed).choice(len(spam), args.sample, replace=False).tolist())
    t0 = time.perf_counter()
    generated = list(variants(spam, benign, kinds, seed=args.seed, rows=rows))
    originals = sorted({v.row: v.original for v in generated}.items())
    orig_index = {row: i for i, (row, _) in enumerate(originals)}
    orig_norm = {row: normalize_text(text) for row, text in originals}

    def judge(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        verdicts = moderator.classify(texts)
        return np.asarray([v.label == "spam" for v in verdicts]), np.asarray([v.action != "approve" for v in verdicts])

    o_spam, o_blocked = judge([text for _, text in originals])
    v_spam, v_blocked = judge([v.text for v in generated])
    back = np.asarray([normalize_text(v.text) == orig_norm[v.row] for v in generated])
    seconds = time.perf_counter() - t0

    results = []
    lines = ["| disguise | n | normalized back | `spam`: original | `spam`: disguised | not approved: original | "
             "not approved: disguised | kept (of caught originals) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind in kinds:
        idx = [i for i, v in enumerate(generated) if v.kind == kind]
        if not idx:
            continue
        o = np.asarray([orig_index[generated[i].row] for i in idx])
        vs, vb = v_spam[idx], v_blocked[idx]
        os_, ob = o_spam[o], o_blocked[o]
        kept = float(vb[ob].mean()) if ob.any() else float("nan")
        res = {"kind": kind, "n": len(idx), "normalized_back": float(back[idx].mean()),
               "spam_original": float(os_.mean()), "spam_disguised": float(vs.mean()),
               "not_approved_original": float(ob.mean()), "not_approved_disguised": float(vb.mean()),
               "kept": kept, "caught_originals": int(ob.sum())}
        results.append(res)
        lines.append(f"| {kind} | {res['n']} | {res['normalized_back']:.3f} | {res['spam_original']:.3f} | "
                     f"{res['spam_disguised']:.3f} | {res['not_approved_original']:.3f} | "
                     f"{res['not_approved_disguised']:.3f} | {kept:.3f} |")
        for i in [i for i, b in zip(idx, vb) if not b][: args.examples]:
            print(f"  approved {kind}: {generated[i].text[:200]!r}", file=sys.stderr)
    print(f"model {artifact.version} ({args.model_dir}), policy {policy.source}, corpus {args.data} "
          f"({len(corpus)} rows), {len(originals)} spam rows, {len(generated)} variants, seed {args.seed}, "
          f"{seconds:.1f} s")
    print("\n".join(lines))
    payload = {"model": artifact.version, "model_dir": str(args.model_dir), "policy": policy.source,
               "corpus": str(args.data), "corpus_rows": len(corpus), "seed": args.seed, "rows": len(originals),
               "results": results}
    if "padding" in kinds:
        # the price of reading long comments in segments and link sentences apart: benign-only ones held
        # joined from comments in a language the policy trusts: a comment with a part in another one is
        # held for that (modclf.language.foreign_stretch), which is not what this measures
        from modclf.language import UNDETERMINED, detect

        readable = [t for t in benign if detect(t).lang in moderator.trusted_languages | {UNDETERMINED}]
        control = long_benign(readable, min(300, max(1, sum(v.kind == "padding" for v in generated))), seed=args.seed)
        held = float(judge(control)[1].mean())
        payload["long_benign"] = {"n": len(control), "held": held}
        print(f"\nlong benign-only comments (corpus other/support comments in trusted languages joined to "
              f"1,000-9,000 characters, n={len(control)}): held {held:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
