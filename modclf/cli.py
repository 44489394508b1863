"""The ``modclf`` command: train, eval, score, serve and feedback export, over the same code as the
Python API.

    modclf train [--data FILE ...] [--model-dir DIR]        train and save a model (CV report by default)
    modclf eval FILE ... [--model-dir DIR]                  measure a saved model on labeled comments
    modclf score INPUT -o OUTPUT [--model-dir DIR]          add label, probabilities and action columns
    modclf serve [--model-dir DIR] [--bind HOST:PORT]       the HTTP service (gunicorn)
    modclf feedback export [-o FILE]                        moderators' decisions as CSV

Every option also has a setting (``MODCLF_*`` variable or settings file; see
:mod:`modclf.settings`), and flags win over both. Heavy libraries (scikit-learn, pandas, numba,
Flask) are imported only when a command runs, so ``--help`` answers at once.

Errors: every :class:`~modclf.errors.ModclfError` is printed as one ``error: ...`` line and the
command exits with status 2 (here, in :func:`main`, and nowhere else); Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import __version__
from .errors import EXIT_USAGE, ConfigError, ModclfError
from .labels import LABELS

log = logging.getLogger("modclf")

#: Exit status of ``modclf train --with-feedback`` when the candidate was not promoted.
EXIT_NOT_PROMOTED = 3


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _port(value: str) -> int:
    """A TCP port, checked here: gunicorn's own report of an impossible one is a traceback."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= number <= 65535:  # 0: any free port, as the operating system picks
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {number}")
    return number


def _workers(value: str) -> int:
    """``auto`` (0: every core) or a positive number."""
    return 0 if value == "auto" else _positive(value)


def _cores() -> int:
    """Cores this process may use (``--workers auto``), without importing the scoring module."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modclf",
        description="Comment-section moderation classifier (TF-IDF + LogisticRegression): sorts reader "
        "comments into spam, dispute, question, support and other, and a moderation policy turns that "
        "into approve / review / reject. Settings: flags > MODCLF_* environment > modclf.toml > defaults.",
    )
    parser.add_argument("--version", action="version", version=f"modclf {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging verbosity (default: WARNING; serve: $MODCLF_LOG_LEVEL or INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_parser = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return _add_parser(name, parents=[common], **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    def model_dir(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--model-dir", default=None,
                       help=f"model directory {what} (default: $MODCLF_MODEL_DIR or ./model)")

    def policy(p: argparse.ArgumentParser) -> None:
        p.add_argument("--policy", default=None,
                       help="moderation policy file that turns labels into actions (default: $MODCLF_POLICY "
                       "or the policy shipped with modclf)")

    def data(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--data", nargs="+", default=None, metavar="FILE",
                       help=f"labeled CSV file(s) with columns text,label {what} (default: $MODCLF_DATA or "
                       "./data/comments.csv)")

    p = sub.add_parser("train", help="train a model on labeled comments and save it",
                       description="Train the model on labeled CSV files and write model.joblib + model.json "
                       "(byte-identical for the same data and seed). By default a stratified cross-validation "
                       "report of the model beside a naive baseline comes first (--folds 0 skips it).")
    data(p, "to train on")
    model_dir(p, "to write")
    p.add_argument("--seed", type=int, default=0, help="random seed for CV splits and the solver (default: 0)")
    p.add_argument("--folds", type=int, default=5,
                   help="stratified cross-validation folds before the final fit; 0 skips it (default: 5)")
    p.add_argument("--with-feedback", action="store_true",
                   help="merge moderators' decisions from the feedback store, train a candidate, and promote it "
                   f"only if it is not worse than the current model on the same held-out split (exit {EXIT_NOT_PROMOTED} "
                   "when it is not promoted)")
    p.add_argument("--feedback-db", default=None,
                   help="SQLAlchemy URL of the feedback store (default: $MODCLF_FEEDBACK_DB or sqlite:///feedback.db)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=_train)

    p = sub.add_parser("eval", help="measure a saved model on labeled comments",
                       description="Per-label precision/recall/F1, confusion matrix and the policy's decisions of the "
                       "saved model on labeled CSV file(s), beside a naive baseline trained on the training data; "
                       "recorded under 'evaluations' in model.json unless --no-record.")
    p.add_argument("files", nargs="+", metavar="FILE", help="labeled CSV file(s) with columns text,label[,source]")
    model_dir(p, "to evaluate")
    data(p, "the naive baseline is trained on")
    policy(p)
    p.add_argument("--no-record", action="store_true", help="do not store the result in model.json")
    p.add_argument("--png", metavar="FILE", help="also save the confusion matrix as a PNG here")
    p.add_argument("--sweep", metavar="LABEL", choices=LABELS,
                   help="also show the decisions with the policy's escalation on p(LABEL) moved from 0.50 to 0.10 "
                   "(shares approved/held/rejected and LABEL comments approved per threshold): the trade-off to "
                   "choose a policy's threshold on your own labeled comments")
    p.set_defaults(run=_eval)

    p = sub.add_parser("score", help="score a file of comments (CSV, JSONL, Parquet)",
                       description="Add label, confidence, p_<label>, action, truncated, language, policy_version and error "
                       "columns to every row of a comment file. Formats by extension: .csv, .jsonl, .parquet. Rows "
                       "without usable text are kept with an empty label, the action review and a reason in 'error'; "
                       "output rows == input rows, in order; the output appears only when complete.")
    p.add_argument("input", help="input file (.csv, .jsonl or .parquet); with --engine dask also a glob or directory")
    p.add_argument("-o", "--output", required=True,
                   help="output file (format from its extension); with --engine dask, an output directory")
    model_dir(p, "to score with")
    policy(p)
    p.add_argument("--text-column", default="text", help="column holding the comment text (default: text)")
    p.add_argument("--prefix", default="", help="prefix for the added columns, e.g. pred_ (default: none)")
    p.add_argument("--chunk-size", type=_positive, default=None,
                   help="rows read and scored at a time, and written as one part; bounds memory (default: 10000)")
    p.add_argument("--workers", type=_workers, default=0, metavar="N|auto",
                   help="processes scoring in parallel: a number, or auto for one per available core "
                   f"(this machine: {_cores()}), fewer for an input under 512 KiB per core; at most 4 per core; they "
                   "load the model while the input is being read (default: auto)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run into the same output, keeping the chunks it finished")
    p.add_argument("--slow", action="store_true",
                   help="predict with the plain scikit-learn pipeline instead of the equivalent fast path")
    p.add_argument("--engine", choices=["local", "dask"], default="local",
                   help="local: this machine, streaming; dask: a Dask cluster, partitioned output (default: local)")
    p.add_argument("--scheduler", default=None,
                   help="with --engine dask: scheduler address (tcp://host:8786); default: a local cluster")
    p.add_argument("--partition-size", default="64MB",
                   help="with --engine dask: input bytes per partition for CSV/JSONL (default: 64MB)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")
    p.set_defaults(run=_score)

    p = sub.add_parser("serve", help="serve the model over HTTP (gunicorn)",
                       description="Start the HTTP service: gunicorn with gevent workers (one per CPU), the model "
                       "loaded and verified once before the workers start. Refuses to start, with a one-line reason, "
                       "on a missing or tampered model, a bad policy or an invalid setting. See README, Service.")
    model_dir(p, "to serve")
    policy(p)
    p.add_argument("--bind", default=None, help="address to listen on (default: $MODCLF_BIND or 127.0.0.1:8000)")
    p.add_argument("--host", default=None, help="interface to listen on (with --port; overrides --bind)")
    p.add_argument("--port", type=_port, default=None, help="TCP port, 0 for any free one (with --host; overrides --bind)")
    p.add_argument("--workers", type=_workers, default=None,
                   help="worker processes, or auto: one per CPU for gevent workers, 2 x CPUs + 1 for sync/gthread "
                        "(default: $MODCLF_WORKERS or auto)")
    p.add_argument("--dev", action="store_true",
                   help="Flask's development server (one process, auto-reload off) instead of gunicorn")
    p.set_defaults(run=_serve)

    p = sub.add_parser("feedback", help="the feedback store (moderators' decisions)",
                       description="Work with the feedback store that /v1/feedback, Akismet submit-spam/ham and "
                       "retraining use.")
    fsub = p.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    e = fsub.add_parser("export", parents=[common], help="write every stored decision as CSV",
                        description="Write every stored decision as CSV (id,text,label,source,created_at,updated_at; "
                        "cells that a spreadsheet would run as a formula start with an apostrophe).")
    e.add_argument("-o", "--output", default="-", help="output file, - for standard output (default: -)")
    e.add_argument("--feedback-db", default=None,
                   help="SQLAlchemy URL of the store (default: $MODCLF_FEEDBACK_DB or sqlite:///feedback.db)")
    e.set_defaults(run=_feedback_export)
    return parser


# -- commands ---------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace, **flags: Any) -> Any:
    from .settings import load_settings

    return load_settings({k: v for k, v in flags.items() if v is not None})


def _train(args: argparse.Namespace) -> int:
    settings = _settings(args, model_dir=args.model_dir, data=args.data, feedback_db=args.feedback_db)
    data = [str(p) for p in settings.data]
    if args.with_feedback:
        from .retrain import retrain_with_feedback

        promoted = retrain_with_feedback(data, settings.model_dir, db_url=settings.feedback_db, seed=args.seed,
                                         progress=not args.no_progress)
        return 0 if promoted else EXIT_NOT_PROMOTED
    from .training import train

    _check_writable_dir(Path(settings.model_dir), "--model-dir")
    train(data, settings.model_dir, seed=args.seed, folds=args.folds, progress=not args.no_progress)
    return 0


def _check_writable_dir(directory: Path, option: str) -> None:
    """Refuse before any work a directory the command could not write its result into."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: {option} is a file, not a directory")
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{existing}: not writable, so {option} {directory} cannot be written")


def _eval(args: argparse.Namespace) -> int:
    settings = _settings(args, model_dir=args.model_dir, data=args.data, policy=args.policy)
    from .training import evaluate

    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise ConfigError(f"{missing[0]}: evaluation file not found")
    if args.png and Path(args.png).suffix.lower() != ".png" and not Path(args.png).is_dir():
        raise ConfigError(f"{args.png}: --png must name a .png file (or a directory)")
    if not args.no_record and not os.access(settings.model_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"{settings.model_dir}: not writable, so the evaluation cannot be recorded in its "
                          "model.json; use --no-record")
    for path in args.files:
        evaluate(path, settings.model_dir, data_paths=[str(p) for p in settings.data] if args.data else None,
                 record=not args.no_record, png_path=args.png, sweep=args.sweep,
                 **_policy_kw(evaluate, settings.policy))
    return 0


def _policy_kw(func: Callable[..., Any], policy: Path) -> dict[str, Any]:
    import inspect

    return {"policy_path": policy} if "policy_path" in inspect.signature(func).parameters else {}


class _Terminated(KeyboardInterrupt):
    """A stop asked by a signal other than SIGINT; the exit status is 128 + its number (143 for
    SIGTERM), as a shell reports a process the signal killed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_cleanly_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP (a job scheduler, a closed terminal) end a scoring run the way Ctrl-C
    does: the temporary output and the lock are removed and the finished parts kept for --resume.
    The previous handlers come back afterwards (main() may run inside another program)."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise _Terminated(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _score(args: argparse.Namespace) -> int:
    settings = _settings(args, model_dir=args.model_dir, policy=args.policy)
    workers = args.workers  # 0: auto, resolved by score_file (one per available core)
    if args.engine != "dask" and args.scheduler is not None:  # silently scoring locally is not what was asked
        raise ConfigError("--scheduler is for --engine dask; add --engine dask, or leave --scheduler out")
    if args.engine == "dask":
        from .distributed import score_dask

        summary = score_dask(args.input, args.output, model_dir=settings.model_dir, text_column=args.text_column,
                             prefix=args.prefix, scheduler=args.scheduler, partition_size=args.partition_size,
                             fast=not args.slow, policy=settings.policy)
    else:
        from .scoring import DEFAULT_CHUNK_SIZE, score_file

        with _stop_cleanly_on_termination():
            summary = score_file(args.input, args.output, model_dir=settings.model_dir, text_column=args.text_column,
                                 prefix=args.prefix, chunk_size=args.chunk_size or DEFAULT_CHUNK_SIZE,
                                 workers=workers, resume=args.resume, fast=not args.slow, progress=args.progress,
                                 policy=settings.policy)
    print(summary.format(), file=sys.stderr)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    bind = args.bind
    if args.host is not None or args.port is not None:
        bind = f"{args.host or '127.0.0.1'}:{args.port if args.port is not None else 8000}"
    settings = _settings(args, model_dir=args.model_dir, policy=args.policy, bind=bind, workers=args.workers)
    _check_servable(settings)
    if args.dev:
        from .serving import create_app

        app = create_app({"model_dir": settings.model_dir, "policy": settings.policy})
        host, _, port = settings.bind.rpartition(":")
        print(f"serving model {app.extensions['modclf'].model_version} on http://{settings.bind} "
              "(development server; without --dev: gunicorn)", file=sys.stderr)
        app.run(host=host or "127.0.0.1", port=int(port), threaded=True, use_reloader=False)
        return 0
    # gunicorn reads the settings itself (modclf.gunicorn_conf); flags reach it as the
    # environment variables they override, so flags > environment holds there too.
    env = dict(os.environ, MODCLF_MODEL_DIR=str(settings.model_dir), MODCLF_POLICY=str(settings.policy),
               MODCLF_BIND=settings.bind, MODCLF_WORKERS=str(settings.workers))
    if args.log_level:
        env["MODCLF_LOG_LEVEL"] = args.log_level.lower()
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:modclf.gunicorn_conf", "modclf.serving:create_app()"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)  # the server takes this process' place (and pid)
    return 0  # pragma: no cover


def _check_servable(settings: Any) -> None:
    """Refuse to start on what create_app would refuse, with its one-line reason, before gunicorn
    (whose own report of a failed preload is a traceback) is involved: the model's metadata and
    sha256, and the policy."""
    from .model import MODEL_FILE, read_meta, sha256_file
    from .errors import ModelError
    from .policy import load_policy

    meta = read_meta(settings.model_dir)
    path = Path(settings.model_dir) / meta.get("model_file", MODEL_FILE)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found (train one with `modclf train`)")
    if sha256_file(path) != meta["model_sha256"]:
        raise ModelError(f"{path}: sha256 does not match model.json; the model file was changed or corrupted")
    load_policy(settings.policy)


def _feedback_export(args: argparse.Namespace) -> int:
    settings = _settings(args, feedback_db=args.feedback_db)
    from .feedback import FeedbackStore, iter_csv

    output = None if args.output == "-" else Path(args.output)
    if output is not None:
        _check_export_output(output)
    # an export only reads: a mistyped URL or a run in the wrong directory is an error, not a new empty store
    store = FeedbackStore(settings.feedback_db, create=False)
    store.check()
    chunks = iter_csv(store.iter_decisions())
    if output is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        sys.stdout.flush()
        return 0
    from .atomic import atomic_write_bytes

    data = "".join(chunks).encode("utf-8")
    try:
        atomic_write_bytes(output, data)
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _check_export_output(output: Path) -> None:
    """Refuse an output the export cannot write before the store is read, with the messages of
    ``modclf score``; a missing directory is refused too (not created), as befits a read-only command."""
    if output.is_dir():
        raise ConfigError(f"{output}: is a directory; give the output file's name")
    for above in (output.parent, *output.parent.parents):
        if above.exists() and not above.is_dir():
            raise ConfigError(f"{output}: {above} is a file, not a directory")
    if not output.parent.is_dir():
        raise ConfigError(f"{output}: the directory {output.parent} does not exist")
    if not os.access(output.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{output}: the directory {output.parent} is not writable")


# -- entry point --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``modclf`` with ``argv`` (default: the process' arguments); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = args.log_level or ("INFO" if args.command == "serve" else "WARNING")
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        status = int(args.run(args))
        sys.stdout.flush()  # a reader that went away (| head) shows here, not at the interpreter's exit
        return status
    except BrokenPipeError:
        # The reader of stdout closed it: stop quietly, as Python's docs advise for a CLI
        # (library/signal.html, note on SIGPIPE): stdout goes to /dev/null so that the flush at
        # exit raises nothing more, and the status is 1, Python's own for EPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    except ModclfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a file or directory the command could not use: its name, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        hint = "; the chunks already scored are kept: run the same command with --resume to continue" \
            if args.command == "score" and getattr(args, "engine", "local") == "local" else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, _Terminated) else 130


if __name__ == "__main__":  # python -m modclf.cli
    sys.exit(main())
