"""The kernels compiled ahead of time into one extension module, which needs no numba to run.

``build`` (run by ``python -m llmray.kernels`` at install) compiles, with numba's ``pycc``, one
export per signature that the install's ``compile_all`` gave each kernel, for this machine's CPU
(its model and features, as numba's JIT would). Each export calls the numba function itself, so
the machine code is what the JIT makes. Beside the module a manifest maps (kernel, the argument
types' keys) to the export's name. ``load`` uses them only where the module's stamp matches: the
kernels' sources, Python, NumPy and this CPU; anything else and the process uses numba's JIT.

``pycc`` needs a C compiler; numba has deprecated it (it is still in numba 0.68). Without either
the build says so and the kernels run as before, through numba's cache.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llmray.kernels.cache import cache_folder

KERNELS = Path(__file__).parent
#: The modules that hold no kernel: editing them leaves the module valid.
MACHINERY = {"__init__.py", "__main__.py", "aot.py", "cache.py", "jit.py"}
_INT64 = (-(1 << 63), 1 << 63)


def arg_key(value: Any) -> Any:
    """What numba's typeof would make of ``value``, as a hashable key (None: not a kernel argument)."""
    if isinstance(value, np.ndarray):
        flags = value.flags
        layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"
        return value.dtype.str, value.ndim, layout, flags.writeable, flags.aligned
    if isinstance(value, bool | np.bool_):
        return "?"
    if isinstance(value, np.generic):
        return value.dtype.str
    if isinstance(value, int):
        return "<i8" if _INT64[0] <= value < _INT64[1] else "<u8"
    if isinstance(value, float):
        return "<f8"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return (type(value).__qualname__, *map(arg_key, value))
    return None


def type_key(numba_type: Any) -> Any:
    """The key of :func:`arg_key` for the values numba types as ``numba_type``."""
    from numba.core import types

    if isinstance(numba_type, types.Array):
        return (np.dtype(str(numba_type.dtype)).str, numba_type.ndim, numba_type.layout, numba_type.mutable,
                numba_type.aligned)
    if isinstance(numba_type, types.Boolean):
        return "?"
    if isinstance(numba_type, types.Integer | types.Float):
        return np.dtype(numba_type.name).str
    if isinstance(numba_type, types.NoneType):
        return "none"
    if isinstance(numba_type, types.BaseNamedTuple):
        return (numba_type.instance_class.__qualname__, *map(type_key, numba_type.types))
    if isinstance(numba_type, types.BaseTuple):
        return ("tuple", *map(type_key, numba_type.types))
    raise TypeError(f"no ahead-of-time export for arguments of type {numba_type}")


def stamp() -> str:
    """What the module is valid for: the kernels' sources, Python, NumPy and this CPU."""
    digest = hashlib.sha1()
    for source in sorted(KERNELS.glob("*.py")):
        if source.name not in MACHINERY:
            digest.update(source.name.encode() + source.read_bytes())
    digest.update(f"{sys.implementation.cache_tag} {np.__version__} {_cpu()}".encode())
    return digest.hexdigest()[:16]


def _cpu() -> str:
    """This CPU's model and features, from the kernel where it says (code for one CPU may use
    instructions another lacks)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            first = info.read(1 << 16).split("\n\n", 1)[0]
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    keys = ("vendor_id", "model name", "flags", "CPU implementer", "CPU part", "Features")
    return "\n".join(line for line in first.splitlines() if line.startswith(keys))


def module_name() -> str:
    return f"llmray_aot_{stamp()}"


def paths(folder: Path | None = None) -> tuple[Path, Path]:
    """(the module, its manifest) for this stamp, in ``folder`` (the kernels' cache folder)."""
    folder, name = folder or cache_folder(), module_name()
    return folder / f"{name}{importlib.machinery.EXTENSION_SUFFIXES[0]}", folder / f"{name}.json"


def load(folder: Path | None = None) -> dict[tuple, Callable[..., Any]] | None:
    """{(kernel, argument keys): export} from the module built for this stamp, or None."""
    name = module_name()
    library, manifest = paths(folder)
    try:
        entries = json.loads(manifest.read_text())
        loader = importlib.machinery.ExtensionFileLoader(name, str(library))
        spec = importlib.util.spec_from_file_location(name, library, loader=loader)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        loader.exec_module(module)
    except Exception:  # noqa: BLE001  (not built, built elsewhere, unreadable: numba's JIT instead)
        return None
    return {(kernel, _tuples(keys)): getattr(module, export) for kernel, keys, export in entries}


def _tuples(key: Any) -> Any:
    return tuple(map(_tuples, key)) if isinstance(key, list) else key


def build(folder: Path | None = None) -> int:
    """Compile the signatures this process's kernels were compiled for (``compile_all(force=True)``
    first) into the module; the exports' count.

    In a process whose kernels run through numba from the start (``LLMRAY_KERNELS=jit`` before the
    first kernel module is imported, as ``python -m llmray.kernels`` does): the kernel modules'
    caches keep what a first call built, so a call the exports served never reaches numba."""
    from llmray.kernels import jit

    if os.environ.get(jit.MODE_ENV) != "jit" or jit.ahead_of_time():
        raise RuntimeError(f"build the kernels ahead of time with {jit.MODE_ENV}=jit set before any kernel "
                           f"is imported: python -m llmray.kernels")
    from numba.core import codegen
    from numba.core.registry import CPUDispatcher

    with warnings.catch_warnings():  # pycc's pending deprecation: the README says what follows from it
        warnings.simplefilter("ignore")
        from numba.pycc import CC

    folder = folder or cache_folder()
    name = module_name()
    compiler = CC(name)
    compiler.target_cpu = "host"
    entries = []
    for where, module in sorted(sys.modules.items()):
        if not where.startswith("llmray.kernels.") or module is None:
            continue
        for value in vars(module).values():
            if not isinstance(value, CPUDispatcher) or value.py_func.__module__ != where:
                continue
            for arg_types in value.signatures:
                try:
                    keys = [type_key(t) for t in arg_types]
                except TypeError:
                    continue  # an argument kind no caller passes from Python: numba serves it
                export = f"k{len(entries)}"
                signature = value.overloads[arg_types].signature
                compiler.export(export, signature)(_trampoline(value, len(arg_types)))
                entries.append((f"{where}.{value.py_func.__qualname__}", keys, export))
    with tempfile.TemporaryDirectory() as scratch:
        compiler.output_dir = scratch
        # pycc takes the CPU's model and leaves its features to it; the JIT asks the CPU: so does this.
        generic = codegen.AOTCPUCodegen._customize_tm_features
        codegen.AOTCPUCodegen._customize_tm_features = codegen.CPUCodegen._get_host_cpu_features
        try:
            compiler.compile()
        finally:
            codegen.AOTCPUCodegen._customize_tm_features = generic
        built, _ = paths(Path(scratch))
        library, manifest = paths(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(built, library)
    manifest.write_text(json.dumps(entries))  # last: a module without its manifest is never loaded
    for old in folder.glob("llmray_aot_*"):
        if not old.name.startswith(name):
            old.unlink(missing_ok=True)
    return len(entries)


def _trampoline(dispatcher: Any, arity: int) -> Callable[..., Any]:
    """A function that calls ``dispatcher``: pycc compiles it and, through it, the kernel as numba's
    JIT does (exporting the kernel's own Python function skips the dispatcher's compile options)."""
    args = ", ".join(f"a{i}" for i in range(arity))
    namespace: dict[str, Any] = {"kernel": dispatcher}
    exec(f"def trampoline({args}):\n    return kernel({args})\n", namespace)  # noqa: S102
    return namespace["trampoline"]
