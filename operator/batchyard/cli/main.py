"""The `batchyard` command: the local control plane, the operator, and job requests.

Subcommands are added by the modules that own them; this file only wires argparse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from batchyard.cli import demo, describe, dev, gateway, jobs, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchyard", description="AWS Batch semantics on Kubernetes.")
    sub = parser.add_subparsers(dest="command", required=True)
    dev.register(sub)
    run.register(sub)
    jobs.register(sub)
    demo.register(sub)
    describe.register(sub)
    gateway.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
