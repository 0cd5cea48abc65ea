rule prepare_data:
    output:
        DATA_JSON,
    params:
        dataset=DATASET,
        root=config["data_root"],
        download="--download" if config["download"] else "",
    conda:
        ENV
    log:
        f"{LOGS}/prepare_data.log",
    shell:
        "python -m vdm prepare-data --dataset {params.dataset} --root {params.root:q} "
        "{params.download} --out {output} > {log} 2>&1"
