"""Run the real operator in-process, in its own thread and event loop (tests and benchmarks).

The same kopf operator as `batchyard run`, started with kopf's own ready and stop flags, so a
test knows when startup finished and can stop it cleanly (or abandon it, to simulate a crash).
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class OperatorThread:
    kubeconfig: Path
    env: dict[str, str] = field(default_factory=dict)
    memo: Any = None
    _thread: threading.Thread | None = None
    _stop: threading.Event | None = None
    error: BaseException | None = None

    def start(self, timeout: float = 60) -> OperatorThread:
        import kopf

        import batchyard.handlers  # noqa: F401 - registers the handlers

        os.environ["KUBECONFIG"] = str(self.kubeconfig)
        os.environ.update(self.env)
        ready = threading.Event()
        self._stop = threading.Event()
        self.memo = kopf.Memo()

        def main() -> None:
            try:
                asyncio.run(
                    kopf.operator(
                        clusterwide=True,
                        standalone=True,
                        ready_flag=ready,
                        stop_flag=self._stop,
                        memo=self.memo,
                    )
                )
            except BaseException as exc:  # surfaced by stop()
                self.error = exc
                ready.set()

        self._thread = threading.Thread(target=main, name="batchyard-operator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the operator did not become ready")
        if self.error is not None:
            raise RuntimeError("the operator failed to start") from self.error
        return self

    @property
    def controller(self) -> Any:
        return self.memo.controller

    def stop(self, timeout: float = 30) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for key in self.env:
            os.environ.pop(key, None)
