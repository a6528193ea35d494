"""Job files are validated before Ray starts; mistakes name the key and its place."""

import pytest

from llmray.cli import main
from llmray.config import load_job, parse_job
from llmray.errors import JobError
from llmray.ops.filters.language import Language


def test_steps_map_onto_ops_with_defaults_and_overrides():
    spec = parse_job({"input": "data/", "steps": ["clean_whitespace", {"language": {"min_score": 0.5}}]})
    assert spec.inputs[0].paths == ["data/"]
    assert [op.name for op in spec.steps] == ["clean_whitespace", "language"]
    assert isinstance(spec.steps[1], Language) and spec.steps[1].min_score == 0.5
    assert spec.steps[1].languages == ["en"]


@pytest.mark.parametrize("raw, message", [
    ({"input": "x", "step": []}, "job.step: unknown key"),
    ({"input": "x", "steps": ["no_such_step"]}, "steps[0].no_such_step: unknown step"),
    ({"input": "x", "steps": ["clean_whitespace", {"language": {"min_scor": 1}}]},
     "steps[1].language.min_scor: unknown key"),
    ({"input": "x", "steps": [{"language": {"min_score": "high"}}]}, "steps[0].language.min_score: expected"),
    ({"input": "x", "steps": [{"unicode_normalize": {"form": "NFX"}}]}, "steps[0].unicode_normalize.form"),
    ({"input": {"paths": "x", "formt": "jsonl"}}, "input.formt: unknown key"),
    ({"input": {"paths": "x", "format": "csv"}}, "input.format"),
    ({"input": "x", "output": {"format": "xml"}}, "output.format"),
    ({"steps": []}, "input: missing"),
])
def test_mistakes_name_the_key(raw, message):
    with pytest.raises(JobError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_job(raw)


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: x\nsteps:\n  - {language: {min_scor: 1}}\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "steps[0].language.min_scor: unknown key" in err and str(bad) in err


def test_broken_yaml_and_missing_job_file(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("input: [unclosed\n")
    assert main(["run", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "job file not found" in capsys.readouterr().err


def test_missing_input_path_stops_before_ray(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(f"input: {tmp_path}/missing/\noutput: {{path: {tmp_path}/out}}\n")
    assert main(["run", str(job)]) == 2
    assert "input not found" in capsys.readouterr().err


def test_example_jobs_are_valid():
    from pathlib import Path

    for path in sorted(Path("jobs").glob("*.yaml")):
        text = path.read_text()
        if "\ntrain:" in "\n" + text:
            continue
        load_job(path)
