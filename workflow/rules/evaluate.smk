# Per model: samples.npz + samples.png, nll.json, fid.json, sweep/<setting>/ for the further
# sampler and guidance settings, metrics.json. Either one `evaluate` job (default: one process
# start, model and data loaded once, also the sweep and the metrics) or separate sample, nll,
# fid and sweep jobs and a local collect (evaluation.fused: false; right for big models). Same
# files, same numbers.
if config["evaluation"]["fused"]:

    rule evaluate:
        input:
            model=f"{RUN_DIR}/model.pt",
            train=f"{RUN_DIR}/train.json",
            reference=FID_REFERENCE,
            weights=classifier_weights(),
            noisy_classifier=noisy_classifier_input(),
        output:
            samples=f"{RUN_DIR}/samples.npz",
            grid=report(f"{RUN_DIR}/samples.png", category="Samples",
                        subcategory="{parameterization} / {objective} / {schedule}",
                        labels={"parameterization": "{parameterization}",
                                "objective": "{objective}", "schedule": "{schedule}",
                                "seed": "{seed}"},
                        caption="../report/samples.rst"),
            nll=f"{RUN_DIR}/nll.json",
            fid=f"{RUN_DIR}/fid.json",
            sweep_samples=expand(f"{RUN_DIR}/sweep/{{setting}}/samples.npz",
                                 setting=SWEEP_SETTINGS, allow_missing=True),
            sweep_fids=expand(f"{RUN_DIR}/sweep/{{setting}}/fid.json", setting=SWEEP_SETTINGS,
                              allow_missing=True),
            metrics=f"{RUN_DIR}/metrics.json",
            **denoiser_floor_output(),
            **bayes_samples_output(RUN_DIR),
            **bayes_sweep_output(),
            **snapshot_outputs(),
        params:
            spec=spec("evaluate"),
            cache=f"{FID_DIR}/{EXTRACTOR}/cache",
            files=lambda wildcards, input, output: path_options(
                dataset_classifier=input.weights, noisy_classifier=input.noisy_classifier,
                denoiser_floor_out=output.get("denoiser_floor"),
                bayes_samples_out=output.get("bayes_samples"),
                sweep_out_dir=(f"{os.path.dirname(output.metrics)}/sweep" if SWEEP_SETTINGS
                               else None),
                snapshots_out_dir=(f"{os.path.dirname(output.metrics)}/snapshots"
                                   if SNAPSHOT_STEPS else None)),
        threads: 1
        conda:
            ENV
        resources:
            **rule_resources("evaluate", runtime=90, mem_mb=8000),
        log:
            f"{LOGS}/evaluate/{RUN_NAME}.log",
        benchmark:
            benchmark_file("evaluate")
        shell:
            "python -m vdm evaluate --spec {params.spec:q} --threads {threads} "
            "--model {input.model} --train-json {input.train} --cache-root {params.cache} "
            "{params.files} --samples-out {output.samples} --grid {output.grid} "
            "--nll-out {output.nll} --fid-out {output.fid} --metrics-out {output.metrics} "
            "> {log} 2>&1"

else:

    rule sample:
        input:
            model=f"{RUN_DIR}/model.pt",
        output:
            samples=f"{RUN_DIR}/samples.npz",
            grid=report(f"{RUN_DIR}/samples.png", category="Samples",
                        subcategory="{parameterization} / {objective} / {schedule}",
                        labels={"parameterization": "{parameterization}",
                                "objective": "{objective}", "schedule": "{schedule}",
                                "seed": "{seed}"},
                        caption="../report/samples.rst"),
            **bayes_samples_output(RUN_DIR),
        params:
            spec=spec("sample"),
            files=lambda wildcards, output: path_options(bayes_out=output.get("bayes_samples")),
        threads: 1
        conda:
            ENV
        resources:
            **rule_resources("sample", runtime=30, mem_mb=4000),
        log:
            f"{LOGS}/sample/{RUN_NAME}.log",
        benchmark:
            benchmark_file("sample")
        shell:
            "python -m vdm sample --spec {params.spec:q} --threads {threads} "
            "--model {input.model} --out {output.samples} --grid {output.grid} {params.files} "
            "> {log} 2>&1"


    rule nll:
        input:
            model=f"{RUN_DIR}/model.pt",
        output:
            nll=f"{RUN_DIR}/nll.json",
            **denoiser_floor_output(),
        params:
            spec=spec("nll"),
            files=lambda wildcards, output: path_options(
                denoiser_floor_out=output.get("denoiser_floor")),
        threads: 1
        conda:
            ENV
        resources:
            **rule_resources("nll", runtime=30, mem_mb=4000),
        log:
            f"{LOGS}/nll/{RUN_NAME}.log",
        benchmark:
            benchmark_file("nll")
        shell:
            "python -m vdm nll --spec {params.spec:q} --threads {threads} --model {input.model} "
            "--out {output.nll} {params.files} > {log} 2>&1"


    rule fid:
        input:
            samples=f"{RUN_DIR}/samples.npz",
            reference=FID_REFERENCE,
            weights=classifier_weights(),
            **bayes_samples_output(RUN_DIR),
        output:
            f"{RUN_DIR}/fid.json",
        params:
            spec=spec("fid"),
            cache=f"{FID_DIR}/{EXTRACTOR}/cache",
            files=lambda wildcards, input: path_options(dataset_classifier=input.weights,
                                                        bayes_samples=input.get("bayes_samples")),
        threads: 1
        conda:
            ENV
        resources:
            **rule_resources("fid", runtime=60, mem_mb=8000),
        log:
            f"{LOGS}/fid/{RUN_NAME}.log",
        benchmark:
            benchmark_file("fid")
        shell:
            "python -m vdm fid --spec {params.spec:q} --threads {threads} "
            "--samples {input.samples} --cache-root {params.cache} {params.files} "
            "--out {output} > {log} 2>&1"


if not config["evaluation"]["fused"] and SWEEP_SETTINGS:

    rule sweep:
        input:
            model=f"{RUN_DIR}/model.pt",
            reference=FID_REFERENCE,
            weights=classifier_weights(),
            noisy_classifier=noisy_classifier_input(),
        output:
            samples=expand(f"{RUN_DIR}/sweep/{{setting}}/samples.npz", setting=SWEEP_SETTINGS,
                           allow_missing=True),
            fids=expand(f"{RUN_DIR}/sweep/{{setting}}/fid.json", setting=SWEEP_SETTINGS,
                        allow_missing=True),
            **bayes_sweep_output(),
        params:
            spec=spec("sweep"),
            cache=f"{FID_DIR}/{EXTRACTOR}/cache",
            files=lambda wildcards, input: path_options(
                dataset_classifier=input.weights, noisy_classifier=input.noisy_classifier),
            out_dir=lambda wildcards, output: os.path.dirname(os.path.dirname(output.fids[0])),
        threads: 1
        conda:
            ENV
        resources:
            **rule_resources("evaluate", runtime=90, mem_mb=8000),
        log:
            f"{LOGS}/sweep/{RUN_NAME}.log",
        benchmark:
            benchmark_file("sweep")
        shell:
            "python -m vdm sweep --spec {params.spec:q} --threads {threads} "
            "--model {input.model} --cache-root {params.cache} {params.files} "
            "--out-dir {params.out_dir} > {log} 2>&1"


if not config["evaluation"]["fused"]:

    rule collect:
        input:
            train=f"{RUN_DIR}/train.json",
            nll=f"{RUN_DIR}/nll.json",
            fid=f"{RUN_DIR}/fid.json",
            sweep=sweep_fids,
            **denoiser_floor_output(),
        output:
            f"{RUN_DIR}/metrics.json",
        localrule: True
        log:
            f"{LOGS}/collect/{RUN_NAME}.log",
        run:
            # in-process (no interpreter start-up): same as `python -m vdm collect`
            from vdm.pipeline.results_commands import collect_metrics

            collect_metrics(input.train, input.nll, input.fid, output[0], input.sweep,
                            input.get("denoiser_floor"))
