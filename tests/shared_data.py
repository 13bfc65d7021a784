"""Where the project's read-only public data lives: ``../shared/data`` beside the checkout
(as on developer machines and in CI), or ``$CAPSIM_SHARED_DATA``."""

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("CAPSIM_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))
