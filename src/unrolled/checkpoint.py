"""Checkpoints: arrays in an .npz, metadata in a .json beside it; no pickle, atomic writes.

    save_checkpoint(run, {"model/rnn.weight_ih_l0": w, "optim/...": m, ...}, {"step": 120, ...})
    arrays, meta = load_checkpoint(run)

`<name>.npz` holds the arrays (model weights under "model/...", optimiser state under "optim/...",
schedule under "sched/..."); `<name>.json` holds the metadata (format_version, step, epoch, RNG
states, best validation loss, references to the vocabulary and config), the SHA-256 of the .npz
(`npz_sha256`) and the SHA-256 of the metadata itself (`meta_sha256`, over its canonical JSON), so
a changed byte anywhere in the pair is caught rather than loaded.

Saving is one commit, safe against a kill at any moment:
1. the new metadata goes to `.<name>.json.pending` (atomically: temporary file, fsync, rename);
2. the new arrays replace `<name>.npz` (atomically);
3. the pending metadata is renamed over `<name>.json`.
A kill before 2 leaves the old pair; a kill between 2 and 3 leaves the new arrays with the old
metadata, which no longer match them but the pending metadata does, and `load_checkpoint` takes
that. A torn pair without its pending metadata is reported, never half-trusted.

Reading never unpickles: the .npz must be an uncompressed zip of `.npy` members, each a plain
numeric or text array whose header describes exactly the bytes that follow, read with
`allow_pickle=False`. Anything unreadable, truncated, corrupted, of a newer format, or not a
checkpoint at all raises `CheckpointError` (a ValueError) with one sentence.

Format versions: 1 had no `meta_sha256` (still read); 2 adds it.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from .core.module import Module
from .runs import CONFIG, atomic_write, fsync_folder

FORMAT = "unrolled-checkpoint"
FORMAT_VERSION = 2
_ARRAY_KINDS = "biufcUS"   # bool, integers, floats, complex, text: nothing that needs pickle


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with one sentence saying why."""


def _check_arrays(arrays: dict) -> None:
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind not in _ARRAY_KINDS:
            kind = f"an array of {value.dtype}" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"
            raise ValueError(f"checkpoint arrays must be numeric NumPy arrays, but '{key}' is {kind}.")


def meta_digest(record: dict) -> str:
    """SHA-256 of a metadata record's canonical JSON (sorted keys, no spaces), `meta_sha256` left out."""
    body = {k: v for k, v in record.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def _pending(directory: Path, name: str) -> Path:
    return directory / f".{name}.json.pending"


def save_checkpoint(directory, arrays: dict[str, np.ndarray], meta: dict, name: str = "checkpoint") -> None:
    """Write `<name>.npz` and `<name>.json` into `directory` (which must exist) as one commit (see above)."""
    directory = Path(directory)
    _check_arrays(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    record = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION,
              "npz_sha256": hashlib.sha256(payload).hexdigest()}
    record["meta_sha256"] = meta_digest(record)
    text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"
    pending = _pending(directory, name)
    atomic_write(pending, lambda f: f.write(text.encode("utf-8")))
    atomic_write(directory / f"{name}.npz", lambda f: f.write(payload))
    os.replace(pending, directory / f"{name}.json")
    fsync_folder(directory)


def has_checkpoint(directory, name: str = "checkpoint") -> bool:
    directory = Path(directory)
    return (directory / f"{name}.json").exists() or _pending(directory, name).exists()


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number checkpoints write")


def _read_record(path: Path) -> dict:
    """The checked metadata record in `path` (format, version and its own digest)."""
    try:
        record = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (OSError, ValueError, RecursionError):  # ValueError: bad UTF-8, bad JSON, NaN or Infinity
        raise CheckpointError(f"expected {path} to be checkpoint metadata in JSON, but it is truncated or corrupted.") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"expected {path} to describe an unrolled checkpoint, but it is some other JSON file.")
    version = record.get("format_version")
    if type(version) is not int or version < 1:
        raise CheckpointError(f"expected {path} to give a checkpoint format version, but it gives {version!r}.")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version}, but this version of unrolled reads "
                              f"versions up to {FORMAT_VERSION}; upgrade unrolled to load it.")
    if version >= 2 and record.get("meta_sha256") != meta_digest(record):
        raise CheckpointError(f"{path} does not match its own checksum: it has been edited or corrupted.")
    return record


def _read_npy(data: bytes, where: str) -> np.ndarray:
    """One .npy member: a plain array whose header describes exactly the bytes that follow."""
    stream = io.BytesIO(data)
    major, _ = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(stream)
    if dtype.hasobject or dtype.kind not in _ARRAY_KINDS:
        raise CheckpointError(f"{where} holds a {dtype} array, but checkpoints hold only numeric arrays "
                              "(nothing that needs pickle).")
    if math.prod(shape) * dtype.itemsize != len(data) - stream.tell():
        raise CheckpointError(f"{where} declares an array of shape {shape} and {dtype}, but holds a different "
                              "number of bytes.")
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False)


def _read_arrays(payload: bytes, npz_path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz payload, refusing anything but uncompressed plain .npy members."""
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            for info in archive.infolist():
                key = info.filename[:-4]
                if not info.filename.endswith(".npy") or info.compress_type != zipfile.ZIP_STORED or key in arrays:
                    raise CheckpointError(f"{npz_path} holds '{info.filename}', but a checkpoint holds only distinct, "
                                          "uncompressed .npy arrays.")
                arrays[key] = _read_npy(archive.read(info), f"{npz_path}:{info.filename}")
    except CheckpointError:
        raise
    except Exception:  # untrusted bytes: whatever zipfile or the .npy reader trips on is the same answer
        raise CheckpointError(f"expected {npz_path} to be a NumPy .npz archive, but it cannot be read as one.") from None
    return arrays


def load_checkpoint(directory, name: str = "checkpoint") -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta) from `<name>.npz` and `<name>.json` in `directory`, checked against each other.

    When a save was killed between renaming the arrays and the metadata, the pending metadata that
    matches the new arrays is used (the folder is not changed; the next save completes it).
    """
    directory = Path(directory)
    meta_path, npz_path, pending = directory / f"{name}.json", directory / f"{name}.npz", _pending(directory, name)
    if not meta_path.exists() and not pending.exists():
        hint = ("; a run stopped before its first checkpoint starts again with the same --out"
                if name == "checkpoint" and (directory / CONFIG).exists() and not has_checkpoint(directory, "best")
                else "")
        raise CheckpointError(f"expected a checkpoint ({meta_path.name}) in {directory}, but there is none{hint}.")
    try:
        payload = npz_path.read_bytes()
    except OSError:
        raise CheckpointError(f"expected the checkpoint arrays {npz_path}, but the file cannot be read.") from None
    digest = hashlib.sha256(payload).hexdigest()
    record, error = None, None
    for path in (meta_path, pending):
        if not path.exists():
            continue
        try:
            candidate = _read_record(path)
        except CheckpointError as e:
            error = error or (e if path == meta_path else None)
            continue
        if candidate.get("npz_sha256") == digest:
            record = candidate
            break
    if record is None:
        raise error or CheckpointError(f"{npz_path} does not match {meta_path.name}: it is truncated, corrupted, "
                                       "or from an interrupted save.")
    arrays = _read_arrays(payload, npz_path)
    meta = {k: v for k, v in record.items() if k not in ("format", "npz_sha256", "meta_sha256")}
    return arrays, meta


# ----- grouping arrays by owner ------------------------------------------------------------------

def prefixed(prefix: str, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{"<prefix>/<key>": array}: how model, optimiser and schedule share one .npz."""
    return {f"{prefix}/{key}": np.asarray(value) for key, value in state.items()}


def section(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays saved under `prefixed(prefix, ...)`, with the prefix removed."""
    head = prefix + "/"
    return {key[len(head):]: value for key, value in arrays.items() if key.startswith(head)}


def load_weights(model, run, name: str | None = None) -> dict:
    """Load `model` from the run's checkpoint `name` (default: the best, else the latest); returns its
    metadata."""
    run = Path(run)
    name = name or ("best" if has_checkpoint(run, "best") else "checkpoint")
    arrays, meta = load_checkpoint(run, name)
    fit_weights(model, arrays, run, name)
    return meta


def fit_weights(model, arrays: dict[str, np.ndarray], run, name: str) -> None:
    """Copy checkpoint `name`'s model arrays into `model`; weights that do not fit the model (config.json
    edited, say) are one sentence naming both files."""
    try:
        model.load_state_dict(section(arrays, "model"))
    except ValueError as e:
        raise CheckpointError(f"{Path(run) / (name + '.npz')} does not fit the model that {Path(run) / CONFIG} "
                              f"describes: {str(e).rstrip('.')}.") from None


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
        try:
            g.bit_generator.state = states[name]
        except (TypeError, ValueError, KeyError):
            raise CheckpointError(f"the checkpoint's random state for '{name}' is not a state of the model's "
                                  f"{type(g.bit_generator).__name__} generator.") from None
