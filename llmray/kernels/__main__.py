"""``python -m llmray.kernels``: compile every kernel now, then ahead of time (``make setup`` runs
this at install). Every kernel runs through numba from the start here, so that each signature the
warm-up calls reaches numba's dispatcher: the module's caches (the segmenter, the language model)
would otherwise hold what an earlier call through the exports built, and a later call never
compile it."""

import os
import time

from llmray.kernels.jit import MODE_ENV

os.environ[MODE_ENV] = "jit"

from llmray.kernels import aot, compile_all  # noqa: E402

print(f"llmray kernels compiled in {compile_all(force=True):.1f} s")
started = time.perf_counter()
try:
    exports = aot.build()
except Exception as exc:  # noqa: BLE001  (no C compiler, no pycc: the kernels run through numba's cache)
    print(f"llmray kernels not compiled ahead of time ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
          f"runs load numba's cached kernels instead")
else:
    print(f"llmray kernels compiled ahead of time in {time.perf_counter() - started:.1f} s ({exports} exports)")
