#!/usr/bin/env python
"""Run the moderation service with Flask's development server (production: gunicorn, see README).

    python serve.py                                   # model/ and policy.yaml, 127.0.0.1:8000
    python serve.py --host 0.0.0.0 --port 9000 --model-dir /srv/model --policy /srv/policy.yaml

Refuses to start, with a one-line reason and exit status 2, when the model is missing, unreadable
or fails its sha256 check, or the policy file or a MODCLF_* setting is invalid.
"""

from __future__ import annotations

import argparse
import logging
import sys

from modclf.cli import UserError, add_common_logging, exit_on_user_error
from modclf.model import DEFAULT_MODEL_DIR
from modclf.policy import DEFAULT_POLICY_PATH, PolicyError


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {port}")
    return port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Serve the comment moderation classifier over HTTP (development server; "
        "production runs `gunicorn -c gunicorn.conf.py \"modclf.serving:create_app()\"`). Other settings "
        "come from MODCLF_* environment variables (see README, section Service).",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port (default: %(default)s)")
    p.add_argument("--model-dir", default=None,
                   help=f"model directory (default: $MODCLF_MODEL_DIR or {DEFAULT_MODEL_DIR})")
    p.add_argument("--policy", default=None,
                   help=f"moderation policy file (default: $MODCLF_POLICY or {DEFAULT_POLICY_PATH})")
    add_common_logging(p)
    return p.parse_args(argv)


def build_app(args: argparse.Namespace):  # -> flask.Flask
    """The app for these arguments; configuration errors become UserError (one line, exit 2)."""
    from modclf.serving import create_app
    from modclf.serving.config import ConfigError

    overrides = {k: v for k, v in (("model_dir", args.model_dir), ("policy", args.policy)) if v is not None}
    try:
        return create_app(overrides)
    except (PolicyError, ConfigError) as exc:
        raise UserError(str(exc)) from None


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = build_app(args)
    print(f"serving model {app.extensions['modclf'].model_version} on http://{args.host}:{args.port} "
          "(development server; use gunicorn in production)", file=sys.stderr)
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
