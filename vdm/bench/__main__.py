"""``python -m vdm.bench``: the performance bench (:mod:`vdm.bench.measure`)."""

import sys

from vdm.bench.measure import main

sys.exit(main())
