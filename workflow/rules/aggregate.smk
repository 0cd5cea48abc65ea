rule aggregate:
    input:
        metrics=METRICS + SNAPSHOT_METRICS,  # train.snapshots: every budget's rows (none without)
        floor=FID_FLOOR,
        products=evaluation_products(),  # so that a setting the grid gains reruns its jobs
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
        claims_md=f"{GRID}/tables/claims.md",
        claims=report(f"{GRID}/tables/claims.csv", category="Claims",
                      caption="../report/claims.rst"),
        denoiser_floor=[report(f"{GRID}/tables/denoiser_floor.csv", category="Tables",
                               caption="../report/denoiser_floor_table.rst")]
        if MEMORISING_FLOOR else [],
        excess_eps_error=[report(f"{GRID}/tables/excess_eps_error.csv", category="Tables",
                                 caption="../report/excess_eps_error_table.rst")]
        if EXCESS_EPS else [],
        ranking_stability=[report(f"{GRID}/tables/ranking_stability.csv", category="Tables",
                                  caption="../report/ranking_stability.rst")]
        if SNAPSHOT_STEPS else [],
        ranking_stability_md=[f"{GRID}/tables/ranking_stability.md"] if SNAPSHOT_STEPS else [],
        # the report's landing page includes headline.rst (workflow/report/workflow.rst)
        headline=report(f"{GRID}/tables/headline.rst", category="Headline",
                        caption="../report/headline.rst"),
        headline_md=f"{GRID}/tables/headline.md",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.csv),
        baseline=baseline_arg(),
        name=os.path.basename(GRID),
    localrule: True
    conda:
        ENV
    log:
        f"{GRID}/logs/aggregate.log",
    shell:
        "python -m vdm aggregate {input.metrics} --floor {input.floor} {params.baseline} "
        "--run-name {params.name} --out-dir {params.out_dir} > {log} 2>&1"


rule plots:
    input:
        summary=f"{GRID}/tables/summary.csv",
        logs=cells(f"{RUN_DIR}/train_log.csv"),
        grids=cells(f"{RUN_DIR}/samples.png"),
        guided=guided_samples(),
        floor=FID_FLOOR,
        denoiser_floor=f"{GRID}/tables/denoiser_floor.csv" if MEMORISING_FLOOR else [],
        excess_eps_error=f"{GRID}/tables/excess_eps_error.csv" if EXCESS_EPS else [],
    output:
        [report(f"{GRID}/plots/{name}.png", category="Plots",
                caption=f"../report/{name}.rst") for name in PLOT_NAMES],
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
        denoiser=lambda wildcards, input: (
            f"--denoiser-floor {input.denoiser_floor}" if MEMORISING_FLOOR else
            f"--excess-eps-error {input.excess_eps_error}" if EXCESS_EPS else ""),
    localrule: True
    conda:
        ENV
    log:
        f"{GRID}/logs/plots.log",
    shell:
        "python -m vdm plots --summary {input.summary} --logs {input.logs} "
        "--grids {input.grids} --samples {input.guided} --floor {input.floor} "
        "{params.denoiser} --out-dir {params.out_dir} > {log} 2>&1"


rule timing:
    input:
        benchmarks=BENCHMARKS,
        results=[path for paths in timing_results().values() for path in paths],
        plots=PLOTS,  # last: after every job whose time it reports
    output:
        csv=report(TIMING[0], category="Timing", caption="../report/timing_table.rst"),
        md=TIMING[1],
        png=report(TIMING[2], category="Timing", caption="../report/timing.rst"),
    localrule: True
    log:
        f"{GRID}/logs/timing.log",
    run:
        from vdm.reporting.timing import write_timing  # in-process: no interpreter start-up
        write_timing(input.benchmarks, timing_results(), *map(os.path.dirname, output[::2]))
