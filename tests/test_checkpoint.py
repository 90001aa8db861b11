"""Checkpoints and run folders: round trips, atomic writes and one-sentence errors."""
import json
import os
import stat

import numpy as np
import pytest

from unrolled import Module, Parameter
from unrolled.checkpoint import (FORMAT_VERSION, CheckpointError, generator_states, load_checkpoint, meta_digest,
                                 module_generators, prefixed, restore_generators, save_checkpoint, section)
from unrolled.runs import (append_metrics, atomic_write, create_run, outside_runs, read_config, read_metrics,
                          truncate_metrics)


def _arrays():
    rng = np.random.default_rng(0)
    return {**prefixed("model", {"rnn.weight_ih_l0": rng.standard_normal((8, 3)).astype(np.float32),
                                 "decoder.bias": np.arange(5, dtype=np.float64)}),
            **prefixed("optim", {"step": np.array(7), "m.0": rng.standard_normal(4)})}


def _one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and message.count(". ") == 0


def test_round_trip_keeps_arrays_dtypes_and_meta(tmp_path):
    arrays = _arrays()
    meta = {"step": 12, "epoch": 1, "best_val": 1.25, "rng": {"x": np.random.default_rng(3).bit_generator.state}}
    save_checkpoint(tmp_path, arrays, meta)
    loaded, got = load_checkpoint(tmp_path)
    assert set(loaded) == set(arrays)
    for k in arrays:
        assert loaded[k].dtype == arrays[k].dtype
        np.testing.assert_array_equal(loaded[k], arrays[k])
    assert got["step"] == 12 and got["best_val"] == 1.25 and got["format_version"] == FORMAT_VERSION == 2
    assert got["rng"] == meta["rng"]  # 128-bit integers survive JSON exactly
    assert section(loaded, "model").keys() == {"rnn.weight_ih_l0", "decoder.bias"}
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "checkpoint.npz"]  # no temporary left behind


def test_npz_is_plain_arrays_loadable_without_pickle(tmp_path):
    save_checkpoint(tmp_path, _arrays(), {"step": 1})
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as npz:
        assert "model/decoder.bias" in npz.files
    with pytest.raises(ValueError, match="numeric NumPy arrays"):
        save_checkpoint(tmp_path, {"model/x": np.array([object()])}, {"step": 1})


@pytest.mark.parametrize("damage", ["truncate", "flip", "missing_npz", "missing_json", "bad_json",
                                    "foreign_json", "newer", "not_zip"])
def test_damaged_checkpoints_raise_one_sentence(tmp_path, damage):
    save_checkpoint(tmp_path, _arrays(), {"step": 3})
    npz, meta = tmp_path / "checkpoint.npz", tmp_path / "checkpoint.json"
    data = npz.read_bytes()
    record = json.loads(meta.read_text())
    if damage == "truncate":
        npz.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        npz.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "missing_npz":
        npz.unlink()
    elif damage == "missing_json":
        meta.unlink()
    elif damage == "bad_json":
        meta.write_text(meta.read_text()[:20])
    elif damage == "foreign_json":
        meta.write_text(json.dumps({"hello": "world"}))
    elif damage == "newer":
        meta.write_text(json.dumps({**record, "format_version": 99}))
    elif damage == "not_zip":  # consistent checksums, but the payload is not an archive
        import hashlib
        npz.write_bytes(b"hello, not a zip file")
        record["npz_sha256"] = hashlib.sha256(b"hello, not a zip file").hexdigest()
        meta.write_text(json.dumps({**record, "meta_sha256": meta_digest(record)}))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    assert isinstance(info.value, ValueError)
    assert _one_sentence(str(info.value)), str(info.value)


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, _arrays(), {"step": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, {"model/x": np.ones(3)}, {"step": 2})
    monkeypatch.undo()
    arrays, meta = load_checkpoint(tmp_path)
    assert meta["step"] == 1 and "model/x" not in arrays
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "checkpoint.npz"]


def test_a_torn_pair_is_detected(tmp_path):
    """The .npz of a newer save with the .json of an older one: a kill between the two writes."""
    save_checkpoint(tmp_path, _arrays(), {"step": 1})
    old_meta = (tmp_path / "checkpoint.json").read_bytes()
    save_checkpoint(tmp_path, {"model/x": np.ones(3)}, {"step": 2})
    (tmp_path / "checkpoint.json").write_bytes(old_meta)
    with pytest.raises(CheckpointError, match="interrupted save"):
        load_checkpoint(tmp_path)


def test_atomic_write_cleans_up_on_error(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")

    def fail(f):
        f.write(b"partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["file.txt"]


class _Noisy(Module):
    def __init__(self, seed):
        super().__init__()
        self.w = Parameter(np.zeros(2))
        self.rng = np.random.default_rng(seed)
        self.children = [Module(), Module()]
        self.children[0].rng = self.rng  # shared: listed once
        self.children[1].gen = np.random.default_rng(seed + 1)


def test_generator_states_restore_every_stream():
    m = _Noisy(5)
    gens = module_generators(m)
    assert sorted(gens) == ["children.1.gen", "rng"]
    saved = json.loads(json.dumps(generator_states(gens)))
    first = [g.random(3) for g in gens.values()]
    restore_generators(gens, saved)
    again = [g.random(3) for g in gens.values()]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(CheckpointError, match="random states"):
        restore_generators(gens, {"rng": saved["rng"]})


def test_run_folder_config_and_metrics(tmp_path):
    run = create_run(tmp_path / "run", {"task": "lm", "hidden": 8})
    assert (run / "plots").is_dir() and read_config(run, "lm")["hidden"] == 8
    save_checkpoint(run, _arrays(), {"step": 0})
    with pytest.raises(ValueError, match="already holds a run"):
        create_run(run, {"task": "lm"})
    with pytest.raises(ValueError, match="expected a 'sentiment' run"):
        read_config(run, "sentiment")
    with pytest.raises(ValueError, match="no such file"):
        read_config(tmp_path, "lm")
    for step in (10, 20, 30):
        append_metrics(run, {"step": step, "val_loss": 1.0 / step})
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 40, "val')  # torn by a kill mid-line
    assert [r["step"] for r in read_metrics(run)] == [10, 20, 30]
    truncate_metrics(run, 20)
    assert [r["step"] for r in read_metrics(run)] == [10, 20]


def test_a_run_stopped_before_its_first_checkpoint_starts_again(tmp_path):
    run = create_run(tmp_path / "run", {"task": "lm", "hidden": 8})
    append_metrics(run, {"step": 5, "val_loss": 1.0})
    (run / ".checkpoint.npz.abc123.tmp").write_bytes(b"half a write")
    with pytest.raises(CheckpointError, match="starts again with the same --out"):
        load_checkpoint(run)
    again = create_run(run, {"task": "lm", "hidden": 16})
    assert read_config(again, "lm")["hidden"] == 16
    assert read_metrics(again) == [] and not list(again.glob(".*.tmp"))
    foreign = tmp_path / "project"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"editor": "vim"}')  # not a run: never overwritten
    with pytest.raises(ValueError, match="already holds a config.json; choose another --out"):
        create_run(foreign, {"task": "lm"})
    assert (foreign / "config.json").read_text() == '{"editor": "vim"}'


def test_a_run_that_lost_its_latest_checkpoint_is_not_started_over(tmp_path):
    run = create_run(tmp_path / "run", {"task": "lm", "hidden": 8})
    save_checkpoint(run, _arrays(), {"step": 50}, "best")
    with pytest.raises(CheckpointError) as error:            # checkpoint.json deleted; best.json is there
        load_checkpoint(run)
    assert "same --out" not in str(error.value)
    with pytest.raises(ValueError, match="already holds a run"):
        create_run(run, {"task": "lm", "hidden": 16})
    assert read_config(run, "lm")["hidden"] == 8 and load_checkpoint(run, "best")[1]["step"] == 50


def _kill_at_replace(monkeypatch, target: str):
    """Make os.replace raise (a stand-in for a kill) when it is about to put `target` in place."""
    original = os.replace

    def replace(src, dst):
        if str(dst).endswith(target):
            raise KeyboardInterrupt("killed")
        return original(src, dst)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("target, step", [(".checkpoint.json.pending", 1), ("checkpoint.npz", 1), ("checkpoint.json", 2)])
def test_a_save_killed_at_any_rename_leaves_a_loadable_checkpoint(tmp_path, monkeypatch, target, step):
    """Killed before the pending metadata, before the arrays, or between the arrays and the metadata
    (the torn pair): the old checkpoint, the old one, and the new one through its pending metadata."""
    save_checkpoint(tmp_path, _arrays(), {"step": 1})
    _kill_at_replace(monkeypatch, target)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, {"model/x": np.ones(3)}, {"step": 2})
    monkeypatch.undo()
    arrays, meta = load_checkpoint(tmp_path)
    assert meta["step"] == step and ("model/x" in arrays) == (step == 2)
    save_checkpoint(tmp_path, {"model/x": np.zeros(3)}, {"step": 3})  # the next save completes the folder
    assert load_checkpoint(tmp_path)[1]["step"] == 3
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "checkpoint.npz"]


def test_an_edited_metadata_value_is_caught_by_its_checksum(tmp_path):
    save_checkpoint(tmp_path, _arrays(), {"step": 40, "best_val": 1.5})
    meta = tmp_path / "checkpoint.json"
    meta.write_text(meta.read_text().replace('"step": 40', '"step": 41'))
    with pytest.raises(CheckpointError, match="does not match its own checksum"):
        load_checkpoint(tmp_path)
    record = json.loads(meta.read_text())
    record["step"] = 40
    meta.write_text(json.dumps(record, separators=(",", ":")))  # other whitespace, same content: the same checkpoint
    assert load_checkpoint(tmp_path)[1]["step"] == 40


def test_a_version_1_checkpoint_without_metadata_checksum_still_loads(tmp_path):
    save_checkpoint(tmp_path, _arrays(), {"step": 7})
    meta = tmp_path / "checkpoint.json"
    record = json.loads(meta.read_text())
    del record["meta_sha256"]
    meta.write_text(json.dumps({**record, "format_version": 1}))
    assert load_checkpoint(tmp_path)[1]["step"] == 7
    meta.write_text(json.dumps({**record, "format_version": 0}))
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(tmp_path)


def _sign(directory, payload: bytes, name="checkpoint", **meta):
    """Write `payload` as <name>.npz with metadata whose checksums match it: only the loader stands guard."""
    import hashlib
    (directory / f"{name}.npz").write_bytes(payload)
    record = {**meta, "format": "unrolled-checkpoint", "format_version": 2,
              "npz_sha256": hashlib.sha256(payload).hexdigest()}
    (directory / f"{name}.json").write_text(json.dumps({**record, "meta_sha256": meta_digest(record)}))


def _zip(members: dict, compression=0) -> bytes:
    import io
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npy(array, allow_pickle=False) -> bytes:
    import io
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.mark.parametrize("members, compression, match", [
    ({"model/w.npy": _npy(np.ones(3)), "notes.txt": b"hello"}, 0, "only distinct, uncompressed .npy"),
    ({"model/w.npy": _npy(np.ones(3))}, 8, "only distinct, uncompressed .npy"),  # deflated: a zip bomb's way in
    ({"model/w.npy": _npy(np.ones(3))[:-8]}, 0, "different number of bytes"),
    ({"model/w.npy": _npy(np.ones(3)) + b"\0" * 8}, 0, "different number of bytes"),
    ({"model/w.npy": _npy(np.array(["a", None], dtype=object), allow_pickle=True)}, 0, "only numeric arrays"),
    ({"model/w.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8'}"}, 0, "cannot be read as one"),
])
def test_the_loader_reads_only_plain_uncompressed_arrays(tmp_path, members, compression, match):
    _sign(tmp_path, _zip(members, compression), step=1)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(tmp_path)
    assert _one_sentence(str(info.value)), str(info.value)
    _sign(tmp_path, _zip({"model/w.npy": _npy(np.arange(3.0)), "model/name.npy": _npy(np.array(["lstm"]))}), step=1)
    arrays, _ = load_checkpoint(tmp_path)  # the same route takes a good archive
    assert arrays["model/w"].tolist() == [0.0, 1.0, 2.0] and arrays["model/name"].tolist() == ["lstm"]


def test_resume_drops_samples_written_after_the_checkpoint(tmp_path):
    from unrolled.runs import truncate_samples
    path = tmp_path / "samples.txt"
    sections = [f"=== step {s}, val loss 2.0 ===\ntext of step {s}\n=== not a header\n\n" for s in (20, 40, 60)]
    path.write_text("".join(sections))
    truncate_samples(tmp_path, 40)
    assert path.read_text() == "".join(sections[:2])
    truncate_samples(tmp_path, 40)
    assert path.read_text() == "".join(sections[:2])


def test_a_second_process_cannot_train_a_run_being_trained(tmp_path):
    import subprocess
    import sys
    from unrolled.runs import lock_run, release_run
    run = create_run(tmp_path / "run", {"task": "lm"})  # this process now holds the run
    other = [sys.executable, "-c", f"from unrolled.runs import lock_run; lock_run({str(run)!r})"]
    done = subprocess.run(other, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "is being trained by another process right now" in done.stderr
    lock_run(run)  # again in the same process: fine
    release_run(run)
    assert subprocess.run(other, capture_output=True, timeout=60).returncode == 0


def test_an_atomic_write_to_a_folder_or_into_a_missing_folder_names_the_path_asked_for(tmp_path):
    (tmp_path / "plot.png").mkdir()
    with pytest.raises(ValueError, match=f"expected a file to write at {tmp_path / 'plot.png'}, but it is a folder"):
        atomic_write(tmp_path / "plot.png", lambda f: f.write(b"x"))
    with pytest.raises(ValueError, match=f"the folder {tmp_path / 'nowhere'} does not exist"):
        atomic_write(tmp_path / "nowhere" / "forecast.csv", lambda f: f.write(b"x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]   # no temporary file left


def test_a_folder_create_run_began_before_a_kill_is_started_again(tmp_path):
    out = tmp_path / "run"
    (out / "plots").mkdir(parents=True)
    (out / ".lock").write_bytes(b"")                          # made before config.json
    assert read_config(create_run(out, {"task": "lm", "hidden": 8}), "lm")["hidden"] == 8
    mine = tmp_path / "mine"
    (mine / "plots").mkdir(parents=True)
    (mine / "plots" / "loss.png").write_bytes(b"mine")        # a plot in it: someone's folder
    with pytest.raises(ValueError, match="holds files that are not a run"):
        create_run(mine, {"task": "lm"})


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="permissions are POSIX's")
def test_an_atomic_write_gives_a_new_file_the_umasks_mode_and_keeps_an_old_ones(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "new.txt", lambda f: f.write(b"new"))
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640      # 0666 less the umask, not 0600
        mine = tmp_path / "mine.csv"
        mine.write_text("mine")
        mine.chmod(0o664)
        atomic_write(mine, lambda f: f.write(b"forecast"))
        assert mine.read_text() == "forecast" and stat.S_IMODE(mine.stat().st_mode) == 0o664
    finally:
        os.umask(old)


def test_outputs_stay_out_of_runs_but_for_the_commands_own_file(tmp_path):
    run, other = create_run(tmp_path / "run", {"task": "lm"}), create_run(tmp_path / "other", {"task": "lm"})
    for folder in (run, other):
        append_metrics(folder, {"step": 1})
    assert outside_runs(run / "plots" / "explain.png", "--out", run, "plots/explain.png") == run / "plots" / "explain.png"
    for path, owner in ((run / "plots" / "loss.png", run), (other / "plots" / "explain.png", other)):
        with pytest.raises(ValueError, match=f"--out {path} is in the run folder {owner.resolve()}"):
            outside_runs(path, "--out", run, "plots/explain.png")
    project = tmp_path / "project"                                    # someone's config.json with a "task"
    (project / "results").mkdir(parents=True)
    (project / "config.json").write_text('{"task": "detection"}')
    assert outside_runs(project / "results" / "e.png", "--out") == project / "results" / "e.png"
