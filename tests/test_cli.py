"""The command line: help for every command, one-line errors, a real train -> sample -> nll."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vdm.pipeline.cli import COMMANDS, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vdm", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m vdm " + command in capsys.readouterr().out


def test_bad_override_is_one_line_naming_the_key(tmp_path, capsys) -> None:
    code = main(["train", "--set", "train.stepz=3", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "'train.stepz'" in err
    assert not (tmp_path / "run").exists()  # nothing started


def test_unknown_objective_and_missing_model(tmp_path, capsys) -> None:
    assert main(["train", "--objective", "score", "--out", str(tmp_path / "r")]) == 2
    assert "'objective'" in capsys.readouterr().err
    assert main(["nll", "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "n.json")]) == 2
    assert "nope.pt" in capsys.readouterr().err


def test_train_takes_a_workflow_config_and_picks_the_cell(tmp_path, capsys) -> None:
    """`train --config config/config.yaml` trains the cell a grid job would (same run config)."""
    from vdm.core.config import load_config_file, validate_workflow_config, workflow_cell

    assert main(["train", "--config", "config/config.yaml", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("vdm train: error: config/config.yaml is a workflow config with objectives "
                   "['x0', 'eps', 'elbo']: pick one with --objective")
    args = ["train", "--config", "config/config.yaml", "--objective", "elbo", "--schedule",
            "learned", "--seed", "2", "--set", "train.steps=2", "--out", str(tmp_path / "r")]
    assert main(args) == 0
    trained = json.loads((tmp_path / "r" / "train.json").read_text())["config"]
    grid = validate_workflow_config(load_config_file("config/config.yaml"))
    from vdm.core.config import run_config_from_dict

    expected = workflow_cell(grid, "elbo", "learned", 2)
    expected["train"] = {**expected["train"], "steps": 2}
    assert trained == run_config_from_dict(expected).to_dict()
    assert main(["train", "--config", "config/config.yaml", "--objective", "eps", "--schedule",
                 "cosine", "--seed", "0", "--set", "train.stepz=1", "--out", str(tmp_path / "s")]) == 2
    assert "'train.stepz'" in capsys.readouterr().err


def test_train_help_lists_the_names_and_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one of eps, x0, v, elbo, sigmoid, min_snr, edm, flow (default: eps)" in text
    assert "one of linear, cosine, sigmoid, flow, learned (default: cosine)" in text
    assert "what the network outputs: one of eps, x0, v, score (default: eps)" in text


def test_train_sample_nll_through_the_cli(tmp_path) -> None:
    run = tmp_path / "run"
    result = run_cli("train", "--objective", "v", "--schedule", "sigmoid", "--seed", "3",
                     "--set", "model.channels=8", "--set", "train.steps=10",
                     "--set", "train.batch_size=16", "--set", "train.threads=1",
                     "--out", str(run))
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "train.json").read_text())
    assert summary["seed"] == 3 and summary["objective"] == "v" and summary["steps"] == 10
    assert summary["provenance"]["packages"]["torch"]
    result = run_cli("sample", "--model", str(run / "model.pt"), "--num-samples", "12",
                     "--steps", "5", "--out", str(run / "s.npz"), "--grid", str(run / "s.png"),
                     "--method", "ddim")
    assert result.returncode == 0, result.stderr
    with np.load(run / "s.npz") as npz:
        assert npz["images"].shape == (12, 1, 8, 8) and npz["images"].dtype == np.uint8
    result = run_cli("nll", "--model", str(run / "model.pt"), "--num-time-samples", "2",
                     "--max-examples", "50", "--out", str(run / "nll.json"))
    assert result.returncode == 0, result.stderr
    nll = json.loads((run / "nll.json").read_text())
    assert nll["num_examples"] == 50 and nll["nll_bpd"] > 0
    assert nll["nll_bpd"] == pytest.approx(nll["nll_reconstruction_bpd"] + nll["nll_prior_bpd"]
                                           + nll["nll_diffusion_bpd"], rel=1e-6)
    again = run_cli("nll", "--model", str(run / "model.pt"), "--num-time-samples", "2",
                    "--max-examples", "50", "--out", str(run / "nll2.json"))
    assert json.loads((run / "nll2.json").read_text())["nll_bpd"] == nll["nll_bpd"], again.stderr


def test_evaluate_equals_sample_nll_fid(tmp_path) -> None:
    """The one-process `evaluate` writes the same numbers as `sample`, `nll`, `fid`, `sweep` and
    `collect` run one after the other."""

    run = tmp_path / "run"
    assert main(["train", "--schedule", "learned", "--set", "model.channels=8",
                 "--set", "train.steps=6", "--set", "train.batch_size=16",
                 "--set", "train.threads=1", "--out", str(run)]) == 0
    assert main(["classifier", "--dataset", "digits", "--steps", "30", "--min-accuracy", "0",
                 "--threads", "1", "--out", str(tmp_path / "classifier.pt")]) == 0
    model, seed, cache = str(run / "model.pt"), "4", str(tmp_path / "cache")
    fid_options = ["--weights", str(tmp_path / "classifier.pt"), "--cache-root", cache,
                   "--kid-subset-size", "16"]
    separate, fused = tmp_path / "separate", tmp_path / "fused"
    assert main(["sample", "--model", model, "--seed", seed, "--num-samples", "40",
                 "--steps", "4", "--batch-size", "40", "--out", str(separate / "s.npz")]) == 0
    assert main(["nll", "--model", model, "--seed", seed, "--num-time-samples", "2",
                 "--max-examples", "40", "--out", str(separate / "nll.json")]) == 0
    assert main(["fid", "--dataset", "digits", "--samples", str(separate / "s.npz"),
                 "--out", str(separate / "fid.json"), *fid_options]) == 0
    assert main(["sweep", "--model", model, "--seed", seed, "--num-samples", "40",
                 "--sample-batch-size", "40", "--settings", "heun-3", "ddim-4",
                 "--out-dir", str(separate / "sweep"), *fid_options]) == 0
    sweep_jsons = [str(separate / "sweep" / name / "fid.json") for name in ("heun-3", "ddim-4")]
    assert main(["collect", "--train", str(run / "train.json"), "--nll", str(separate / "nll.json"),
                 "--fid", str(separate / "fid.json"), "--sweep", *sweep_jsons,
                 "--out", str(separate / "metrics.json")]) == 0
    assert main(["evaluate", "--model", model, "--seed", seed, "--num-samples", "40",
                 "--sample-steps", "4", "--num-time-samples", "2", "--max-examples", "40",
                 "--samples-out", str(fused / "s.npz"), "--nll-out", str(fused / "nll.json"),
                 "--fid-out", str(fused / "fid.json"), *fid_options,
                 "--sweep-settings", "heun-3", "ddim-4", "--sweep-out-dir", str(fused / "sweep"),
                 "--train-json", str(run / "train.json"),
                 "--metrics-out", str(fused / "metrics.json")]) == 0
    with np.load(separate / "s.npz") as a, np.load(fused / "s.npz") as b:
        assert np.array_equal(a["images"], b["images"])
    for name, keys in (("nll.json", ("nll_bpd", "nll_bpd_se", "nll_diffusion_bpd")),
                       ("fid.json", ("fid", "kid", "precision", "recall"))):
        a, b = (json.loads((d / name).read_text()) for d in (separate, fused))
        assert [a[k] for k in keys] == [b[k] for k in keys], name
    assert json.loads((fused / "fid.json").read_text())["sampling"]["steps"] == 4
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (separate, fused))
    strip = ("fid_file", )
    assert [{k: v for k, v in e.items() if k not in strip} for e in a["evaluations"]] == \
        [{k: v for k, v in e.items() if k not in strip} for e in b["evaluations"]]
    assert [e["sampler"] for e in b["evaluations"]] == ["ancestral", "heun", "ddim"]
    assert b["nll_bpd"] == a["nll_bpd"] and b["fid"] == a["fid"]
