"""Atomic result files and provenance records."""

from __future__ import annotations

import json

import pytest
import torch

from vdm.core.provenance import atomic_output, provenance, save_torch_atomic, write_json_atomic


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
