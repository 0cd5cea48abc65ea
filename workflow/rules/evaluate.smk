rule sample:
    input:
        model=f"{RUN_DIR}/model.pt",
    output:
        samples=f"{RUN_DIR}/samples.npz",
        grid=report(f"{RUN_DIR}/samples.png", category="Samples",
                    subcategory="{objective} / {schedule}",
                    labels={"objective": "{objective}", "schedule": "{schedule}",
                            "seed": "{seed}"},
                    caption="../report/samples.rst"),
    params:
        s=config["sample"],
        device=config["device"],
    threads: 1
    conda:
        ENV
    resources:
        **rule_resources("sample", runtime=30, mem_mb=4000),
    log:
        f"{LOGS}/sample/{{objective}}-{{schedule}}-seed{{seed}}.log",
    shell:
        "python -m vdm sample --model {input.model} --num-samples {params.s[num_samples]} "
        "--steps {params.s[steps]} --method {params.s[method]} --batch-size {params.s[batch_size]} "
        "--seed {wildcards.seed} --device {params.device} --threads {threads} "
        "--out {output.samples} --grid {output.grid} > {log} 2>&1"


rule nll:
    input:
        model=f"{RUN_DIR}/model.pt",
    output:
        f"{RUN_DIR}/nll.json",
    params:
        n=config["nll"],
        max_examples=(f"--max-examples {config['nll']['max_examples']}"
                      if config["nll"].get("max_examples") else ""),
        device=config["device"],
    threads: 1
    conda:
        ENV
    resources:
        **rule_resources("nll", runtime=30, mem_mb=4000),
    log:
        f"{LOGS}/nll/{{objective}}-{{schedule}}-seed{{seed}}.log",
    shell:
        "python -m vdm nll --model {input.model} --split {params.n[split]} "
        "--num-time-samples {params.n[num_time_samples]} --batch-size {params.n[batch_size]} "
        "{params.max_examples} --seed {wildcards.seed} --device {params.device} "
        "--threads {threads} --out {output} > {log} 2>&1"


rule collect:
    input:
        train=f"{RUN_DIR}/train.json",
        nll=f"{RUN_DIR}/nll.json",
        fid=f"{RUN_DIR}/fid.json",
    output:
        f"{RUN_DIR}/metrics.json",
    localrule: True
    log:
        f"{LOGS}/collect/{{objective}}-{{schedule}}-seed{{seed}}.log",
    run:
        # in-process (no interpreter start-up): same as `python -m vdm collect`
        from vdm.commands import collect_metrics

        collect_metrics(input.train, input.nll, input.fid, output[0])
