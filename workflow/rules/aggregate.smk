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
    localrule: True
    log:
        f"{LOGS}/aggregate.log",
    shell:
        "python -m vdm aggregate {input} --out-dir {RESULTS}/tables > {log} 2>&1"


rule plots:
    input:
        summary=f"{RESULTS}/tables/summary.csv",
        logs=cells(f"{RUN_DIR}/train_log.csv"),
        grids=cells(f"{RUN_DIR}/samples.png"),
    output:
        [report(f"{RESULTS}/plots/{name}.png", category="Plots",
                caption=f"../report/{name}.rst") for name in PLOT_NAMES],
    localrule: True
    log:
        f"{LOGS}/plots.log",
    shell:
        "python -m vdm plots --summary {input.summary} --logs {input.logs} "
        "--grids {input.grids} --out-dir {RESULTS}/plots > {log} 2>&1"
