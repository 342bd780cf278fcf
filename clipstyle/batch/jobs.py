"""Job files: one job per line (JSON lines) or per ``[[job]]`` table (TOML), validated before anything runs.

A job's keys are the option names of its command (``prompt``, ``network``, ``seed``, ``steps``,
``blocks``, ``mix``, ``recipe``, ``clip_model``…; dashes or underscores), plus:

* ``command``: a workflow of the registry that batches (``text`` (default), ``edit``, ``project``,
  ``generate``, ``render``, ``styleblocks``…; :func:`batch_commands`);
* ``id`` (optional): the name of the job's run folder under ``--outdir``. Without it the id is
  ``<slug of the prompt>-<8 hex digits of a hash of the job's options>``, so it does not change when
  lines are moved, and resuming finds the same folder.

JSON lines: blank lines and lines starting with ``#`` are skipped; each other line is one JSON object.
TOML: an array of tables named ``job`` (``[[job]]``); a top-level table ``defaults`` gives keys every
job inherits. Relative paths in jobs (``image_prompt``, ``photo``, ``latents``, ``mix`` files) are
resolved against the job file's folder.

Every problem of the file is reported as a :class:`JobFileError` naming the line
(``jobs.jsonl:7: --steps must be an integer, got 'ten'``) before any job runs: the line the command line
prints for the same mistake, from the same settings class.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from clipstyle.errors import BadFileError

__all__ = ["BATCH_ONLY", "Job", "JobFileError", "batch_commands", "group_key", "parse_job", "read_jobs"]

#: Options of the whole batch, not of one job (given on the command line).
BATCH_ONLY = {"device": "--device", "outdir": "--outdir", "quiet": "--quiet", "prompts": "--prompts",
              "batch_size": "--batch-size", "ray": "--ray"}

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class JobFileError(BadFileError):
    """A job file that cannot be run: ``str()`` is one line naming the file and line (exit code 1)."""


def batch_commands() -> list[str]:
    """The workflows a job may name (``command``), from the one registry."""
    from clipstyle.workflows.registry import WORKFLOWS

    return sorted(name for name, w in WORKFLOWS.items() if w.batch)


@dataclass(frozen=True)
class Job:
    """One validated job.

    Attributes:
        id: folder name under ``--outdir`` (unique in the file).
        command: the workflow's registry name (``text``, ``edit``, ``project``, ``generate``…).
        options: every setting of the job (its settings class's ``to_dict()``: defaults filled in, relative
            paths made absolute).
        line: the line (JSON lines) or ``[[job]]`` header line (TOML) it came from, 1-based.
        source: the job file's name, for messages.
    """

    id: str
    command: str
    options: Mapping[str, Any]
    line: int
    source: str = ""
    explicit_id: bool = field(default=False, compare=False)

    def where(self) -> str:
        """``jobs.jsonl:7`` for messages."""
        return f"{self.source}:{self.line}"

    @property
    def workflow(self) -> Any:
        """The job's :class:`~clipstyle.workflows.registry.Workflow`."""
        from clipstyle.workflows.registry import get_workflow

        return get_workflow(self.command)

    @property
    def settings(self) -> Any:
        """The job's settings object (validated again from :attr:`options`)."""
        return self.workflow.settings.from_mapping(self.options)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (sent to Ray workers, written to the manifest)."""
        return {"id": self.id, "command": self.command, "options": dict(self.options), "line": self.line,
                "source": self.source}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Job":
        return cls(id=d["id"], command=d["command"], options=dict(d["options"]), line=int(d["line"]),
                   source=d.get("source", ""))


def group_key(job: Job) -> tuple:
    """Jobs with the same key can share one batch of latents: text jobs of the same network (and blend), CLIP
    model, step count, learning rate, frame interval and precision (one generator, one CLIP, one Adam schedule
    and one loop for all of them). Jobs of other commands each form their own group (they share loaded models)."""
    o = job.options
    if job.command != "text":
        return (job.command, job.id)
    return ("text", o["network"], o.get("blend"), o["clip_model"], o["clip_pretrained"], o["steps"], o["lr"],
            o["save_every"], o["precision"])


# ----------------------------------------------------------------------------- parsing

def _normalize_keys(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key.strip():
            raise JobFileError(f"{where}: empty key")
        k = key.strip().lstrip("-").replace("-", "_")
        if k in out:
            raise JobFileError(f"{where}: key {key!r} is given twice")
        out[k] = value
    return out


def _default_id(command: str, opts: Mapping[str, Any]) -> str:
    from clipstyle.io.files import slugify

    text = opts.get("prompt") or opts.get("recipe") or Path(str(opts.get("photo") or opts.get("photo_or_latents")
                                                               or opts.get("latents") or command)).stem
    digest = hashlib.sha1(json.dumps({"command": command, **opts}, sort_keys=True, default=str).encode()).hexdigest()
    return f"{slugify(str(text), max_len=40, fallback=command)}-{digest[:8]}"


def parse_job(raw: Any, where: str, *, base: Path, defaults: Mapping[str, Any] | None = None
              ) -> tuple[str, str, dict[str, Any], bool]:
    """Validate one job object → ``(id, command, options, explicit_id)``.

    The job's keys are validated by its workflow's settings class (the same checks and messages as the
    command line), so a mistake is named before anything runs.

    Args:
        raw: the decoded JSON object / TOML table.
        where: ``file:line`` for messages.
        base: folder against which relative paths are resolved.
        defaults: values for keys the job does not set (the command line's ``--network``, ``--steps``…); a
            default applies only to workflows that have that option.

    Raises:
        JobFileError: not an object, unknown command or key, a bad value, a bad id.
    """
    from clipstyle.errors import UsageError
    from clipstyle.workflows.registry import WORKFLOWS

    if not isinstance(raw, dict):
        raise JobFileError(f"{where}: a job must be an object like {{\"prompt\": \"a smiling child\"}}, "
                           f"got {type(raw).__name__}")
    opts = _normalize_keys(raw, where)
    command = opts.pop("command", "text")
    name = command.strip().replace("_", "-").replace(" ", "-") if isinstance(command, str) else command
    if name not in WORKFLOWS or not WORKFLOWS[name].batch:
        raise JobFileError(f"{where}: unknown command {command!r}; use one of {', '.join(batch_commands())}")
    workflow = WORKFLOWS[name]
    job_id = opts.pop("id", None)
    for key, flag in BATCH_ONLY.items():
        if key in opts:
            raise JobFileError(f"{where}: {key!r} is an option of the whole batch, not of a job: use {flag} "
                               f"on the command line")
    cls = workflow.settings
    opts = {cls.canonical_name(k): v for k, v in opts.items()}
    for key, value in (defaults or {}).items():
        key = cls.canonical_name(key)
        if value is not None and key not in opts and key in cls.specs():
            opts[key] = value
    try:
        settings = cls.from_mapping(opts, base=base)
    except UsageError as exc:
        raise JobFileError(f"{where}: {exc}") from None
    options = settings.to_dict()
    explicit = job_id is not None
    if explicit:
        if not isinstance(job_id, (str, int)) or isinstance(job_id, bool) or not _ID.match(str(job_id)):
            raise JobFileError(f"{where}: 'id' must be a folder name of letters, digits, '.', '_' or '-' "
                               f"(at most 100, not starting with '.' or '-'), got {json.dumps(job_id)}")
        job_id = str(job_id)
    else:
        job_id = _default_id(name, {k: options[k] for k in opts if k in options})  # the keys given: stable ids
    return job_id, name, options, explicit


def _json_lines(text: str, name: str) -> list[tuple[int, Any]]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            items.append((number, json.loads(stripped)))
        except json.JSONDecodeError as exc:
            raise JobFileError(f"{name}:{number}: not valid JSON ({exc.msg} at column {exc.colno}); each line must "
                               f"be one JSON object") from None
        except RecursionError:
            raise JobFileError(f"{name}:{number}: JSON nested too deeply for a job") from None
    return items


def _toml_jobs(text: str, name: str) -> tuple[list[tuple[int, Any]], dict[str, Any]]:
    import tomllib

    try:
        doc = tomllib.loads(text)
    except RecursionError:
        raise JobFileError(f"{name}:1: TOML nested too deeply for a job file") from None
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise JobFileError(f"{name}:{line.group(1) if line else 1}: not valid TOML ({str(exc).split(' (')[0]})") from None
    extra = sorted(set(doc) - {"job", "defaults"})
    if extra:
        raise JobFileError(f"{name}:1: unknown top-level key(s) {', '.join(extra)}; use [[job]] tables and an "
                           f"optional [defaults] table")
    jobs = doc.get("job", [])
    if not isinstance(jobs, list):
        raise JobFileError(f"{name}:1: 'job' must be an array of tables: write [[job]] above each job")
    headers = [n for n, line in enumerate(text.splitlines(), start=1) if re.match(r"^\s*\[\[\s*job\s*\]\]", line)]
    lines = headers if len(headers) == len(jobs) else list(range(1, len(jobs) + 1))
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise JobFileError(f"{name}:1: 'defaults' must be a table")
    return list(zip(lines, jobs)), defaults


def read_jobs(path: str | Path, defaults: Mapping[str, Any] | None = None) -> list[Job]:
    """Read and validate a whole job file (``.toml`` is TOML, anything else JSON lines).

    Args:
        path: the job file.
        defaults: values of keys a job does not set (from the command line); a TOML file's own
            ``[defaults]`` table comes between these and the job's keys.

    Returns:
        The jobs in file order.

    Raises:
        JobFileError: the file is missing, unreadable, empty, or any job is invalid; duplicate ids.
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise JobFileError(f"no such job file: {path}")
    try:
        data = path.read_bytes()
        if len(data) > 256 * 2**20:
            raise JobFileError(f"{path} is larger than 256 MiB; split it into several job files")
        text = data.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFileError(f"cannot read job file {path}: {type(exc).__name__}") from None
    file_defaults: dict[str, Any] = {}
    if path.suffix.lower() == ".toml":
        items, file_defaults = _toml_jobs(text, name)
    else:
        items = _json_lines(text, name)
    if not items:
        raise JobFileError(f"{path} holds no job (one JSON object per line, e.g. {{\"prompt\": \"a smiling child\"}})")
    merged = {**(defaults or {}), **_normalize_keys(file_defaults, f"{name}: [defaults]")}
    base = path.resolve().parent
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for line, raw in items:
        where = f"{name}:{line}"
        job_id, command, opts, explicit = parse_job(raw, where, base=base, defaults=merged)
        key = job_id.lower()  # case-insensitive file systems
        if key in seen:
            hint = "" if explicit else " (the same options: give one of them an 'id')"
            raise JobFileError(f"{where}: id {job_id!r} is already used on line {seen[key]}{hint}")
        seen[key] = line
        jobs.append(Job(job_id, command, opts, line, name, explicit))
    return jobs
