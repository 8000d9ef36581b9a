"""``python -m terrasynth.cli`` (and ``accelerate launch -m terrasynth.cli``) runs the command line."""

import sys

from . import main

sys.exit(main())
