"""SIGTERM as Ctrl-C: a run stopped by ``kill``, ``timeout``, systemd or SLURM closes its outputs."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives during a run, so it stops like Ctrl-C."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` inside the block; restore the previous handler.

    Only the first signal raises: a second one during the cleanup is ignored, so the
    writers are still closed and the summary written. Outside the main thread (where
    Python cannot install handlers) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame) -> None:
        if fired:
            log.warning("%s again: still closing the outputs", signal.Signals(signum).name)
            return
        fired.append(signum)
        raise Terminated(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
