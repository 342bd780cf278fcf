"""``--log mlflow[:URI]``: one MLflow run per clipstyle run, through ``MlflowClient`` (no global active run).

The experiment is ``$MLFLOW_EXPERIMENT_NAME``, else ``clipstyle``; the run is named after the clipstyle run,
tagged ``clipstyle.group`` in a batch. Metrics ``loss/total``, ``loss/<term>``, ``lr`` per step (sent in
batches of up to 1000, at most every 2 s), ``loss/best`` and the run's figures (``metrics/…``) at the end;
every setting as a parameter (non-strings as JSON); the preview images as ``images/preview/step_NNNNNN.png``,
the final one as ``images/result.png``; the run folder (``result.png``, ``progress.gif``, ``latents.npz``,
``run.json``…) at the artifact root. MLflow ≥ 3.7 refuses a file store (``file://…`` or a plain path) unless
``MLFLOW_ALLOW_FILE_STORE`` is set; naming one in ``--log`` is that consent, so this tracker sets it around
its own calls only.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlparse

__all__ = ["MlflowTracker", "is_file_store"]

#: MLflow's per-request limits (``log_batch``).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
FLUSH_EVERY_S = 2.0
_STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}


def is_file_store(uri: str) -> bool:
    """Whether ``uri`` names MLflow's file store (``file://…`` or a plain path)."""
    return urlparse(uri).scheme in ("", "file")


@contextlib.contextmanager
def _allow_file_store(uri: str) -> Iterator[None]:
    """Set ``MLFLOW_ALLOW_FILE_STORE=true`` for the duration of a call on a file store (restored after)."""
    key = "MLFLOW_ALLOW_FILE_STORE"
    if not is_file_store(uri) or key in os.environ:
        yield
        return
    os.environ[key] = "true"
    try:
        yield
    finally:
        os.environ.pop(key, None)


class MlflowTracker:
    """A :class:`~clipstyle.tracking.base.Tracker` logging to the MLflow tracking server or store ``uri``."""

    wants_folder = True

    def __init__(self, uri: str, experiment: str | None = None) -> None:
        self.uri = uri
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "clipstyle"
        self.label = f"mlflow ({uri})"
        self.client: Any = None
        self.run_id: str | None = None
        self._metrics: list[Any] = []
        self._last_flush = time.monotonic()

    def start(self, name: str, group: str | None) -> None:
        from mlflow.tracking import MlflowClient

        with _allow_file_store(self.uri):
            client = MlflowClient(tracking_uri=self.uri)
            exp = client.get_experiment_by_name(self.experiment)
            if exp is not None:
                exp_id = exp.experiment_id
            else:
                try:
                    exp_id = client.create_experiment(self.experiment)
                except Exception:  # noqa: BLE001 - created meanwhile by another run: use that one
                    exp_id = client.get_experiment_by_name(self.experiment).experiment_id
            tags = {"clipstyle.group": group} if group else {}
            self.run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
        self.client = client

    def log_settings(self, settings: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        from clipstyle.tracking.base import param_value

        params = [Param(str(k), param_value(v)) for k, v in settings.items()]
        with _allow_file_store(self.uri):
            for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
                self.client.log_batch(self.run_id, params=params[i:i + MAX_PARAMS_PER_BATCH])

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._metrics.extend(Metric(k, float(v), now, int(step)) for k, v in scalars.items())
        if len(self._metrics) >= MAX_METRICS_PER_BATCH or time.monotonic() - self._last_flush > FLUSH_EVERY_S:
            self._flush()

    def _flush(self) -> None:
        pending, self._metrics = self._metrics, []
        self._last_flush = time.monotonic()
        with _allow_file_store(self.uri):
            for i in range(0, len(pending), MAX_METRICS_PER_BATCH):
                self.client.log_batch(self.run_id, metrics=pending[i:i + MAX_METRICS_PER_BATCH])

    def log_image(self, tag: str, step: int, image: Any) -> None:
        """The image's PNG (encoded once for every tracker) as the artifact ``images/…``."""
        import tempfile

        folder, name = ("images", "result.png") if tag == "result" else (f"images/{tag}", f"step_{step:06d}.png")
        with tempfile.TemporaryDirectory(prefix="clipstyle-mlflow-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(image.png)
            with _allow_file_store(self.uri):
                self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def log_folder(self, folder: Path) -> None:
        self._flush()
        with _allow_file_store(self.uri):
            self.client.log_artifacts(self.run_id, str(folder))

    def close(self, status: str) -> None:
        if self.client is None or self.run_id is None:
            return
        try:
            self._flush()
        finally:
            with _allow_file_store(self.uri):
                self.client.set_terminated(self.run_id, status=_STATUS.get(status, "FINISHED"))
            self.client = None
