"""The columns of a run's ``train_log.csv`` (one row every ``train.log_every`` steps), shared by the
trainer that writes it and by the readers of a saved training state (:mod:`vdm.training.snapshots`).

Units: ``loss`` and ``grad_norm`` as the objective defines them (per image, averaged over the
batch), ``lr`` per step, ``images_per_sec`` over the steps since the previous row, ``seconds`` of
training so far, ``logsnr_max`` / ``logsnr_min`` the schedule's end points (natural log of the SNR).
"""

LOG_COLUMNS = ["step", "loss", "grad_norm", "lr", "images_per_sec", "seconds", "logsnr_max",
               "logsnr_min"]
