rule aggregate:
    input:
        METRICS,
    output:
        csv=report(f"{RESULTS}/tables/summary.csv", category="Tables",
                   caption="../report/summary.rst"),
        md=f"{RESULTS}/tables/summary.md",
        tex=f"{RESULTS}/tables/summary.tex",
        significance=report(f"{RESULTS}/tables/significance.csv", category="Tables",
                            caption="../report/significance.rst"),
        sweep=[report(f"{RESULTS}/tables/sampler_sweep.csv", category="Tables",
                      caption="../report/sampler_sweep.rst")]
        if "sampler_sweep.csv" in TABLE_NAMES else [],
        guidance=[report(f"{RESULTS}/tables/guidance.csv", category="Tables",
                         caption="../report/guidance.rst")]
        if "guidance.csv" in TABLE_NAMES else [],
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.csv),
    localrule: True
    conda:
        ENV
    log:
        f"{LOGS}/aggregate.log",
    shell:
        "python -m vdm aggregate {input} --out-dir {params.out_dir} > {log} 2>&1"


rule plots:
    input:
        summary=f"{RESULTS}/tables/summary.csv",
        logs=cells(f"{RUN_DIR}/train_log.csv"),
        grids=cells(f"{RUN_DIR}/samples.png"),
        guided=guided_samples(),
    output:
        [report(f"{RESULTS}/plots/{name}.png", category="Plots",
                caption=f"../report/{name}.rst") for name in PLOT_NAMES],
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    localrule: True
    conda:
        ENV
    log:
        f"{LOGS}/plots.log",
    shell:
        "python -m vdm plots --summary {input.summary} --logs {input.logs} "
        "--grids {input.grids} --samples {input.guided} --out-dir {params.out_dir} > {log} 2>&1"
