"""Many jobs: ``clipstyle batch JOBS`` — a job file, batched optimization, resume, and Ray.

Modules: :mod:`~clipstyle.batch.jobs` (the job file), :mod:`~clipstyle.batch.manifest` (``batch.jsonl``),
:mod:`~clipstyle.batch.folders` (exact-name atomic run folders), :mod:`~clipstyle.batch.stack` (several
text jobs in one batch of latents), :mod:`~clipstyle.batch.execute` (models loaded once per process, the
pipelines), :mod:`~clipstyle.batch.runner` (the driver) and :mod:`~clipstyle.batch.ray_runner` (Ray actors).
"""
