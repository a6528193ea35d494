"""``python -m llmray.kernels``: compile every kernel now, then ahead of time (``make setup`` runs
this at install)."""

import time

from llmray.kernels import aot, compile_all

print(f"llmray kernels compiled in {compile_all(force=True):.1f} s")
started = time.perf_counter()
try:
    exports = aot.build()
except Exception as exc:  # noqa: BLE001  (no C compiler, no pycc: the kernels run through numba's cache)
    print(f"llmray kernels not compiled ahead of time ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
          f"runs load numba's cached kernels instead")
else:
    print(f"llmray kernels compiled ahead of time in {time.perf_counter() - started:.1f} s ({exports} exports)")
