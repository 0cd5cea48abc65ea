"""``python -m vdm``: see :mod:`vdm.cli`."""

import sys

from vdm.cli import main

if __name__ == "__main__":
    sys.exit(main())
