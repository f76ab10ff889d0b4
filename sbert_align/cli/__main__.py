"""``python -m sbert_align.cli ...``: the same as the ``sbert-align`` command."""

import sys

from . import main

sys.exit(main())
