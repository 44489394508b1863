#!/usr/bin/env python
"""Train the moderation classifier on labeled comments, or evaluate the saved model.

    python train.py                         # train on data/comments.csv, write model/
    python train.py --data a.csv b.csv      # train on other labeled files
    python train.py --eval labeled.csv      # evaluate model/ on a labeled CSV (text,label)
"""

from __future__ import annotations

import argparse
import logging
import sys

from modclf.cli import add_common_logging, exit_on_user_error
from modclf.model import DEFAULT_MODEL_DIR
from modclf.training import DEFAULT_DATA


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train the comment moderation classifier (TF-IDF + LogisticRegression) and write "
        "the artifact to the model directory, or evaluate a saved model with --eval.",
    )
    p.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)], metavar="FILE",
                   help="labeled CSV file(s) with columns text,label (default: %(default)s)")
    p.add_argument("--model-dir", default=str(DEFAULT_MODEL_DIR),
                   help="where the model artifact is written / read (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed for CV splits and the solver (default: 0)")
    p.add_argument("--folds", type=int, default=5, help="number of stratified cross-validation folds; 0 skips cross-validation (default: 5)")
    p.add_argument("--eval", metavar="FILE", nargs="+",
                   help="evaluate the saved model on these labeled CSV file(s) instead of training; "
                   "the naive baseline is trained on --data and measured beside it")
    p.add_argument("--no-record", action="store_true",
                   help="with --eval: do not store the result under 'evaluations' in model.json")
    p.add_argument("--png", metavar="FILE", help="with --eval: also save the confusion matrix as a PNG here")
    p.add_argument("--with-feedback", action="store_true",
                   help="merge moderators' decisions from the feedback store, train a candidate, and "
                   "promote it only if it is not worse than the current model on the same held-out split")
    p.add_argument("--feedback-db", default=None,
                   help="SQLAlchemy URL of the feedback store (default: $MODCLF_FEEDBACK_DB or sqlite:///feedback.db)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_common_logging(p)
    return p.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    if args.eval:
        from modclf.training import evaluate

        for path in args.eval:
            evaluate(path, args.model_dir, data_paths=args.data, record=not args.no_record, png_path=args.png)
        return 0
    if args.with_feedback:
        from modclf.retrain import retrain_with_feedback

        promoted = retrain_with_feedback(args.data, args.model_dir, db_url=args.feedback_db, seed=args.seed,
                                         progress=not args.no_progress)
        return 0 if promoted else 3
    from modclf.training import train

    train(args.data, args.model_dir, seed=args.seed, folds=args.folds, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
