"""Checkpoints: arrays in an .npz, metadata in a .json beside it; no pickle, atomic writes.

    save_checkpoint(run, {"model/rnn.weight_ih_l0": w, "optim/...": m, ...}, {"step": 120, ...})
    arrays, meta = load_checkpoint(run)

`<name>.npz` holds the arrays (model weights under "model/...", optimiser state under "optim/...",
schedule under "sched/..."); `<name>.json` holds the metadata (format_version, step, epoch, RNG
states, best validation loss, references to the vocabulary and config) plus the SHA-256 of the
.npz. Both are written atomically and the .json last, so a pair torn by a kill between the two
writes is detected on load instead of being half-trusted. Anything unreadable, truncated,
corrupted, of a newer format, or not a checkpoint at all raises `CheckpointError` (a ValueError)
with one sentence.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .core.module import Module
from .runs import atomic_write

FORMAT = "unrolled-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with one sentence saying why."""


def save_checkpoint(directory, arrays: dict[str, np.ndarray], meta: dict, name: str = "checkpoint") -> None:
    """Write `<name>.npz` then `<name>.json` into `directory` (which must exist), each atomically."""
    directory = Path(directory)
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray) or value.dtype == object:
            raise ValueError(f"checkpoint arrays must be numeric NumPy arrays, but '{key}' is a {type(value).__name__}.")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    record = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION,
              "npz_sha256": hashlib.sha256(payload).hexdigest()}
    text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write(directory / f"{name}.npz", lambda f: f.write(payload))
    atomic_write(directory / f"{name}.json", lambda f: f.write(text.encode("utf-8")))


def has_checkpoint(directory, name: str = "checkpoint") -> bool:
    return (Path(directory) / f"{name}.json").exists()


def load_checkpoint(directory, name: str = "checkpoint") -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta) from `<name>.npz` and `<name>.json` in `directory`, checked against each other."""
    directory = Path(directory)
    meta_path, npz_path = directory / f"{name}.json", directory / f"{name}.npz"
    if not meta_path.exists():
        raise CheckpointError(f"expected a checkpoint ({meta_path.name}) in {directory}, but there is none.")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"expected {meta_path} to be checkpoint metadata in JSON, but it is truncated or corrupted.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"expected {meta_path} to describe an unrolled checkpoint, but it is some other JSON file.")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{meta_path} has checkpoint format version {version}, but this version of unrolled reads "
                              f"versions up to {FORMAT_VERSION}; upgrade unrolled to load it.")
    try:
        payload = npz_path.read_bytes()
    except OSError:
        raise CheckpointError(f"expected the checkpoint arrays {npz_path}, but the file cannot be read.") from None
    if hashlib.sha256(payload).hexdigest() != meta.get("npz_sha256"):
        raise CheckpointError(f"{npz_path} does not match {meta_path.name}: it is truncated, corrupted, or from an interrupted save.")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise CheckpointError(f"expected {npz_path} to be a NumPy .npz archive, but it cannot be read as one.") from None
    meta = {k: v for k, v in meta.items() if k not in ("format", "npz_sha256")}
    return arrays, meta


# ----- grouping arrays by owner ------------------------------------------------------------------

def prefixed(prefix: str, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{"<prefix>/<key>": array}: how model, optimiser and schedule share one .npz."""
    return {f"{prefix}/{key}": np.asarray(value) for key, value in state.items()}


def section(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays saved under `prefixed(prefix, ...)`, with the prefix removed."""
    head = prefix + "/"
    return {key[len(head):]: value for key, value in arrays.items() if key.startswith(head)}


# ----- random generators -------------------------------------------------------------------------

def module_generators(module: Module) -> dict[str, np.random.Generator]:
    """Every np.random.Generator held by `module` or its children (e.g. dropout), by dotted name.

    A generator shared by several layers is listed once, under its first name.
    """
    found, seen = {}, set()
    for prefix, m in module.named_modules():
        for attr, value in vars(m).items():
            if isinstance(value, np.random.Generator) and id(value) not in seen:
                seen.add(id(value))
                found[f"{prefix}.{attr}" if prefix else attr] = value
    return found


def generator_states(generators: dict[str, np.random.Generator]) -> dict[str, dict]:
    """JSON-ready states (`bit_generator.state`) of named generators."""
    return {name: g.bit_generator.state for name, g in generators.items()}


def restore_generators(generators: dict[str, np.random.Generator], states: dict[str, dict]) -> None:
    """Put every named generator back into its saved state; the names must match exactly."""
    if set(generators) != set(states):
        raise CheckpointError(f"the checkpoint holds random states for {sorted(states)}, but the model has "
                              f"generators {sorted(generators)}.")
    for name, g in generators.items():
        g.bit_generator.state = states[name]
