"""Atomic file output and small readers.

Every artefact the pipeline writes goes through :func:`atomic_path`: it is written under a
temporary name in the destination folder and renamed into place, so a killed job never leaves
a half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the claims, metrics and report jobs write JSON and never need torch
    import pandas as pd
    import torch


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ".<stem>.<random>.tmp<suffix>": hidden, and tools that go by the suffix (papermill) still see it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp makes 0600 files (and some writers recreate it so): the usual permissions
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_default(obj: Any) -> Any:
    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for identical content)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_csv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors (never pickle), atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a truncated or corrupt file raises a ValueError naming it."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such weights file: {path}")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError on truncation
        raise ValueError(f"{path} is not a readable safetensors file ({err}); {set_aside(path)}") from err


def set_aside(path: str | os.PathLike) -> str:
    """Rename a corrupt output to ``<name>.corrupt`` (kept for inspection, never read again), so that rerunning
    the same Snakemake command sees the output missing and rebuilds it. Returns a sentence saying so."""
    path = Path(path)
    bad = path.with_name(path.name + ".corrupt")
    if bad.exists():
        shutil.rmtree(bad) if bad.is_dir() else bad.unlink()
    os.replace(path, bad)
    return f"it was moved to {bad.name}; rerun the same command to rebuild it"


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """Turn SIGTERM (Snakemake's or SLURM's way of stopping a job) into ``SystemExit`` for the block, so that
    ``finally`` clauses run: temporaries of atomic writes are removed, nothing half-written is left behind."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def log_to(path: str | os.PathLike | None) -> Iterator[None]:
    """Send stdout and stderr (progress bars, warnings) to a log file for the block, which also ends cleanly on
    SIGTERM (:func:`terminate_cleanly`)."""
    if path is None:
        with terminate_cleanly():
            yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with (terminate_cleanly(), open(path, "w", buffering=1) as f, contextlib.redirect_stdout(f),
          contextlib.redirect_stderr(f)):
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc(file=f)
            raise
        finally:
            sys.stdout.flush()


def set_threads(n: int) -> None:
    """Use ``n`` intra-op threads (Snakemake's ``threads``), so parallel jobs don't oversubscribe cores."""
    import torch

    torch.set_num_threads(max(1, int(n)))
