rule aggregate:
    input:
        METRICS,
    output:
        csv=report(f"{GRID}/tables/summary.csv", category="Tables",
                   caption="../report/summary.rst"),
        md=f"{GRID}/tables/summary.md",
        tex=f"{GRID}/tables/summary.tex",
        significance=report(f"{GRID}/tables/significance.csv", category="Tables",
                            caption="../report/significance.rst"),
        sweep=[report(f"{GRID}/tables/sampler_sweep.csv", category="Tables",
                      caption="../report/sampler_sweep.rst")]
        if "sampler_sweep.csv" in TABLE_NAMES else [],
        guidance=[report(f"{GRID}/tables/guidance.csv", category="Tables",
                         caption="../report/guidance.rst")]
        if "guidance.csv" in TABLE_NAMES else [],
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.csv),
    localrule: True
    conda:
        ENV
    log:
        f"{GRID}/logs/aggregate.log",
    shell:
        "python -m vdm aggregate {input} --out-dir {params.out_dir} > {log} 2>&1"


rule plots:
    input:
        summary=f"{GRID}/tables/summary.csv",
        logs=cells(f"{RUN_DIR}/train_log.csv"),
        grids=cells(f"{RUN_DIR}/samples.png"),
        guided=guided_samples(),
    output:
        [report(f"{GRID}/plots/{name}.png", category="Plots",
                caption=f"../report/{name}.rst") for name in PLOT_NAMES],
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    localrule: True
    conda:
        ENV
    log:
        f"{GRID}/logs/plots.log",
    shell:
        "python -m vdm plots --summary {input.summary} --logs {input.logs} "
        "--grids {input.grids} --samples {input.guided} --out-dir {params.out_dir} > {log} 2>&1"
