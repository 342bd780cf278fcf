"""``--log tensorboard[:DIR]``: one TensorBoard run per clipstyle run, written with torch's SummaryWriter.

Layout: ``DIR/[GROUP/]<slug of the name>-<YYYYmmdd-HHMMSS>[-k]``, so ``tensorboard --logdir DIR`` lists
every run (a batch's jobs under its group). Scalars: ``loss/total``, ``loss/<term>``, ``lr`` per step;
images: ``preview`` every ``--save-every`` steps and ``result`` at the end; ``settings`` as a JSON text
and, when the run closes, as HParams (with ``loss/best`` and the run's metrics), one session per run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

__all__ = ["TensorBoardTracker"]


class TensorBoardTracker:
    """A :class:`~clipstyle.tracking.base.Tracker` writing TensorBoard event files under ``root``."""

    wants_folder = False

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.label = f"tensorboard ({self.root})"
        self.writer: Any = None
        self.folder: Path | None = None
        self.settings: dict[str, Any] = {}
        self.metrics: dict[str, float] = {}

    def start(self, name: str, group: str | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from clipstyle.io.files import slugify

        parent = self.root / slugify(group) if group else self.root
        parent.mkdir(parents=True, exist_ok=True)
        base = f"{slugify(name)}-{time.strftime('%Y%m%d-%H%M%S')}"
        for k in range(10_000):
            folder = parent / (base if k == 0 else f"{base}-{k}")
            try:
                folder.mkdir()
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - 10 000 runs of one name in one second
            raise FileExistsError(f"no free run folder under {parent}")
        self.folder = folder
        self.writer = SummaryWriter(log_dir=str(folder), flush_secs=30)

    def log_settings(self, settings: Mapping[str, Any]) -> None:
        from clipstyle.io.files import to_jsonable

        self.settings.update(settings)
        self.writer.add_text("settings", "```\n" + json.dumps(to_jsonable(dict(self.settings)), indent=2,
                                                             sort_keys=True) + "\n```")

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """One event per step holding every scalar (cheaper than one ``add_scalar`` each)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=tag, simple_value=float(v)) for tag, v in scalars.items()]
        self.writer._get_file_writer().add_summary(Summary(value=values), step)
        for tag, value in scalars.items():
            if tag == "loss/best" or not (tag == "lr" or tag.endswith("/lr") or "loss/" in tag):
                self.metrics[tag] = value  # a figure of the run: a column of the HParams table

    def log_image(self, tag: str, step: int, image: Any) -> None:
        """The image's PNG (encoded once for every tracker) as an image summary."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        img = Summary.Image(height=image.height, width=image.width, colorspace=image.channels,
                            encoded_image_string=image.png)
        self.writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=img)]), step)

    def log_folder(self, folder: Path) -> None:  # pragma: no cover - wants_folder is False
        pass

    def close(self, status: str) -> None:
        if self.writer is None:
            return
        try:
            if self.settings:
                self._write_hparams(status)
        finally:
            self.writer.close()
            self.writer = None

    def _write_hparams(self, status: str) -> None:
        """The settings as an HParams session of this run (values other than str/int/float/bool as JSON)."""
        from torch.utils.tensorboard.summary import hparams

        from clipstyle.tracking.base import param_value

        hp = {k: v if isinstance(v, (str, bool, int, float)) else param_value(v) for k, v in self.settings.items()}
        hp["status"] = status
        exp, ssi, sei = hparams(hp, dict(self.metrics))
        fw = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            fw.add_summary(summary)
