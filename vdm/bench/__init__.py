"""Performance measurement: ``python -m vdm.bench`` and the GPU check (``python -m vdm gpu-check``).

The bench, by role: :mod:`~vdm.bench.configs` (which pipeline config, cell and precision variant),
:mod:`~vdm.bench.sizes` (how much work), :mod:`~vdm.bench.clock` (device-synchronised timing),
:mod:`~vdm.bench.train_timing`, :mod:`~vdm.bench.flops`, :mod:`~vdm.bench.eval_timing` and
:mod:`~vdm.bench.grid` (the measurements; :mod:`~vdm.bench.workflow_copy` copies the workflow to
run), :mod:`~vdm.bench.measure` (runs them in order), :mod:`~vdm.bench.report` (the result, its
goals and table) and :mod:`~vdm.bench.cli` (the command line). The GPU check:
:mod:`~vdm.bench.gpu_check` (budget, stage processes, checks, summary) and
:mod:`~vdm.bench.gpu_stages` (what each stage runs).
"""
