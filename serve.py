#!/usr/bin/env python
"""Serve the moderation classifier over HTTP: `modclf serve` (gunicorn; `--dev` for Flask's server).

    python serve.py                                   # ./model and the shipped policy, 127.0.0.1:8000
    python serve.py --host 0.0.0.0 --port 9000 --model-dir /srv/model --policy /srv/policy.yaml

Refuses to start, with a one-line reason and exit status 2, when the model is missing, unreadable
or fails its sha256 check, or the policy file or a setting is invalid. Every option: `--help`.
"""

from __future__ import annotations

import sys
from typing import Sequence

from modclf.cli import main as modclf_main


def main(argv: Sequence[str] | None = None) -> int:
    return modclf_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
