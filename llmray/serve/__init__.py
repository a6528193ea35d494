"""Serving and applying trained models.

    app.py       the Ray Serve deployment (dynamic batching with ``@serve.batch``) and its app builder,
                 for ``serve run`` config files and KubeRay (``llmray.serve.app:build``)
    commands.py  ``llmray serve MODEL_DIR``: start Ray Serve in this process, stop cleanly on SIGTERM

Loading and applying a model is :mod:`llmray.models`, below this package and shared with ``llmray
predict`` and the ``classify`` step (so the three give the same labels). Importing this package
imports neither Ray nor torch.
"""
