rule prepare_data:
    output:
        DATA_JSON,
    params:
        spec=spec("prepare-data"),
    conda:
        ENV
    log:
        f"{LOGS}/prepare_data.log",
    benchmark:
        benchmark_file("prepare_data")
    shell:
        "python -m vdm prepare-data --spec {params.spec:q} --out {output} > {log} 2>&1"
