"""Atomic result files and provenance records."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vdm.core.provenance import (
    atomic_output,
    parse_process_age,
    provenance,
    save_torch_atomic,
    write_json_atomic,
)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"fid": 1.0})
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"fid": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_torch_save_with_a_failing_check_keeps_nothing(tmp_path) -> None:
    def reject(path: str) -> None:
        assert torch.load(path)["x"] == 1  # the temporary holds the full object
        raise ValueError("bad weights")

    with pytest.raises(ValueError, match="bad weights"):
        save_torch_atomic({"x": 1}, tmp_path / "w.pt", check=reject)
    assert list(tmp_path.iterdir()) == []
    save_torch_atomic({"x": 2}, tmp_path / "w.pt")
    assert torch.load(tmp_path / "w.pt")["x"] == 2


def test_provenance_names_commit_and_versions() -> None:
    info = provenance("cpu")
    assert {"git", "packages", "python", "platform", "timestamp"} <= set(info)
    assert torch.__version__.startswith(info["packages"]["torch"].split("+")[0])


def test_process_age_is_read_from_proc_stat_after_the_command_name() -> None:
    # field 22 (starttime) is 150 ticks; the command name holds spaces and a ")"
    stat = "4242 (python -m v)dm) S " + " ".join(str(i) for i in range(4, 22)) + " 150 0 0"
    assert parse_process_age(stat, "12.34 99.0\n", 100) == pytest.approx(12.34 - 1.5)


def test_a_command_line_process_records_its_start_up_once(tmp_path) -> None:
    """``python -m vdm`` records its start-up (process creation to the command's start) in the
    provenance of what it writes; a second call in the same process keeps the first record."""
    code = ("import json; from vdm.core.provenance import mark_command_start, provenance; "
            "first = mark_command_start('claims'); mark_command_start('other'); "
            "print(json.dumps([first, provenance()['process']]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[1])
    first, recorded = json.loads(done.stdout)
    assert first == recorded and recorded["command"] == "claims"
    assert 0 < recorded["startup_seconds"] < 120  # at least the import of torch
    assert abs(recorded["created"] + recorded["startup_seconds"] - time.time()) < 120
    assert "process" not in provenance()  # this (pytest) process never marked a command
