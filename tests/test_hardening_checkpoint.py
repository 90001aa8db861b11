"""A checkpoint is a file people share: loading one never executes anything and never half-trusts it.

A pickled payload planted in a checkpoint (with checksums that match it, so that only the loader
stands guard) never runs; a truncated, corrupted, wrong-shape, newer-version or foreign checkpoint
is one sentence and exit code 2 from `unrolled lm sample` and `unrolled lm train --resume`, and
leaves the run folder as it was.
"""
import hashlib
import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from unrolled.checkpoint import CheckpointError, load_checkpoint, meta_digest
from unrolled.cli import main
from unrolled.tasks import lm

FIXTURE = Path(__file__).parent / "fixtures" / "tinyshakespeare_4k.txt"


class Payload:
    """Unpickling this runs code: it writes `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('executed')",)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    config = lm.Config(data=str(FIXTURE), hidden=16, embed=8, layers=1, seq_len=8, batch=4, epochs=1, eval_every=40,
                       sample_length=10, seed=0)
    run, _, _ = lm.train(config, tmp_path_factory.mktemp("lm") / "run", progress=False)
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def _sign(run: Path, name: str, payload: bytes, **changes) -> None:
    """Put `payload` in as <name>.npz, with metadata whose checksums match it."""
    record = json.loads((run / f"{name}.json").read_text())
    record.update(changes, npz_sha256=hashlib.sha256(payload).hexdigest())
    record["meta_sha256"] = meta_digest(record)
    (run / f"{name}.npz").write_bytes(payload)
    (run / f"{name}.json").write_text(json.dumps(record))


def _object_array_npz(run: Path, name: str, marker: Path) -> bytes:
    """The real archive with one weight replaced by an object array holding the payload."""
    with np.load(run / f"{name}.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["model/encoder.weight"] = np.array([Payload(marker)], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _snapshot(run: Path) -> dict:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file()}


def _fails_in_one_sentence(capsys, argv, phrase: str) -> str:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert phrase in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("form", ["object array in the npz", "bare pickle as the npz"])
def test_a_planted_pickle_payload_never_runs(run, tmp_path, capsys, form):
    def make(marker: Path) -> bytes:
        if form == "object array in the npz":
            return _object_array_npz(run, "best", marker)
        return pickle.dumps(Payload(marker))

    control = tmp_path / "control.npz"  # the payload is live: loading it with pickle allowed runs it
    control.write_bytes(make(tmp_path / "control.txt"))
    loaded = np.load(control, allow_pickle=True)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        loaded["model/encoder.weight"]
    assert (tmp_path / "control.txt").read_text() == "executed"

    marker = tmp_path / "executed.txt"
    payload = make(marker)

    for name in ("best", "checkpoint"):
        _sign(run, name, payload)
    before = _snapshot(run)
    with pytest.raises(CheckpointError):
        load_checkpoint(run, "best")
    line = _fails_in_one_sentence(capsys, ["lm", "sample", str(run), "--length", "5"], "best.npz")
    assert "only numeric arrays" in line or "cannot be read as one" in line
    _fails_in_one_sentence(capsys, ["lm", "train", "--resume", str(run)], "checkpoint.npz")
    assert not marker.exists()  # nothing of it ran
    assert _snapshot(run) == before


def _newer(run, name):
    _sign(run, name, (run / f"{name}.npz").read_bytes(), format_version=3)


def _foreign(run, name):
    (run / f"{name}.npz").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (run / f"{name}.json").write_text(json.dumps({"task": "lm", "hidden": 16}))


def _not_an_archive(run, name):
    _sign(run, name, b"step,loss\n1,4.2\n")


def _truncated(run, name):
    data = (run / f"{name}.npz").read_bytes()
    (run / f"{name}.npz").write_bytes(data[: len(data) // 3])


def _flipped(run, name):
    data = bytearray((run / f"{name}.npz").read_bytes())
    data[len(data) // 2] ^= 0x10
    (run / f"{name}.npz").write_bytes(bytes(data))


def _edited_metadata(run, name):
    path = run / f"{name}.json"
    path.write_text(path.read_text().replace('"epoch": 1', '"epoch": 0'))


def _wrong_shape(run, name):
    """Weights of another width, consistently signed: they do not fit the model config.json describes."""
    with np.load(run / f"{name}.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["model/decoder.weight"] = np.zeros((arrays["model/decoder.weight"].shape[0], 32), np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _sign(run, name, buffer.getvalue())


@pytest.mark.parametrize("damage, sample_phrase, resume_phrase", [
    (_newer, "format version 3", "upgrade unrolled"),
    (_foreign, "some other JSON file", "some other JSON file"),
    (_not_an_archive, "cannot be read as one", "cannot be read as one"),
    (_truncated, "truncated, corrupted", "truncated, corrupted"),
    (_flipped, "truncated, corrupted", "truncated, corrupted"),
    (_edited_metadata, "does not match its own checksum", "does not match its own checksum"),
    (_wrong_shape, "expected 'decoder.weight' of shape (53, 16)", "does not fit the model and optimiser"),
])
def test_a_damaged_checkpoint_is_one_sentence_and_exit_2(run, capsys, damage, sample_phrase, resume_phrase):
    for name in ("best", "checkpoint"):
        damage(run, name)
    before = _snapshot(run)
    _fails_in_one_sentence(capsys, ["lm", "sample", str(run), "--length", "5"], sample_phrase)
    _fails_in_one_sentence(capsys, ["lm", "train", "--resume", str(run)], resume_phrase)
    assert _snapshot(run) == before


def test_a_checkpoint_from_a_different_model_size_does_not_resume(run, capsys):
    """config.json edited after training: the saved weights no longer fit the model it describes."""
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "hidden": 24}))
    before = _snapshot(run)
    line = _fails_in_one_sentence(capsys, ["lm", "train", "--resume", str(run)], "does not fit the model")
    assert "config.json describes: LanguageModel.load_state_dict expected" in line
    line = _fails_in_one_sentence(capsys, ["lm", "sample", str(run)], "of shape")
    assert f"{run / 'best.npz'} does not fit the model that {run / 'config.json'} describes" in line
    (run / "config.json").write_text(json.dumps({**config, "layers": config["layers"] + 2}))
    edited = _snapshot(run)
    line = _fails_in_one_sentence(capsys, ["lm", "train", "--resume", str(run)], "does not fit the model")
    assert "LanguageModel.load_state_dict is missing 'rnn.weight_ih_l1', " in line and " more)." in line
    assert len(line) < 400                                   # a few names, not every parameter's
    assert _snapshot(run) == edited
    (run / "config.json").write_text(json.dumps({**config, "hidden": 24}))
    assert _snapshot(run) == before


def test_a_zip_bomb_is_refused_without_being_inflated(run, capsys):
    """A deflated member that would inflate to 400 MB: refused from its header, never decompressed."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**8,)})
        with archive.open("model/encoder.weight.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            zeros = bytes(2**22)
            for _ in range(100):
                member.write(zeros)
    assert len(buffer.getvalue()) < 2**20
    _sign(run, "best", buffer.getvalue())
    _fails_in_one_sentence(capsys, ["lm", "sample", str(run)], "uncompressed .npy arrays")
