rule prepare_data:
    output:
        DATA_JSON,
    params:
        download="--download" if config["download"] else "",
    log:
        f"{LOGS}/prepare_data.log",
    shell:
        "python -m vdm prepare-data --dataset {DATASET} --root {config[data_root]:q} "
        "{params.download} --out {output} > {log} 2>&1"
