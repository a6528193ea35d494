"""Chinese text: word segmentation, the Chinese clean job's decisions on real prose with injected
junk, and its speed beside the English job's.

    python -m benchmarks.bench_zh [--output DIR] [--peers-path DIR] [--repeats N] [--junk-per-kind N]
                                  [--job-mb MB] [--skip-jobs]

Real prose (kept by a good filter): the two shipped corpora of ``data/zh`` (古文觀止, classical
essays in Traditional characters, and the sections of the KiCad manuals that are in Chinese,
consecutive sections of a manual joined up to ~1,500 characters), and, where the Debian packages
are installed, the Simplified Chinese manuals of ``debian-handbook``, ``debian-reference-zh-cn``
and ``gimp-help-zh-cn`` (CC-BY-SA, GPL, GFDL: measured here, never shipped): the main text of each
page (resiliparse) cut at line ends into documents of ~1,500 characters, those mostly in Chinese.
Junk (dropped by a good filter), generated with a fixed seed
from jieba's dictionary and from lines of the real prose: repeated lines, symbol soup, keyword lists,
link lists, number strings, navigation menus, a real paragraph copied over and over, a real
paragraph followed by twice as much keyword and link spam, and word salad (the pieces of a real
paragraph in random order: no rule here is meant to catch it; it is reported, not hidden).

Measured:

* ``segmentation``: MB/s per core (bytes of UTF-8 over CPU seconds, best of ``--repeats``) of
  llmray's compiled jieba segmentation (``word_stats`` with ``word_segmentation: jieba``, beside
  ``spaces`` and ``characters``), of jieba itself (pure Python, ``jieba.lcut`` per document) and,
  when importable (``--peers-path``: a ``pip install --target`` folder), rjieba (Rust, one call per
  document: ``cut`` gives strings, ``tokenize`` offsets) and jieba_fast_dat (C++); agreement with
  jieba as precision / recall of the word boundaries between two Han characters, and the share of
  documents whose boundaries are all jieba's.
* ``accuracy``: the steps of ``jobs/clean_zh.yaml`` in one process (no Ray) on real + junk: the
  share of each real corpus kept, of each junk kind dropped, and the reasons.
* ``filters``: the quality steps of ``jobs/clean_zh.yaml`` on the real Chinese prose and those of
  ``jobs/clean.yaml`` on the English quickstart corpus, in one process, MB/s per core of CPU time.
* ``jobs``: ``jobs/clean_zh.yaml`` on the real Chinese prose and ``jobs/clean.yaml`` on the
  English quickstart corpus, each copied (new ids) to ``--job-mb`` MB so that the steps' work, not
  a run's fixed costs, sets the figure, through ``llmray run --num-cpus 1``: MB/s per core from
  stats.json (input bytes / wall_s, Ray start-up apart), and their ratio.
* ``zh_convert``: OpenCC's own binding (the step's), and opencc-pyo3 / zhconv-rs when importable,
  on the classical essays: MB/s per core and characters that differ from OpenCC's output.

Writes ``zh.json`` to the output directory (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from llmray.config import parse_steps
from llmray.ops.base import FilterStep

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results"
#: Chinese HTML manuals of Debian packages (apt-get install debian-handbook debian-reference-zh-cn
#: gimp-help-zh-cn): CC-BY-SA / GPL / GFDL, read where installed, never shipped.
MANUALS = {"debian_handbook_zh_cn": "/usr/share/doc/debian-handbook/html/zh-CN/*.html",
           "debian_reference_zh_cn": "/usr/share/debian-reference/*.zh-cn.html",
           "gimp_help_zh_cn": "/usr/share/gimp/2.0/help/zh_CN/*.html"}
HAN = re.compile(r"[\u4e00-\u9fd5]")
JUNK_KINDS = ("repeated_lines", "symbol_soup", "keyword_list", "link_list", "number_strings", "nav_menu",
              "copied_paragraph", "prose_with_spam_tail", "word_salad")


def read_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def han_share(text: str) -> float:
    return len(HAN.findall(text)) / max(1, len(text))


def join_sections(sections: list[str], size: int = 1500) -> list[str]:
    """Consecutive sections joined (blank line between) until a document has ``size`` characters."""
    docs, cur = [], []
    for s in sections:
        cur.append(s)
        if sum(map(len, cur)) >= size:
            docs.append("\n\n".join(cur))
            cur = []
    if cur:
        docs.append("\n\n".join(cur))
    return docs


def manual_docs(paths: Sequence[Path], size: int = 1500) -> list[str]:
    """The main text of HTML pages (resiliparse), cut at line ends into documents of ~``size``
    characters; those mostly in Chinese."""
    from resiliparse.extract.html2text import extract_plain_text

    docs = []
    for path in paths:
        text = extract_plain_text(path.read_text(encoding="utf-8", errors="replace"), main_content=True,
                                  list_bullets=False, alt_texts=False, links=False)
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        docs += join_sections(lines, size)
    return [d.replace("\n\n", "\n") for d in docs if han_share(d) > 0.3 and len(d) >= size // 3]


def installed_manuals() -> dict[str, list[str]]:
    """Chinese manuals of Debian packages, when installed (measured here, never shipped)."""
    out = {}
    for name, pattern in MANUALS.items():
        paths = sorted(Path("/").glob(pattern.lstrip("/")))
        if paths:
            out[name] = manual_docs(paths)
    return {k: v for k, v in out.items() if v}


def real_corpora() -> dict[str, list[str]]:
    guwen = [d["text"] for d in read_jsonl(ROOT / "data/zh/guwenguanzhi.jsonl.gz")]
    kicad: dict[str, list[str]] = {}
    for d in read_jsonl(ROOT / "data/zh/kicad-zh.jsonl.gz"):
        if han_share(d["text"]) > 0.3:
            kicad.setdefault(d["manual"], []).append(d["text"])
    out = {"guwenguanzhi": guwen, "kicad_zh": [doc for manual in kicad.values() for doc in join_sections(manual)]}
    return {**out, **installed_manuals()}


def junk_corpus(real: list[str], per_kind: int, seed: int = 7) -> dict[str, list[str]]:
    """Seven kinds of junk, ``per_kind`` documents each (module docstring)."""
    from llmray.kernels.segment import _dictionary_bytes

    rng = random.Random(seed)
    words = [line.split(" ")[0] for line in _dictionary_bytes().decode().splitlines()]
    words = [w for w in words if HAN.fullmatch(w[:1] or "x")]
    lines = [line for doc in real for line in doc.split("\n") if 8 <= len(line) <= 80 and han_share(line) > 0.5]
    paragraphs = [line for doc in real for line in doc.split("\n") if len(line) >= 60 and han_share(line) > 0.5]
    symbols = list("★☆◆◇■□●○▲△※→←↑↓♪♥♦♣♠【】《》〈〉「」『』（）〔〕")
    symbols += list("！？。，、；：…—～·＋－×÷＝％＃＆＊＠¥$€£|/\\<>{}[]^_~")
    out: dict[str, list[str]] = {kind: [] for kind in JUNK_KINDS}
    for _ in range(per_kind):
        line = rng.choice(lines)
        out["repeated_lines"].append("\n".join([line] * rng.randint(8, 20) + rng.sample(lines, 2)))
        out["symbol_soup"].append("\n".join(
            "".join(rng.choice(symbols) if rng.random() < 0.7 else rng.choice(words)[:1]
                    for _ in range(rng.randint(20, 60))) for _ in range(rng.randint(5, 15))))
        sep = rng.choice(["、", "，", " ", "|", "\n", " - "])
        out["keyword_list"].append(rng.choice(["热门关键词：", "标签：", "相关搜索：", ""])
                                   + sep.join(rng.choice(words) for _ in range(rng.randint(60, 200))))
        out["link_list"].append("\n".join(
            f"{rng.choice(words)}{rng.choice(words)} http://www.{rng.choice(['example', 'site', 'web'])}"
            f"{rng.randint(1, 99)}.com/{rng.randint(1000, 99999)}.html" for _ in range(rng.randint(15, 40))))
        out["number_strings"].append("\n".join(
            f"{rng.choice(['电话', '编号', '价格', '订单', ''])} 1{rng.randint(3000000000, 9999999999)} "
            f"￥{rng.randint(1, 9999)}.{rng.randint(0, 99):02d} {rng.randint(2000, 2025)}-{rng.randint(1, 12):02d}-"
            f"{rng.randint(1, 28):02d}" for _ in range(rng.randint(15, 40))))
        menu = [rng.choice(words) for _ in range(rng.randint(5, 12))]
        out["nav_menu"].append("\n".join([" | ".join(menu)] + [rng.choice(words) for _ in range(rng.randint(20, 50))]
                                         + ["版权所有 © " + rng.choice(words) + " 保留所有权利"]))
        paragraph = rng.choice(paragraphs)
        out["copied_paragraph"].append("\n\n".join([paragraph] * rng.randint(3, 6)))
        # A short real text followed by twice as much keyword and link spam.
        head = rng.choice(paragraphs)
        tail = []
        while sum(map(len, tail)) < 2 * len(head):
            tail.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) + " "
                        + f"http://www.{rng.choice(words)}.cn/{rng.randint(100, 9999)}")
        out["prose_with_spam_tail"].append("\n".join([head, *tail]))
        # Word salad: the words of real prose in random order (no heuristic here is meant to catch it).
        salad = re.findall(r"[\u4e00-\u9fd5]+|[，。、；：？！]", "".join(rng.sample(paragraphs, 4)))
        rng.shuffle(salad)
        out["word_salad"].append("".join(salad))
    return out


def cpu_seconds(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def interior_boundaries(text: str, spans: list[tuple[int, int]]) -> set[int]:
    """Word boundaries (character offsets) that fall between two Han characters."""
    out = set()
    for a, b in spans:
        for p in (a, b):
            if 0 < p < len(text) and HAN.match(text[p - 1]) and HAN.match(text[p]):
                out.add(p)
    return out


def spans_of(text: str, words: Sequence[str]) -> list[tuple[int, int]]:
    spans, at = [], 0
    for w in words:
        if not w.strip():
            at += len(w)
            continue
        i = text.find(w, at)
        if i < 0:
            continue
        spans.append((i, i + len(w)))
        at = i + len(w)
    return spans


def segmentation(docs: list[str], repeats: int) -> dict[str, Any]:
    import jieba

    from llmray.kernels.text import split_tokens, word_stats

    jieba.setLogLevel(60)
    jieba.lcut("预热")
    column = pa.array(docs)
    word_stats(column.slice(0, 4), segmentation="jieba")
    word_stats(column.slice(0, 4), segmentation="characters")
    mb = sum(len(d.encode()) for d in docs) / 1e6
    speed = {f"llmray_{mode}": round(mb / cpu_seconds(lambda m=mode: word_stats(column, segmentation=m), repeats), 2)
             for mode in ("spaces", "jieba", "characters")}
    cutters: dict[str, Callable[[str], list[str]]] = {"jieba": jieba.lcut}
    try:
        import rjieba

        rjieba.cut("预热")
        cutters["rjieba_cut"] = rjieba.cut
        speed["rjieba_tokenize"] = round(mb / cpu_seconds(lambda: [rjieba.tokenize(d) for d in docs], repeats), 2)
    except ImportError:
        pass
    try:
        import jieba_fast_dat

        jieba_fast_dat.setLogLevel(60)
        jieba_fast_dat.lcut("预热")
        cutters["jieba_fast_dat"] = jieba_fast_dat.lcut
    except ImportError:
        pass
    for name, cut in cutters.items():
        speed[name] = round(mb / cpu_seconds(lambda c=cut: [c(d) for d in docs], 1 if name == "jieba" else repeats), 2)
    reference = [interior_boundaries(d, spans_of(d, jieba.lcut(d))) for d in docs]
    ours = {"llmray_jieba": lambda d: [t for t, _ in split_tokens(d, "jieba")]}
    ours.update({k: v for k, v in cutters.items() if k != "jieba"})
    agreement = {}
    for name, cut in ours.items():
        tp = fp = fn = same = 0
        for doc, ref in zip(docs, reference, strict=True):
            got = interior_boundaries(doc, spans_of(doc, cut(doc)))
            tp, fp, fn, same = tp + len(ref & got), fp + len(got - ref), fn + len(ref - got), same + (ref == got)
        agreement[name] = {"precision": round(tp / max(1, tp + fp), 5), "recall": round(tp / max(1, tp + fn), 5),
                           "docs_identical": round(same / len(docs), 4)}
    return {"docs": len(docs), "text_mb": round(mb, 3), "mb_per_s_per_core_cpu": speed,
            "agreement_with_jieba": agreement}


def clean_zh_steps() -> list:
    import yaml

    spec = yaml.safe_load((ROOT / "jobs/clean_zh.yaml").read_text(encoding="utf-8"))
    return parse_steps(spec["steps"])


def run_steps(steps: list, table: pa.Table) -> tuple[pa.Table, Counter, dict[str, int]]:
    """(kept rows, reasons of the dropped, id -> reason)."""
    reasons: Counter = Counter()
    dropped_by: dict[str, str] = {}
    for step in steps:
        step.setup()
        if isinstance(step, FilterStep):
            kept, dropped, codes = step.split(table)
            names = step.reason_names()
            for row_id, code in zip(dropped.column("id").to_pylist(), codes.tolist(), strict=True):
                dropped_by[row_id] = names[code]
                reasons[names[code]] += 1
            table = kept
        else:
            table = step.map_rows(table)[0]
    return table, reasons, dropped_by


def accuracy(real: dict[str, list[str]], junk: dict[str, list[str]]) -> dict[str, Any]:
    ids, texts, groups = [], [], []
    for kind, docs in [*real.items(), *junk.items()]:
        for i, text in enumerate(docs):
            ids.append(f"{kind}-{i}")
            texts.append(text)
            groups.append(kind)
    table = pa.table({"id": ids, "text": texts})
    _, _, dropped_by = run_steps(clean_zh_steps(), table)
    out: dict[str, Any] = {"real_kept": {}, "junk_dropped": {}, "reasons": {}}
    for kind in [*real, *junk]:
        members = [i for i, g in zip(ids, groups, strict=True) if g == kind]
        dropped = [dropped_by[i] for i in members if i in dropped_by]
        share = len(dropped) / len(members)
        if kind in real:
            out["real_kept"][kind] = {"docs": len(members), "kept": round(1 - share, 4)}
        else:
            out["junk_dropped"][kind] = {"docs": len(members), "dropped": round(share, 4)}
        out["reasons"][kind] = dict(Counter(dropped).most_common())
    n_real = sum(len(v) for v in real.values())
    n_junk = sum(len(v) for v in junk.values())
    kept_real = sum(1 for i, g in zip(ids, groups, strict=True) if g in real and i not in dropped_by)
    dropped_junk = sum(1 for i, g in zip(ids, groups, strict=True) if g in junk and i in dropped_by)
    out["real_kept_all"] = round(kept_real / n_real, 4)
    out["junk_dropped_all"] = round(dropped_junk / n_junk, 4)
    out["aims"] = {"real_kept_at_least": 0.9, "junk_dropped_at_least": 0.8,
                   "met": kept_real / n_real >= 0.9 and dropped_junk / n_junk >= 0.8}
    return out


def filters_speed(zh_docs: list[str], en_docs: list[str], repeats: int) -> dict[str, Any]:
    """The quality steps alone (no reading, no Ray), each on every document, CPU time."""
    import yaml

    from llmray.ops.filters.language import Language

    out = {}
    for name, job, docs, lang in (("zh", "jobs/clean_zh.yaml", zh_docs, "zh"),
                                  ("en", "jobs/clean.yaml", en_docs, "en")):
        spec = yaml.safe_load((ROOT / job).read_text(encoding="utf-8"))["steps"]
        steps = [s for s in parse_steps(spec) if isinstance(s, FilterStep) and not isinstance(s, Language)]
        table = pa.table({"id": [str(i) for i in range(len(docs))], "text": docs, "language": [lang] * len(docs)})
        for s in steps:
            s.setup()
            s.evaluate(table.slice(0, 8))
        mb = sum(len(d.encode()) for d in docs) / 1e6
        seconds = cpu_seconds(lambda st=steps, t=table: [st_.evaluate(t) for st_ in st], repeats)
        out[name] = {"docs": len(docs), "text_mb": round(mb, 3), "steps": [s.name for s in steps],
                     "mb_per_s_per_core_cpu": round(mb / seconds, 2)}
    out["en_over_zh"] = round(out["en"]["mb_per_s_per_core_cpu"] / out["zh"]["mb_per_s_per_core_cpu"], 2)
    return out


def copies(docs: list[str], path: Path, mb: float) -> Path:
    """``docs`` written over and over (ids ``c<copy>-<i>``) until the file holds ``mb`` MB of text."""
    size, copy = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while size < mb * 1e6:
            for i, text in enumerate(docs):
                f.write(json.dumps({"id": f"c{copy}-{i}", "text": text}, ensure_ascii=False) + "\n")
                size += len(text.encode())
            copy += 1
    return path


def job_speed(zh_docs: list[str], en_docs: list[str], work: Path, mb: float, repeats: int = 2) -> dict[str, Any]:
    """Both jobs through the runner on one CPU (module docstring), ``repeats`` runs each, alternating
    (the machine may be shared): the figures are the fastest run's."""
    llmray = Path(sys.executable).parent / "llmray"
    out: dict[str, Any] = {"job_mb": mb, "runs_each": repeats}
    zh_file = copies(zh_docs, work / "zh.jsonl", mb)
    en_file = copies(en_docs, work / "en.jsonl", mb)
    for _ in range(repeats):
        for name, job, path in (("zh", "jobs/clean_zh.yaml", zh_file), ("en", "jobs/clean.yaml", en_file)):
            if "error" in out.get(name, {}):
                continue
            target = work / f"out_{name}"
            cmd = [str(llmray), "run", str(ROOT / job), "--input", str(path), "--output", str(target), "--overwrite",
                   "--quiet", "--num-cpus", "1"]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                out[name] = {"error": done.stderr[-500:]}
                continue
            stats = json.loads((target / "stats.json").read_text())
            run = {"docs_in": stats["docs_in"], "docs_out": stats["docs_out"],
                   "mb_in": round(stats["bytes_in"] / 1e6, 2), "wall_s": stats["wall_s"],
                   "startup_s": stats["startup_s"], "load_avg_1m": round(__import__("os").getloadavg()[0], 2),
                   "mb_per_s_per_core": round(stats["bytes_in"] / 1e6 / stats["wall_s"], 3)}
            walls = [*out.get(name, {}).get("wall_s_runs", []), stats["wall_s"]]
            if name not in out or run["wall_s"] < out[name]["wall_s"]:
                out[name] = run
            out[name]["wall_s_runs"] = walls
    if "error" not in out.get("zh", {"error": 1}) and "error" not in out.get("en", {"error": 1}):
        out["en_over_zh"] = round(out["en"]["mb_per_s_per_core"] / out["zh"]["mb_per_s_per_core"], 2)
        out["aim_within_2x"] = out["en_over_zh"] <= 2.0
    return out


def zh_convert_speed(docs: list[str], repeats: int) -> dict[str, Any]:
    from llmray.ops.clean.zh_convert import convert

    column = pa.array(docs)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    convert(column.slice(0, 2))
    reference = convert(column)[0].to_pylist()
    out = {"docs": len(docs), "text_mb": round(mb, 3),
           "opencc_step": round(mb / cpu_seconds(lambda: convert(column), repeats), 2)}
    peers: dict[str, Callable[[str], str]] = {}
    try:
        import opencc_pyo3

        peers["opencc_pyo3"] = opencc_pyo3.OpenCC("t2s").convert
    except ImportError:
        pass
    try:
        import zhconv_rs

        peers["zhconv_rs"] = lambda s: zhconv_rs.zhconv(s, "zh-hans")
    except ImportError:
        pass
    for name, fn in peers.items():
        joined = "\x1e".join(docs)
        out[name] = round(mb / cpu_seconds(lambda f=fn, j=joined: f(j).split("\x1e"), repeats), 2)
        got = fn(joined).split("\x1e")
        out[f"{name}_chars_differing"] = sum(sum(a != b for a, b in zip(x, y, strict=False))
                                             for x, y in zip(got, reference, strict=True))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--peers-path", type=Path, help="a folder with rjieba, jieba_fast_dat, opencc_pyo3, zhconv_rs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--junk-per-kind", type=int, default=100)
    parser.add_argument("--job-mb", type=float, default=24.0, help="MB of text for each job run")
    parser.add_argument("--skip-jobs", action="store_true", help="leave out the runs through llmray run")
    args = parser.parse_args(argv)
    if args.peers_path:
        sys.path.append(str(args.peers_path))
    real = real_corpora()
    all_real = [d for docs in real.values() for d in docs]
    junk = junk_corpus(all_real, args.junk_per_kind)
    modern = [d for name, docs in real.items() if name != "guwenguanzhi" for d in docs]
    en = [d["text"] for p in sorted((ROOT / "data/quickstart").glob("*.jsonl.gz")) for d in read_jsonl(p)]
    result: dict[str, Any] = {
        "corpora": {"real": {k: len(v) for k, v in real.items()}, "junk": {k: len(v) for k, v in junk.items()},
                    "manuals_installed": sorted(set(real) - {"guwenguanzhi", "kicad_zh"})},
        "load_avg": list(np.round(__import__("os").getloadavg(), 2)),
        "segmentation": segmentation(modern + real["guwenguanzhi"], args.repeats),
        "accuracy": accuracy(real, junk),
        "filters": filters_speed(all_real, en, args.repeats),
        "zh_convert": zh_convert_speed(real["guwenguanzhi"], args.repeats),
    }
    if not args.skip_jobs:
        with tempfile.TemporaryDirectory() as work:
            result["jobs"] = job_speed(all_real, en, Path(work), args.job_mb)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "zh.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: result[k] for k in ("accuracy", "filters")}, indent=1, ensure_ascii=False)[:3000])


if __name__ == "__main__":
    main()
