"""The `unrolled` command's entry point (`unrolled.__main__`): a light package import, and a
Ctrl-C while the command line loads is an interruption like any other, not a traceback."""
import importlib.abc
import os
import subprocess
import sys

import pytest

import unrolled
from unrolled.__main__ import main

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


def test_importing_the_package_loads_nothing_until_a_name_is_used():
    probe = ("import sys, unrolled; before = 'numpy' in sys.modules; gru = unrolled.GRU; "
             "print(before, 'numpy' in sys.modules, gru.__module__, unrolled.optim.Adam.__module__)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=60)
    assert done.stdout.split() == ["False", "True", "unrolled.rnn.recurrent", "unrolled.optim.adam"], done.stderr


def test_the_package_names_are_all_there():
    assert set(unrolled.__all__) <= set(dir(unrolled))
    for name in unrolled.__all__:
        assert getattr(unrolled, name).__name__.rsplit(".", 1)[-1] == name
    with pytest.raises(AttributeError, match="no attribute 'Foo'"):
        unrolled.Foo


class _Interrupted(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "unrolled.cli":
            raise KeyboardInterrupt
        return None


def test_ctrl_c_while_the_command_line_loads_is_one_line_and_exit_130(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "unrolled.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Interrupted(), *sys.meta_path])
    assert main(["--version"]) == 130
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "unrolled: interrupted.\n")


CHILD = """
import importlib.abc, os, signal, sys

class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "unrolled.train":                  # loaded by the command line, after NumPy
            os.kill(os.getpid(), signal.SIGINT)       # as a Ctrl-C from the terminal would
        return None

signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal, even if started in the background
sys.meta_path.insert(0, CtrlC())
from unrolled.__main__ import main
sys.exit(main(["--version"]))
"""


def test_a_real_ctrl_c_during_loading_is_not_a_traceback():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=ENV, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "unrolled: interrupted.\n")


def test_python_dash_m_unrolled_is_the_command():
    done = subprocess.run([sys.executable, "-m", "unrolled", "--version"], capture_output=True, text=True, env=ENV,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"unrolled {unrolled.__version__}", done.stderr
