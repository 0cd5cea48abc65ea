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
            reference=f"{FID_DIR}/{EXTRACTOR}/reference.json",
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
        params:
            floor=lambda wildcards, output: (f"--denoiser-floor-out {output.denoiser_floor}"
                                             if DENOISER_FLOOR else ""),
            sweep=lambda wildcards, output: (
                f"--sweep-settings {' '.join(SWEEP_SETTINGS)} --sweep-out-dir "
                f"{os.path.dirname(output.metrics)}/sweep {noisy_classifier_arg()}"
                if SWEEP_SETTINGS else ""),
            num_samples=config["sample"]["num_samples"],
            batch_size=config["sample"]["batch_size"],
            method=PRIMARY_METHOD,
            steps=PRIMARY_STEPS,
            n=config["nll"],
            ode=ode_args(),
            f=config["fid"],
            max_examples=(f"--max-examples {config['nll']['max_examples']}"
                          if config["nll"].get("max_examples") else ""),
            prc="" if config["fid"]["prc"] else "--no-prc",
            weights=extractor_weights_arg(),
            cache=f"{FID_DIR}/{EXTRACTOR}/cache",
            extractor=EXTRACTOR,
            judge=dataset_classifier_arg(),
            device=config["device"],
        threads: 1
        conda:
            ENV
        resources:
            **rule_resources("evaluate", runtime=90, mem_mb=8000),
        log:
            f"{LOGS}/evaluate/{RUN_NAME}.log",
        shell:
            "python -m vdm evaluate --model {input.model} --seed {wildcards.seed} "
            "--device {params.device} --threads {threads} "
            "--num-samples {params.num_samples} --sample-steps {params.steps} "
            "--method {params.method} --sample-batch-size {params.batch_size} "
            "--samples-out {output.samples} --grid {output.grid} "
            "--split {params.n[split]} --num-time-samples {params.n[num_time_samples]} "
            "--nll-batch-size {params.n[batch_size]} {params.max_examples} {params.ode} "
            "--nll-out {output.nll} "
            "--reference-split {params.f[reference_split]} --extractor {params.extractor} "
            "{params.weights} --cache-root {params.cache} "
            "--kid-subset-size {params.f[kid_subset_size]} {params.prc} {params.judge} "
            "--fid-batch-size {params.f[batch_size]} --fid-out {output.fid} {params.floor} "
            "{params.sweep} --train-json {input.train} --metrics-out {output.metrics} "
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
        params:
            num_samples=config["sample"]["num_samples"],
            batch_size=config["sample"]["batch_size"],
            method=PRIMARY_METHOD,
            steps=PRIMARY_STEPS,
            device=config["device"],
        threads: 1
        conda:
            ENV
        resources:
            **rule_resources("sample", runtime=30, mem_mb=4000),
        log:
            f"{LOGS}/sample/{RUN_NAME}.log",
        shell:
            "python -m vdm sample --model {input.model} --num-samples {params.num_samples} "
            "--steps {params.steps} --method {params.method} --batch-size {params.batch_size} "
            "--seed {wildcards.seed} --device {params.device} --threads {threads} "
            "--out {output.samples} --grid {output.grid} > {log} 2>&1"


    rule nll:
        input:
            model=f"{RUN_DIR}/model.pt",
        output:
            nll=f"{RUN_DIR}/nll.json",
            **denoiser_floor_output(),
        params:
            floor=lambda wildcards, output: (f"--denoiser-floor-out {output.denoiser_floor}"
                                             if DENOISER_FLOOR else ""),
            n=config["nll"],
            ode=ode_args(),
            max_examples=(f"--max-examples {config['nll']['max_examples']}"
                          if config["nll"].get("max_examples") else ""),
            device=config["device"],
        threads: 1
        conda:
            ENV
        resources:
            **rule_resources("nll", runtime=30, mem_mb=4000),
        log:
            f"{LOGS}/nll/{RUN_NAME}.log",
        shell:
            "python -m vdm nll --model {input.model} --split {params.n[split]} "
            "--num-time-samples {params.n[num_time_samples]} --batch-size {params.n[batch_size]} "
            "{params.max_examples} {params.ode} --seed {wildcards.seed} --device {params.device} "
            "--threads {threads} --out {output.nll} {params.floor} > {log} 2>&1"


    rule fid:
        input:
            samples=f"{RUN_DIR}/samples.npz",
            reference=f"{FID_DIR}/{EXTRACTOR}/reference.json",
            weights=classifier_weights(),
        output:
            f"{RUN_DIR}/fid.json",
        params:
            weights=extractor_weights_arg(),
            cache=f"{FID_DIR}/{EXTRACTOR}/cache",
            f=config["fid"],
            prc="" if config["fid"]["prc"] else "--no-prc",
            dataset=DATASET,
            root=config["data_root"],
            device=config["device"],
            extractor=EXTRACTOR,
            judge=dataset_classifier_arg(),
        threads: 1
        conda:
            ENV
        resources:
            **rule_resources("fid", runtime=60, mem_mb=8000),
        log:
            f"{LOGS}/fid/{RUN_NAME}.log",
        shell:
            "python -m vdm fid --dataset {params.dataset} --root {params.root:q} "
            "--split {params.f[reference_split]} --extractor {params.extractor} {params.weights} "
            "--cache-root {params.cache} --samples {input.samples} "
            "--kid-subset-size {params.f[kid_subset_size]} {params.prc} "
            "--batch-size {params.f[batch_size]} --device {params.device} --threads {threads} "
            "{params.judge} --out {output} > {log} 2>&1"


if not config["evaluation"]["fused"] and SWEEP_SETTINGS:

    rule sweep:
        input:
            model=f"{RUN_DIR}/model.pt",
            reference=f"{FID_DIR}/{EXTRACTOR}/reference.json",
            weights=classifier_weights(),
            noisy_classifier=noisy_classifier_input(),
        output:
            samples=expand(f"{RUN_DIR}/sweep/{{setting}}/samples.npz", setting=SWEEP_SETTINGS,
                           allow_missing=True),
            fids=expand(f"{RUN_DIR}/sweep/{{setting}}/fid.json", setting=SWEEP_SETTINGS,
                        allow_missing=True),
        params:
            settings=" ".join(SWEEP_SETTINGS),
            s=config["sample"],
            f=config["fid"],
            prc="" if config["fid"]["prc"] else "--no-prc",
            weights=extractor_weights_arg(),
            cache=f"{FID_DIR}/{EXTRACTOR}/cache",
            extractor=EXTRACTOR,
            judge=dataset_classifier_arg(),
            noisy=noisy_classifier_arg(),
            device=config["device"],
            out_dir=lambda wildcards, output: os.path.dirname(os.path.dirname(output.fids[0])),
        threads: 1
        conda:
            ENV
        resources:
            **rule_resources("evaluate", runtime=90, mem_mb=8000),
        log:
            f"{LOGS}/sweep/{RUN_NAME}.log",
        shell:
            "python -m vdm sweep --model {input.model} --settings {params.settings} "
            "--seed {wildcards.seed} --device {params.device} --threads {threads} "
            "--num-samples {params.s[num_samples]} --sample-batch-size {params.s[batch_size]} "
            "--out-dir {params.out_dir} --reference-split {params.f[reference_split]} "
            "--extractor {params.extractor} {params.weights} --cache-root {params.cache} "
            "--kid-subset-size {params.f[kid_subset_size]} {params.prc} {params.judge} "
            "{params.noisy} --fid-batch-size {params.f[batch_size]} > {log} 2>&1"


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
