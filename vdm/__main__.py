"""``python -m vdm``: see :mod:`vdm.pipeline.cli`."""

import sys

from vdm.pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
