"""The command line: help for every command, one-line errors, a real train -> sample -> nll."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from vdm.core.config import validate_workflow_config
from vdm.core.job_specs import (
    EvaluateSpec,
    evaluate_spec,
    fid_spec,
    nll_spec,
    sample_spec,
    sweep_spec,
)
from vdm.pipeline.cli import COMMANDS, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vdm", *args], capture_output=True, text=True,
                          timeout=600)


def run_cli_at_once(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """``run_cli`` of each of ``commands``, the processes running at the same time."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(lambda args: run_cli(*args), commands))


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
    assert main(["nll", "--model", str(tmp_path / "nope.pt"), "--set", "denoiser_floor=false",
                 "--out", str(tmp_path / "n.json")]) == 2
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
    nll_options = ["--set", "nll.num_time_samples=2", "--set", "nll.max_examples=50",
                   "--set", "denoiser_floor=false"]
    # sample, nll and nll again (its numbers must repeat): three processes at once, each reading
    # only the trained model (one process's startup is one core's work)
    result, nll_result, again = run_cli_at_once(
        ["sample", "--model", str(run / "model.pt"), "--set", "sampling.num_samples=12",
         "--set", "sampling.steps=5", "--set", "sampling.method=ddim",
         "--out", str(run / "s.npz"), "--grid", str(run / "s.png")],
        ["nll", "--model", str(run / "model.pt"), *nll_options, "--out", str(run / "nll.json")],
        ["nll", "--model", str(run / "model.pt"), *nll_options, "--out", str(run / "nll2.json")])
    assert result.returncode == 0, result.stderr
    with np.load(run / "s.npz") as npz:
        assert npz["images"].shape == (12, 1, 8, 8) and npz["images"].dtype == np.uint8
    assert nll_result.returncode == 0, nll_result.stderr
    nll = json.loads((run / "nll.json").read_text())
    assert nll["num_examples"] == 50 and nll["nll_bpd"] > 0
    assert nll["nll_bpd"] == pytest.approx(nll["nll_reconstruction_bpd"] + nll["nll_prior_bpd"]
                                           + nll["nll_diffusion_bpd"], rel=1e-6)
    assert json.loads((run / "nll2.json").read_text())["nll_bpd"] == nll["nll_bpd"], again.stderr


def test_evaluate_equals_sample_nll_fid(tmp_path) -> None:
    """The one-process `evaluate` writes the same numbers as `sample`, `nll`, `fid`, `sweep` and
    `collect` run one after the other, each given the spec its workflow rule would get from the
    same config (the split and fused jobs share one definition of their settings)."""
    run = tmp_path / "run"
    assert main(["train", "--schedule", "learned", "--set", "model.channels=8",
                 "--set", "train.steps=6", "--set", "train.batch_size=16",
                 "--set", "train.threads=1", "--out", str(run)]) == 0
    assert main(["classifier", "--set", "steps=30", "--set", "min_accuracy=0", "--threads", "1",
                 "--out", str(tmp_path / "classifier.pt")]) == 0
    config = validate_workflow_config({
        "sample": {"num_samples": 40, "batch_size": 40, "steps": [4, 3],
                   "methods": ["ancestral", "heun", "ddim"]},
        "nll": {"num_time_samples": 2, "max_examples": 40}, "fid": {"kid_subset_size": 16}})
    seed, model = 4, str(run / "model.pt")
    files = ["--dataset-classifier", str(tmp_path / "classifier.pt"),
             "--cache-root", str(tmp_path / "cache")]
    separate, fused = tmp_path / "separate", tmp_path / "fused"
    assert main(["sample", "--spec", sample_spec(config, seed).to_json(), "--model", model,
                 "--out", str(separate / "s.npz")]) == 0
    assert main(["nll", "--spec", nll_spec(config, seed).to_json(), "--model", model,
                 "--out", str(separate / "nll.json"),
                 "--denoiser-floor-out", str(separate / "floor.json")]) == 0
    spec_file = tmp_path / "fid_spec.json"  # a spec file works as well as inline JSON
    spec_file.write_text(fid_spec(config).to_json())
    assert main(["fid", "--spec", str(spec_file), "--samples", str(separate / "s.npz"),
                 "--out", str(separate / "fid.json"), *files]) == 0
    sweep = sweep_spec(config, seed)
    assert sweep.settings == ("ancestral-3", "heun-4", "heun-3", "ddim-4", "ddim-3")
    assert main(["sweep", "--spec", sweep.to_json(), "--model", model,
                 "--out-dir", str(separate / "sweep"), *files]) == 0
    sweep_jsons = [str(separate / "sweep" / name / "fid.json") for name in sweep.settings]
    assert main(["collect", "--train", str(run / "train.json"), "--nll", str(separate / "nll.json"),
                 "--fid", str(separate / "fid.json"), "--sweep", *sweep_jsons,
                 "--denoiser-floor", str(separate / "floor.json"),
                 "--out", str(separate / "metrics.json")]) == 0
    assert main(["evaluate", "--spec", evaluate_spec(config, seed).to_json(), "--model", model,
                 "--samples-out", str(fused / "s.npz"), "--nll-out", str(fused / "nll.json"),
                 "--fid-out", str(fused / "fid.json"), *files,
                 "--denoiser-floor-out", str(fused / "floor.json"),
                 "--sweep-out-dir", str(fused / "sweep"), "--train-json", str(run / "train.json"),
                 "--metrics-out", str(fused / "metrics.json")]) == 0
    with np.load(separate / "s.npz") as a, np.load(fused / "s.npz") as b:
        assert np.array_equal(a["images"], b["images"])
    for name, keys in (("nll.json", ("nll_bpd", "nll_bpd_se", "nll_diffusion_bpd")),
                       ("fid.json", ("fid", "kid", "precision", "recall")),
                       ("floor.json", ("weighted",))):
        a, b = (json.loads((d / name).read_text()) for d in (separate, fused))
        assert [a[k] for k in keys] == [b[k] for k in keys], name
    assert json.loads((fused / "fid.json").read_text())["sampling"]["steps"] == 4
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (separate, fused))
    strip = ("fid_file", )
    assert [{k: v for k, v in e.items() if k not in strip} for e in a["evaluations"]] == \
        [{k: v for k, v in e.items() if k not in strip} for e in b["evaluations"]]
    assert [e["sampler"] for e in b["evaluations"]] == ["ancestral", "ancestral", "heun", "heun",
                                                         "ddim", "ddim"]
    assert b["nll_bpd"] == a["nll_bpd"] and b["fid"] == a["fid"]
    assert b["denoiser_gap_test"] == a["denoiser_gap_test"]


def test_job_help_describes_its_spec(capsys) -> None:
    """`evaluate --help` describes one spec argument (every key: type, meaning, default) and the
    job's files, instead of one option per setting."""
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    options = set(re.findall(r"(--[a-z-]+)", text.split("spec (EvaluateSpec)")[0]))
    assert options == {"--help", "--spec", "--set", "--threads", "--model", "--train-json",
                       "--dataset-classifier", "--noisy-classifier", "--cache-root",
                       "--samples-out", "--bayes-samples-out", "--grid", "--nll-out", "--fid-out",
                       "--denoiser-floor-out", "--sweep-out-dir", "--metrics-out",
                       "--train-step", "--snapshots-out-dir"}
    spec_part = " ".join(text.split("spec (EvaluateSpec)")[1].split())
    for key, _, _ in EvaluateSpec.describe():
        assert f" {key} " in spec_part, key
    defaults = validate_workflow_config({})
    assert (f"fid.kid_subset_size int KID subset size [images] (default: "
            f"{defaults['fid']['kid_subset_size']})") in spec_part
    assert "nll.num_time_samples int noise-level draws per image" in spec_part
    assert "one of classifier, inception-v3-compat" in spec_part


BAD_SPECS = [  # (arguments after `fid`, the one-line error)
    (["--spec", '{"dataset": "digits"}'], "missing spec key 'data_root'"),
    (["--set", "fid.kid_subset=3"], "unknown spec key 'fid.kid_subset'; the keys of fid are "
                                     "features, kid_subset_size, prc"),
    (["--set", "fid.kid_subset_size=many"],
     "spec key 'fid.kid_subset_size': expected int, got 'many'"),
    (["--set", "fid.kid_subset_size=1"],
     "spec key 'fid.kid_subset_size': 1 is less than the minimum of 2"),
    (["--set", "fid.features.reference_split=val"],
     "spec key 'fid.features.reference_split': 'val' is not one of train, test"),
    (["--set", "fid.prc=1"], "spec key 'fid.prc': expected bool, got 1"),
    (["--set", "fid.features.feature_extractor.x=1"],
     "spec override 'fid.features.feature_extractor.x=1': 'fid.features.feature_extractor' is "
     "not a mapping of this spec"),
    (["--spec", "{not json"], "--spec is not valid JSON"),
    (["--spec", "missing.json"], "spec file not found: missing.json"),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_SPECS)
def test_bad_spec_is_one_line_naming_the_key(tmp_path, capsys, arguments, message) -> None:
    out = tmp_path / "fid.json"
    code = main(["fid", *arguments, "--samples", str(tmp_path / "s.npz"),
                 "--cache-root", str(tmp_path / "cache"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("vdm fid: error: ") and message in err, err
    assert not out.exists() and not (tmp_path / "cache").exists()  # before any work


def test_spec_switch_and_its_output_go_together(tmp_path, capsys) -> None:
    """A spec switch that writes a file needs the file's option (and fails before loading)."""
    assert main(["nll", "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "n.json")]) == 2
    assert capsys.readouterr().err == ("vdm nll: error: spec key 'denoiser_floor' is true: give "
                                       "--denoiser-floor-out FILE (or --set denoiser_floor=false)\n")
    assert main(["nll", "--model", str(tmp_path / "m.pt"), "--set", "denoiser_floor=false",
                 "--denoiser-floor-out", str(tmp_path / "f.json"),
                 "--out", str(tmp_path / "n.json")]) == 2
    assert "--denoiser-floor-out given but spec key 'denoiser_floor' is false" in (
        capsys.readouterr().err)
