rule fid_classifier:
    input:
        DATA_JSON,
    output:
        weights=f"{FID_DIR}/classifier.pt",
        info=f"{FID_DIR}/classifier.json",
    params:
        spec=spec("classifier"),
    threads: 1
    conda:
        ENV
    resources:
        **rule_resources("fid", runtime=30, mem_mb=4000),
    log:
        f"{LOGS}/fid_classifier.log",
    benchmark:
        benchmark_file("fid_classifier")
    shell:
        "python -m vdm classifier --spec {params.spec:q} --threads {threads} "
        "--out {output.weights} > {log} 2>&1"


rule fid_reference:
    input:
        data=DATA_JSON,
        weights=classifier_weights(),
    output:
        FID_REFERENCE,
    params:
        spec=spec("fid-reference"),
        cache=f"{FID_DIR}/{EXTRACTOR}/cache",
        files=lambda wildcards, input: path_options(dataset_classifier=input.weights),
    threads: 1
    conda:
        ENV
    resources:
        **rule_resources("fid", runtime=60, mem_mb=8000),
    log:
        f"{LOGS}/fid_reference{REFERENCE_TAG}.log",
    benchmark:
        benchmark_file("fid_reference")
    shell:
        "python -m vdm fid-reference --spec {params.spec:q} --threads {threads} "
        "--cache-root {params.cache} {params.files} --out {output} > {log} 2>&1"


rule fid_floor:
    input:
        reference=FID_REFERENCE,
        weights=classifier_weights(),
    output:
        FID_FLOOR,
    params:
        spec=spec("fid-floor"),
        cache=f"{FID_DIR}/{EXTRACTOR}/cache",
        files=lambda wildcards, input: path_options(dataset_classifier=input.weights),
    threads: 1
    conda:
        ENV
    resources:
        **rule_resources("fid", runtime=60, mem_mb=8000),
    log:
        f"{LOGS}/{os.path.basename(FID_FLOOR).replace('floor', 'fid_floor', 1).removesuffix('.json')}.log",
    benchmark:
        benchmark_file("fid_floor")
    shell:
        "python -m vdm fid-floor --spec {params.spec:q} --threads {threads} "
        "--cache-root {params.cache} {params.files} --out {output} > {log} 2>&1"


rule noisy_classifier:
    input:
        DATA_JSON,
    output:
        weights=NOISY_CLASSIFIER,
        info=NOISY_CLASSIFIER.removesuffix(".pt") + ".json",
    params:
        spec=spec("noisy-classifier"),
    threads: 1
    conda:
        ENV
    resources:
        **rule_resources("fid", runtime=30, mem_mb=4000),
    log:
        f"{LOGS}/noisy_classifier.log",
    benchmark:
        benchmark_file("noisy_classifier")
    shell:
        "python -m vdm noisy-classifier --spec {params.spec:q} --threads {threads} "
        "--out {output.weights} > {log} 2>&1"
