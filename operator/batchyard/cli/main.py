"""The `batchyard` command: the local control plane, the operator, and job requests.

Subcommands are added by the modules that own them; this file only wires argparse and turns
the job commands' errors into exit codes: 2 for a bad argument (as argparse does), 1 for a
request that failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from batchyard.cli import console, demo, describe, dev, gateway, jobs, listing, logs, run, submit
from batchyard.cli.common import CommandError, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchyard", description="AWS Batch semantics on Kubernetes.")
    sub = parser.add_subparsers(dest="command", required=True)
    dev.register(sub)
    run.register(sub)
    submit.register(sub)
    listing.register(sub)
    describe.register(sub)
    gateway.register(sub)
    logs.register(sub)
    jobs.register(sub)
    console.register(sub)
    demo.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except UsageError as err:
        print(f"batchyard {args.command}: error: {err}", file=sys.stderr)
        return 2
    except CommandError as err:
        print(f"batchyard {args.command}: {err}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
