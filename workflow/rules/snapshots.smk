# Per run and training budget (train.snapshots, each step k below train.steps): the state the
# train job saved after step k, snapshots/step<k>.pt, evaluated by the `evaluate` command as
# model.pt is (primary sampler setting, ELBO NLL, FID; no sweep, guidance, ODE bound or
# denoiser floor: vdm.core.job_specs.EvaluateSpec.snapshot_spec) into snapshots/step<k>/, whose
# metrics.json records train_step = k. With evaluation.fused (the default) the run's evaluate
# job does this in its own process after the final evaluation (evaluate.smk: no start-up per
# snapshot); with split evaluation each snapshot is the evaluate_snapshot job below.
# The snapshot files are not declared outputs of train (Snakemake would delete them before
# rerunning an interrupted training job, whose resume needs them): the job depends on the run's
# train.json, written after every snapshot, and is handed the snapshot's path.
if SNAPSHOT_JOBS:

    rule evaluate_snapshot:
        input:
            train=f"{RUN_DIR}/train.json",
            reference=FID_REFERENCE,
            weights=classifier_weights(),
        output:
            samples=f"{SNAPSHOT_DIR}/samples.npz",
            nll=f"{SNAPSHOT_DIR}/nll.json",
            fid=f"{SNAPSHOT_DIR}/fid.json",
            metrics=f"{SNAPSHOT_DIR}/metrics.json",
            **bayes_samples_output(SNAPSHOT_DIR),
        wildcard_constraints:
            step="|".join(str(step) for step in SNAPSHOT_STEPS),
        params:
            spec=snapshot_spec,
            model=snapshot_model,
            cache=f"{FID_DIR}/{EXTRACTOR}/cache",
            files=lambda wildcards, input, output: path_options(
                dataset_classifier=input.weights, bayes_samples_out=output.get("bayes_samples")),
        threads: 1
        conda:
            ENV
        resources:
            **rule_resources("evaluate", runtime=90, mem_mb=8000),
        log:
            f"{LOGS}/evaluate_snapshot/{SNAPSHOT_NAME}.log",
        benchmark:
            benchmark_file("evaluate_snapshot")
        shell:
            "python -m vdm evaluate --spec {params.spec:q} --threads {threads} "
            "--model {params.model:q} --train-step {wildcards.step} --train-json {input.train} "
            "--cache-root {params.cache} {params.files} --samples-out {output.samples} "
            "--nll-out {output.nll} --fid-out {output.fid} --metrics-out {output.metrics} "
            "> {log} 2>&1"
