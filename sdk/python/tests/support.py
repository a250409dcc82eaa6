"""Shared set-up of the SDK's unit tests, which run natively:

    <target-dir>/venv-python-guests/bin/python -m unittest discover sdk/python/tests

It puts the SDK and the examples (`guest-examples/python/`, and the fixture of
`tests/guests/python/`) on `sys.path`, makes msgpack use its pure-Python
implementation (the one a component runs; `MSGPACK_PUREPYTHON=` set empty tests the C one), and
generates the bindings of the four worlds with componentize-py, as `wit_operator`,
`wit_timed_operator`, `wit_source` and `wit_sink` (`bindings(world)`), for the tests of the
glue."""

import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(SDK))

os.environ.setdefault("MSGPACK_PUREPYTHON", "1")
for path in (
    SDK,
    os.path.join(ROOT, "guest-examples", "python"),
    os.path.join(ROOT, "tests", "guests", "python"),
):
    if path not in sys.path:
        sys.path.insert(0, path)

_bindings_dir = None


def componentize_py():
    """The componentize-py beside this Python (the venv's), or on PATH, or None."""
    beside = os.path.join(os.path.dirname(sys.executable), "componentize-py")
    return beside if os.path.exists(beside) else shutil.which("componentize-py")


def bindings(world):
    """The generated world module of `world` (`operator`, `timed-operator`, `source` or
    `sink`)."""
    global _bindings_dir
    if _bindings_dir is None:
        tool = componentize_py()
        if tool is None:
            raise RuntimeError("componentize-py is not installed: run sdk/python/build.sh")
        _bindings_dir = tempfile.mkdtemp(prefix="jobhost-bindings-")
        atexit.register(shutil.rmtree, _bindings_dir, ignore_errors=True)
        for name in ("operator", "timed-operator", "source", "sink"):
            module = "wit_" + name.replace("-", "_")
            subprocess.run(
                [tool, "-q", "-d", os.path.join(ROOT, "wit"), "-w", name,
                 "--world-module", module, "bindings", _bindings_dir],
                check=True,
            )
        sys.path.insert(0, _bindings_dir)
    return importlib.import_module("wit_" + world.replace("-", "_"))


def load_example(name, world):
    """Imports example `name` afresh, its `export` line bound to the bindings of `world`;
    returns the module (its `WitWorld` is the glue componentize-py would call)."""
    sys.modules["wit_world"] = bindings(world)
    sys.modules.pop(name, None)
    try:
        return importlib.import_module(name)
    finally:
        del sys.modules["wit_world"]


def err_type():
    """The generated `Err` exception that the glue raises for a WIT error."""
    bindings("operator")
    return importlib.import_module("componentize_py_types").Err
