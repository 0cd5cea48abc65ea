rule train:
    input:
        DATA_JSON,
    output:
        model=f"{RUN_DIR}/model.pt",
        info=f"{RUN_DIR}/train.json",
        log_csv=report(f"{RUN_DIR}/train_log.csv", category="Training logs",
                       subcategory="{parameterization} / {objective} / {schedule}",
                       labels={"parameterization": "{parameterization}",
                               "objective": "{objective}", "schedule": "{schedule}",
                               "seed": "{seed}"},
                       caption="../report/train_log.rst"),
    params:
        run_config=run_config,
        out_dir=lambda wildcards, output: os.path.dirname(output.model),
    threads: config["train"]["threads"]
    conda:
        ENV
    resources:
        # a cluster job gets train.threads CPUs whatever --cores says (Snakemake caps the rule's
        # threads at --cores, which is 1 for a remote executor unless given)
        **rule_resources("train", runtime=60, mem_mb=4000,
                         cpus_per_task=config["train"]["threads"]),
    log:
        f"{LOGS}/train/{RUN_NAME}.log",
    benchmark:
        benchmark_file("train")
    shell:
        "python -m vdm train --config-json {params.run_config:q} --out {params.out_dir} "
        "> {log} 2>&1"
