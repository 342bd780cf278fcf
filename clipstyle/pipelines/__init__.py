"""One public function per workflow; the CLI, the UI and batch jobs are thin callers of these.

* :mod:`~clipstyle.pipelines.text` — ``text_to_image`` (``clipstyle "PROMPT"``), ``text_job`` / ``TextJob``;
* :mod:`~clipstyle.pipelines.creative` — ``styleblocks``, ``mix_grid``, ``interpolate``, ``render``, ``generate``,
  ``blend``;
* :mod:`~clipstyle.pipelines.directions` — ``direction_apply``, ``direction_learn``, ``direction_from_text``;
* :mod:`~clipstyle.pipelines.run` — the frozen ``Run`` every workflow returns (``run.save(outdir)``).

Keyword names are the CLI's option names. Importing this package imports nothing heavy.
"""
