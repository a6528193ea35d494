"""``python -m llmray.train JOB.yaml``: train on one device without Ray (see :mod:`.local`)."""

import sys

from llmray.train.local import main

sys.exit(main())
