# Train stage: one job per (model, algorithm, seed). Checkpoints live in state/ beside the
# declared outputs, so a failed or re-run job never deletes them and a restart resumes.
# The backend decides which rules produce a run's final/ policy and metrics.jsonl.


if config["backend"] == "local":

    include: "train_local.smk"

else:

    include: "train_verl.smk"
