"""Snakemake parses the Snakefile on every call (each dry run, each cluster job's own Snakemake):
the package modules the workflow imports at parse time import neither torch nor numpy, pandas or
scipy, which would cost about a second and a half per call (vdm.core.dataset_facts,
vdm.model.setting_names)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "pandas", "scipy")


def parse_time_imports() -> list[str]:
    """The module-level ``from vdm... import ...`` statements of the Snakefile and the rule
    files (those inside a rule's ``run:`` block are indented and run only in that job)."""
    statements = []
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]:
        statements += re.findall(r"^from vdm[\w.]* import (?:\([^)]*\)|[^\n]*)", path.read_text(),
                                 re.M)
    return statements


def test_the_workflow_parses_without_torch() -> None:
    statements = parse_time_imports()
    assert any("vdm.core.job_specs" in s for s in statements)  # the parse found them
    code = "\n".join([*statements, "import sys",
                      f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"])
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "", f"the workflow's parse imports {result.stdout.strip()}"
