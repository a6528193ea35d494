"""The kernels compiled ahead of time: loaded only where valid, and a process given a type the
install did not compile switches to numba and still answers right. (That the exports answer as
numba does on whole jobs, and that no Ray worker imports numba, is in tests/pipeline/test_run.py.)"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmray.kernels import aot
from tests.helpers import HAS_C_COMPILER

needs_compiler = pytest.mark.skipif(not HAS_C_COMPILER, reason="no C compiler: the install could not build the module")


def built() -> tuple[Path, Path]:
    library, manifest = aot.paths()
    assert library.exists(), "make setup (python -m llmray.kernels) builds the module; it is not there"
    return library, manifest


@needs_compiler
def test_the_install_built_a_module_for_these_sources(tmp_path):
    library, manifest = built()
    assert aot.load() is not None
    assert aot.load(tmp_path) is None  # nothing built there
    shutil.copy(library, tmp_path / library.name)
    assert aot.load(tmp_path) is None  # a module without its manifest is never loaded
    (tmp_path / manifest.name).write_text(manifest.read_text())
    assert aot.load(tmp_path) is not None


def test_a_module_for_other_sources_is_ignored(tmp_path, monkeypatch):
    before = aot.stamp()
    changed = tmp_path / "kernels"
    shutil.copytree(aot.KERNELS, changed, ignore=shutil.ignore_patterns("__pycache__"))
    (changed / "text.py").write_text((changed / "text.py").read_text() + "\n# edited\n")
    monkeypatch.setattr(aot, "KERNELS", changed)
    assert aot.stamp() != before


FALLBACK = """
import sys
import numpy as np
from llmray.kernels import graph, jit
assert jit.ahead_of_time() and "numba" not in sys.modules
expected = graph.union_find_min(4, np.array([0, 2]), np.array([1, 3]))  # int64: compiled at install
assert "numba" not in sys.modules
got = graph.union_find_min(4, np.array([0, 2], np.int32), np.array([1, 3], np.int32))  # never compiled
assert not jit.ahead_of_time() and "numba" in sys.modules
assert got.tolist() == expected.tolist() == [0, 0, 2, 2], (got, expected)
again = graph.union_find_min(4, np.array([0, 1]), np.array([1, 2]))  # numba's own from now on
assert again.tolist() == [0, 0, 0, 3], again
print("ok")
"""


@needs_compiler
def test_a_type_the_install_did_not_compile_switches_the_process_to_numba():
    built()
    done = subprocess.run([sys.executable, "-c", FALLBACK], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.skipif(os.environ.get("LLMRAY_KERNELS") == "jit", reason="this process runs numba's JIT")
def test_building_in_a_process_that_ran_the_exports_is_refused(tmp_path):
    """Its caches (the jieba segmenter's dictionary) were built through the exports, so numba would
    never see those calls and the new module would lack them: a rebuild over an installed module
    once left jieba's dictionary kernels out."""
    with pytest.raises(RuntimeError, match="LLMRAY_KERNELS=jit"):
        aot.build(tmp_path)
    assert list(tmp_path.iterdir()) == []
