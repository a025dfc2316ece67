"""Build something once per machine into a cache folder, safely under concurrency.

`built(final, is_done, build)` returns `final` when `is_done(final)`; otherwise, under an flock
beside it, it removes what a build that died left behind, builds into a temporary sibling and
renames it into place when complete, so a half-built result is never used and concurrent pytest
workers (or CI and a developer) build once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def built(final: Path, is_done: Callable[[Path], bool], build: Callable[[Path], None]) -> Path:
    """`final`, built by `build(tmp)` first when `is_done(final)` is False. Raises what build raises
    (the temporary folder is removed)."""
    if is_done(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_done(final):
            return final
        for stale in final.parent.glob(f".{final.name}.tmp*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp", dir=final.parent))
        try:
            build(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
