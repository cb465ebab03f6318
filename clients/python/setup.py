"""Build hook: generate the gRPC stubs before setuptools collects the package.

The stubs are written to src/raftq/_proto (ignored by git) from the proto
files at ../../proto, so the package builds from a checkout of the raftq
repository. setuptools runs this file once per build step (requirements,
metadata, wheel), and each run regenerates the stubs; that takes well under a
second. The runtime requirements on grpcio and protobuf are read from the
generated code, which refuses to load on an older runtime.
"""

import importlib.util
from pathlib import Path

from setuptools import setup

_ROOT = Path(__file__).resolve().parent


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "raftq_generate_stubs", _ROOT / "scripts" / "generate_stubs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_generator = _load_generator()
_generator.generate()

setup(install_requires=_generator.runtime_requirements())
