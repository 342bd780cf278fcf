"""Job files of ``clipstyle batch``: what is accepted, and the one clear error for a bad line (issue 12, §1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipstyle.batch.jobs import JobFileError, read_jobs
from clipstyle.batch.manifest import BatchLockedError, Manifest, outdir_lock
from clipstyle.batch.runner import make_batches

from ._cli import run_cli


def write(tmp_path: Path, text: str, name: str = "jobs.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_json_lines_defaults_ids_and_paths(tmp_path):
    (tmp_path / "face.png").write_bytes(b"")
    path = write(tmp_path, '# a comment\n\n{"prompt": "a red car", "seed": 3, "id": "car"}\n'
                           '{"prompt": "a dog", "clip-model": "RN50", "image_prompt": "face.png", "class": 2}\n')
    jobs = read_jobs(path, {"network": "ffhq", "steps": 50})
    assert [j.line for j in jobs] == [3, 4]
    assert jobs[0].id == "car" and jobs[0].command == "text"
    assert jobs[0].options["steps"] == 50 and jobs[0].options["network"] == "ffhq"
    assert jobs[0].options["clip_model"] == "ViT-B-32" and jobs[0].options["lr"] == 0.1  # the main command's defaults
    assert jobs[1].options["clip_model"] == "RN50"  # dashes are the CLI's spelling
    assert jobs[1].options["image_prompt"] == str((tmp_path / "face.png").resolve())  # relative to the job file
    assert jobs[1].id.startswith("a-dog-") and len(jobs[1].id) == len("a-dog-") + 8


def test_default_id_is_stable_and_depends_on_the_options(tmp_path):
    a = read_jobs(write(tmp_path, '{"prompt": "a dog", "seed": 1}\n{"prompt": "a dog", "seed": 2}\n'))
    b = read_jobs(write(tmp_path, '\n\n{"prompt": "a dog", "seed": 2}\n{"prompt": "a dog", "seed": 1}\n', "b.jsonl"))
    assert a[0].id != a[1].id
    assert {j.id for j in a} == {j.id for j in b}  # moving lines keeps the folders: resume still finds them


def test_toml_jobs_with_defaults(tmp_path):
    path = write(tmp_path, '[defaults]\nsteps = 20\n\n[[job]]\nprompt = "a"\nid = "one"\n\n[[job]]\n'
                           'prompt = "b"\nsteps = 5\nmix = ["42:0-3"]\n', "jobs.toml")
    jobs = read_jobs(path)
    assert [(j.id, j.line, j.options["steps"]) for j in jobs] == [("one", 4, 20), (jobs[1].id, 8, 5)]
    assert jobs[1].options["mix"] == ["42:0-3"]


@pytest.mark.parametrize("text, message", [
    ('{"prompt": "a"}\n{"prompt": "b",}\n', "jobs.jsonl:2: not valid JSON"),
    ('{"prompt": "a"}\n\n["prompt"]\n', "jobs.jsonl:3: a job must be an object"),
    ('{"prompt": "a", "steps": "ten"}\n', "jobs.jsonl:1: --steps must be an integer, got 'ten'"),
    ('{"prompt": "a", "steps": 0}\n', "jobs.jsonl:1: --steps must be >= 1, got 0"),
    ('{"prompt": "a", "lr": -1}\n', "jobs.jsonl:1: --lr must be > 0, got -1"),
    ('{"prompt": "a", "seed": true}\n', "jobs.jsonl:1: --seed must be an integer, got True"),
    ('{"prompt": "a", "seed": 4294967296}\n', "--seed must be <= 4.29497e+09, got 4294967296"),
    ('{"prompt": "a", "lr": NaN}\n', "jobs.jsonl:1: --lr must be a finite number, got nan"),
    ('{"prompt": "a", "lr": 1%s}\n' % ("0" * 400), "jobs.jsonl:1: --lr must be a finite number"),
    ('{"prompt": "a", "promt": "b"}\n', "jobs.jsonl:1: unknown option 'promt' for text; did you mean 'prompt'?"),
    ('{"prompt": "a", "command": "paint"}\n', "jobs.jsonl:1: unknown command 'paint'"),
    ('{"prompt": "a", "device": "cuda"}\n', "jobs.jsonl:1: 'device' is an option of the whole batch"),
    ('{"prompt": "a", "id": "../x"}\n', "jobs.jsonl:1: 'id' must be a folder name"),
    ('{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": "X"}\n', "jobs.jsonl:2: id 'X' is already used on line 1"),
    ('{"prompt": "a"}\n{"prompt": "a"}\n', "the same options: give one of them an 'id'"),
    ('{"seed": 3}\n', "jobs.jsonl:1: the prompt is empty"),
    ('{"prompt": "a", "precision": "fp8"}\n', "--precision must be one of auto, fp32, tf32, bf16, fp16, got 'fp8'"),
    ('# nothing\n\n', "holds no job"),
    ('{"prompt": "a"}\n' + "[" * 100000 + "\n", "jobs.jsonl:2: JSON nested too deeply"),
])
def test_bad_job_files_name_the_line(tmp_path, text, message):
    with pytest.raises(JobFileError) as err:
        read_jobs(write(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_toml_names_the_line(tmp_path):
    # the line of the job's [[job]] header
    with pytest.raises(JobFileError, match=r"jobs.toml:4: --seed must be an integer, got 'x'"):
        read_jobs(write(tmp_path, '[[job]]\nprompt = "a"\n\n[[job]]\nprompt = "b"\nseed = "x"\n', "jobs.toml"))
    with pytest.raises(JobFileError, match=r"jobs.toml:2: not valid TOML"):
        read_jobs(write(tmp_path, '[[job]]\nprompt = \n', "jobs.toml"))


def test_other_commands_are_checked_by_their_settings_class(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "me.png")
    path = write(tmp_path, '{"command": "edit", "photo": "me.png", "prompt": "smile"}\n'
                           '{"command": "edit", "photo": "me.png", "promt": "smile"}\n')
    with pytest.raises(JobFileError, match=r"jobs.jsonl:2: unknown option 'promt' for edit; did you mean 'prompt'"):
        read_jobs(path)
    jobs = read_jobs(write(tmp_path, '{"command": "edit", "photo": "me.png", "prompt": "smile"}\n', "ok.jsonl"))
    assert jobs[0].options["photo_or_latents"] == str((tmp_path / "me.png").resolve())
    with pytest.raises(JobFileError, match=r"jobs.jsonl:1: PHOTO_OR_LATENTS: no such photo: .*absent.png"):
        read_jobs(write(tmp_path, '{"command": "edit", "photo": "absent.png", "prompt": "smile"}\n'))


def test_cli_bad_file_is_one_line_and_nothing_runs(tmp_path, capsys):
    path = write(tmp_path, '{"prompt": "a"}\n{"prompt": "b", "steps": 1.5}\n')
    out = tmp_path / "out"
    code, stdout, err = run_cli(["batch", path, "--outdir", out, "--device", "cpu"], capsys)
    assert code == 1
    assert err.strip() == "error: jobs.jsonl:2: --steps must be an integer, got 1.5"
    assert not out.exists()  # validated before anything ran
    code, _, err = run_cli(["batch", tmp_path / "absent.jsonl", "--outdir", out], capsys)
    assert code == 2 and err.strip() == f"error: no such job file: {tmp_path / 'absent.jsonl'} (JOBS)"


def test_batches_group_compatible_jobs_in_file_order(tmp_path):
    lines = [{"prompt": f"p{i}", "steps": 10 if i % 3 else 20} for i in range(7)]
    jobs = read_jobs(write(tmp_path, "".join(json.dumps(x) + "\n" for x in lines)))
    batches = make_batches(jobs, 2)
    assert [[j.options["prompt"] for j in b] for b in batches] == [["p0", "p3"], ["p6"], ["p1", "p2"], ["p4", "p5"]]


def test_manifest_survives_a_torn_line_and_keeps_one_line_per_job(tmp_path):
    m = Manifest(tmp_path)
    m.append({"id": "a", "status": "failed", "error": "x"})
    with open(m.path, "a") as f:
        f.write('{"id": "b", "sta')  # a kill in the middle of a write
    m.append({"id": "a", "status": "done"})
    assert [e["status"] for e in m.read()] == ["failed", "done"]
    assert m.finish(["b", "a"]) == [{"id": "a", "status": "done"}]
    assert m.path.read_text() == '{"id": "a", "status": "done"}\n'
    assert m.finish(["a"], resumed=["a"]) == [{"id": "a", "status": "done", "resumed": True}]


def test_one_batch_per_outdir(tmp_path):
    with outdir_lock(tmp_path):
        with pytest.raises(BatchLockedError, match="another clipstyle batch is writing into"):
            with outdir_lock(tmp_path):
                pass
    with outdir_lock(tmp_path):  # released
        pass
