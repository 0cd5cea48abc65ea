"""``python -m vdm.bench``: the performance bench (:mod:`vdm.bench.measure`, its command line
:mod:`vdm.bench.cli`)."""

import sys

from vdm.bench.cli import main

sys.exit(main())
