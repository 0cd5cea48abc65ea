rule fid_classifier:
    input:
        DATA_JSON,
    output:
        weights=f"{FID_DIR}/classifier.pt",
        info=f"{FID_DIR}/classifier.json",
    params:
        c=config["fid"]["classifier"],
        dataset=DATASET,
        root=config["data_root"],
        device=config["device"],
    threads: 1
    conda:
        ENV
    resources:
        **rule_resources("fid", runtime=30, mem_mb=4000),
    log:
        f"{LOGS}/fid_classifier.log",
    shell:
        "python -m vdm classifier --dataset {params.dataset} --root {params.root:q} "
        "--steps {params.c[steps]} --batch-size {params.c[batch_size]} --lr {params.c[lr]} "
        "--seed {params.c[seed]} --min-accuracy {params.c[min_accuracy]} "
        "--device {params.device} --threads {threads} --out {output.weights} > {log} 2>&1"


rule fid_reference:
    input:
        DATA_JSON,
        classifier_weights(),
    output:
        f"{FID_DIR}/{EXTRACTOR}/reference.json",
    params:
        weights=extractor_weights_arg(),
        cache=f"{FID_DIR}/{EXTRACTOR}/cache",
        f=config["fid"],
        dataset=DATASET,
        root=config["data_root"],
        device=config["device"],
        extractor=EXTRACTOR,
    threads: 1
    conda:
        ENV
    resources:
        **rule_resources("fid", runtime=60, mem_mb=8000),
    log:
        f"{LOGS}/fid_reference.log",
    shell:
        "python -m vdm fid-reference --dataset {params.dataset} --root {params.root:q} "
        "--split {params.f[reference_split]} --extractor {params.extractor} {params.weights} "
        "--cache-root {params.cache} --batch-size {params.f[batch_size]} "
        "--device {params.device} --threads {threads} --out {output} > {log} 2>&1"


rule fid_floor:
    input:
        f"{FID_DIR}/{EXTRACTOR}/reference.json",
        classifier_weights(),
    output:
        FID_FLOOR,
    params:
        weights=extractor_weights_arg(),
        cache=f"{FID_DIR}/{EXTRACTOR}/cache",
        f=config["fid"],
        prc="" if config["fid"]["prc"] else "--no-prc",
        dataset=DATASET,
        root=config["data_root"],
        device=config["device"],
        extractor=EXTRACTOR,
    threads: 1
    conda:
        ENV
    resources:
        **rule_resources("fid", runtime=60, mem_mb=8000),
    log:
        f"{LOGS}/fid_floor.log",
    shell:
        "python -m vdm fid-floor --dataset {params.dataset} --root {params.root:q} "
        "--split {params.f[reference_split]} --extractor {params.extractor} {params.weights} "
        "--cache-root {params.cache} --kid-subset-size {params.f[kid_subset_size]} {params.prc} "
        "--batch-size {params.f[batch_size]} --device {params.device} --threads {threads} "
        "--out {output} > {log} 2>&1"


rule noisy_classifier:
    input:
        DATA_JSON,
    output:
        weights=NOISY_CLASSIFIER,
        info=NOISY_CLASSIFIER.removesuffix(".pt") + ".json",
    params:
        c=config["guidance"]["classifier"],
        dataset=DATASET,
        root=config["data_root"],
        device=config["device"],
        logsnr_min=config["logsnr_min"],
        logsnr_max=config["logsnr_max"],
    threads: 1
    conda:
        ENV
    resources:
        **rule_resources("fid", runtime=30, mem_mb=4000),
    log:
        f"{LOGS}/noisy_classifier.log",
    shell:
        "python -m vdm noisy-classifier --dataset {params.dataset} --root {params.root:q} "
        "--logsnr-min {params.logsnr_min} --logsnr-max {params.logsnr_max} "
        "--steps {params.c[steps]} --batch-size {params.c[batch_size]} --lr {params.c[lr]} "
        "--channels {params.c[channels]} --seed {params.c[seed]} --device {params.device} "
        "--threads {threads} --out {output.weights} > {log} 2>&1"
