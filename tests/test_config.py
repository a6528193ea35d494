"""Job files and Python objects get the same checks before Ray starts; mistakes name the key and
its place, all of a file's mistakes are reported at once, and the nearest valid name is suggested."""

import json
from pathlib import Path

import pytest

from llmray import ops
from llmray.cli import main
from llmray.config import JobSpec, json_schema, load_job, parse_job
from llmray.errors import JobError
from llmray.io.specs import InputSpec, OutputSpec
from llmray.ops import GopherQuality, Language, MinhashDedup
from llmray.train.config import load_train_job, parse_train

ROOT = Path(__file__).resolve().parents[1]
JOBS = sorted((ROOT / "jobs").glob("*.yaml"))


def test_steps_map_onto_steps_with_defaults_and_overrides():
    spec = parse_job({"input": "data/", "steps": ["clean_whitespace", {"language": {"min_score": 0.5}}]})
    assert spec.inputs[0].paths == ["data/"]
    assert [step.name for step in spec.steps] == ["clean_whitespace", "language", "unique_ids"]  # ids checked
    assert isinstance(spec.steps[1], Language) and spec.steps[1].min_score == 0.5
    assert spec.steps[1].languages == ["en"]


@pytest.mark.parametrize("raw, message", [
    ({"input": "x", "step": []}, "step: unknown section (did you mean 'steps'?"),
    ({"input": "x", "steps": ["no_such_step"]}, "steps[0].no_such_step: unknown step"),
    ({"input": "x", "steps": ["clean_whitspace"]}, "unknown step (did you mean 'clean_whitespace'?"),
    ({"input": "x", "steps": ["clean_whitespace", {"language": {"min_scor": 1}}]},
     "steps[1].language.min_scor: unknown key (did you mean 'min_score'?"),
    ({"input": "x", "steps": [{"language": {"min_score": "high"}}]}, "steps[0].language.min_score: expected a number"),
    ({"input": "x", "steps": [{"unicode_normalize": {"form": "NFX"}}]}, "steps[0].unicode_normalize.form: expected"),
    ({"input": {"paths": "x", "formt": "jsonl"}}, "input.formt: unknown key (did you mean 'format'?"),
    ({"input": {"paths": "x", "format": "csv"}}, "input.format: 'csv' is not one of"),
    ({"input": "x", "output": {"format": "xml"}}, "output.format: 'xml' is not one of"),
    ({"input": "x", "steps": [{"minhash_dedup": {"threshold": 1.5}}]}, "steps[0].minhash_dedup: threshold must be"),
    ({"steps": []}, "input: missing"),
])
def test_mistakes_name_the_key(raw, message):
    with pytest.raises(JobError) as caught:
        parse_job(raw)
    assert message in str(caught.value)


def test_every_mistake_of_a_file_is_reported_at_once(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: {paths: x, formt: jsonl}\nsteps:\n  - {language: {min_scor: 1}}\n  - nope\n"
                   "output: {shard_mb: big}\n")
    assert main(["run", str(bad)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith(f"llmray: error: {bad}: ") for line in lines)
    joined = "\n".join(lines)
    for place in ("input.formt", "steps[0].language.min_scor", "steps[1].nope", "output.shard_mb"):
        assert place in joined


def test_python_construction_gets_the_job_files_checks():
    with pytest.raises(JobError, match="gopher_quality.min_words: expected an integer"):
        GopherQuality(min_words="50")
    with pytest.raises(JobError, match="language.languages"):
        Language(languages=[1])
    assert Language(languages="en").languages == ["en"]
    assert GopherQuality(max_mean_word_length=12).max_mean_word_length == 12.0
    with pytest.raises(JobError, match="chunk_mb: expected a number"):
        InputSpec(paths=["x"], chunk_mb="big")
    spec = parse_job({"input": "x", "steps": [GopherQuality(min_words=10), "exact_dedup"]})
    assert spec.steps[0].min_words == 10 and spec.steps[1].name == "exact_dedup"
    built = JobSpec(inputs=[InputSpec(paths=["x"])], steps=[MinhashDedup(threshold=0.7)], output=OutputSpec())
    assert built.fingerprint() == parse_job({"input": "x", "steps": [{"minhash_dedup": {"threshold": 0.7}}],
                                             "output": {"path": "elsewhere"}}).fingerprint()
    with pytest.raises(JobError, match="is not a step"):
        JobSpec(inputs=[InputSpec(paths=["x"])], steps=[print], output=OutputSpec())


def test_numbers_read_alike_in_data_and_train_jobs(tmp_path):
    data = tmp_path / "data.yaml"
    data.write_text("input: x\nsteps:\n  - {language: {min_score: 5e-1}}\n")
    assert load_job(data).steps[0].min_score == 0.5
    train = tmp_path / "train.yaml"
    train.write_text("train:\n  data: [x]\n  model: {config: {hidden_size: 64, num_attention_heads: 2}}\n"
                     "  optimizer: {lr: 5e-4}\n")
    assert load_train_job(train).optimizer.lr == 5e-4
    with pytest.raises(JobError, match="train.optimizr: unknown key \\(did you mean 'optimizer'"):
        parse_train({"train": {"data": ["x"], "optimizr": {}}})


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: x\nsteps:\n  - {language: {min_scor: 1}}\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "steps[0].language.min_scor: unknown key" in err and str(bad) in err


def test_broken_yaml_missing_and_non_utf8_job_files(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("input: [unclosed\n")
    assert main(["run", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "job file not found" in capsys.readouterr().err
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("input: caf\xe9.jsonl\n".encode("latin-1"))
    assert main(["run", str(latin)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not UTF-8" in err


def test_missing_input_path_stops_before_ray(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(f"input: {tmp_path}/missing/\noutput: {{path: {tmp_path}/out}}\n")
    assert main(["run", str(job)]) == 2
    assert "input not found" in capsys.readouterr().err


def test_input_override_on_a_job_of_several_sources_is_refused(tmp_path, capsys):
    job = tmp_path / "mix.yaml"
    job.write_text("input:\n  - {paths: a.jsonl, source: a}\n  - {paths: b.jsonl, source: b}\n")
    assert main(["run", str(job), "--input", "c.jsonl"]) == 2
    assert "reads 2 sources" in capsys.readouterr().err


@pytest.mark.parametrize("path", JOBS, ids=[p.stem for p in JOBS])
def test_example_jobs_are_valid(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples name the shipped data relative to the checkout
    if "\ntrain:" in "\n" + path.read_text():
        spec = load_train_job(path)
        assert spec.data and spec.output
    else:
        spec = load_job(path)
        assert spec.inputs and spec.inputs[0].paths and spec.steps


def test_json_schema_lists_every_step_and_section(capsys):
    schema = json_schema()
    assert set(schema["properties"]) == {"input", "steps", "output", "plugins"}
    names = {s.get("const") for s in schema["properties"]["steps"]["items"]["anyOf"]}
    assert set(ops.available()) <= names
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["title"] == "llmray data job"
    assert main(["schema", "--train"]) == 0
    assert "optimizer" in json.loads(capsys.readouterr().out)["properties"]["train"]["properties"]


def test_plugins_register_steps_from_an_entry_point_or_the_job(tmp_path, monkeypatch):
    package = tmp_path / "site"
    (package / "myplugin").mkdir(parents=True)
    (package / "myplugin" / "__init__.py").write_text(
        "import dataclasses\nfrom typing import ClassVar\nfrom llmray.ops import MapStep, register\n\n"
        "@register\n@dataclasses.dataclass\nclass Shout(MapStep):\n"
        "    name: ClassVar[str] = 'shout'\n    summary: ClassVar[str] = 'upper-case the text'\n"
        "    exclaim: bool = True\n"
        "    def map(self, table):\n        import pyarrow.compute as pc\n"
        "        return table.set_column(table.schema.get_field_index('text'), 'text', pc.utf8_upper(table['text']))\n")
    (package / "yell").mkdir()
    (package / "yell" / "__init__.py").write_text(
        "import dataclasses\nfrom typing import ClassVar\nfrom llmray.ops import MapStep, register\n\n"
        "@register\n@dataclasses.dataclass\nclass Yell(MapStep):\n    name: ClassVar[str] = 'yell'\n"
        "    def map(self, table):\n        return table\n")
    dist = package / "myplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[llmray.steps]\nshout = myplugin\n")
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.setattr(ops, "_loaded", False)
    spec = parse_job({"input": "x", "steps": [{"shout": {"exclaim": False}}]})
    assert spec.steps[0].name == "shout" and spec.steps[0].exclaim is False
    with pytest.raises(JobError, match="shout.exclaim: expected true or false"):
        parse_job({"input": "x", "steps": [{"shout": {"exclaim": "no"}}]})
    with pytest.raises(JobError, match="unknown step"):
        parse_job({"input": "x", "steps": ["yell"]})
    assert parse_job({"input": "x", "plugins": ["yell"], "steps": ["yell"]}).steps[0].name == "yell"
    with pytest.raises(JobError, match="plugins: cannot import 'nope_plugin'"):
        parse_job({"input": "x", "plugins": ["nope_plugin"]})
    assert main(["ops", "shout"]) == 0
