"""Build data/sentiment/{train,test}.jsonl.gz: movie-review sentences labelled positive / negative.

Source: the PyPI source distribution vaderSentiment 3.3.2 (MIT), whose
``additional_resources/hutto_ICWSM_2014.tar.gz`` holds the human-rated sentences of the VADER paper
(Hutto & Gilbert, ICWSM 2014). ``movieReviewSnippets_GroundTruth.txt`` has 10,605 movie-review
sentences, each with the mean of 20 raters' valence (-4 .. +4). A sentence is ``positive`` when that
mean is at least +0.5 and ``negative`` when it is at most -0.5; the near-neutral ones in between are
left out. Exact duplicate texts are removed before a balanced random sample (seed 13) is split, so no
text sits on both sides. Provenance and licence: data/sentiment/README.md.

    pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d /tmp/vader
    python data/sentiment/build.py /tmp/vader/vaderSentiment-3.3.2.tar.gz
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import re
import tarfile
from pathlib import Path

MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
RESOURCES = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
MARGIN = 0.5
TRAIN_PER_LABEL, TEST_PER_LABEL = 1500, 500
SEED = 13


def sentences(sdist: Path) -> list[tuple[str, float, str]]:
    """(line id, mean valence, text) of every rated sentence in the sdist."""
    with tarfile.open(sdist) as outer:
        inner_bytes = outer.extractfile(RESOURCES).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        raw = inner.extractfile(MEMBER).read().decode("utf-8")
    rows = []
    for line in raw.splitlines():
        if line.strip():
            number, valence, text = line.split("\t", 2)
            rows.append((number, float(valence), re.sub(r"\s+", " ", text).strip()))
    return rows


def write(path: Path, rows: list[dict]) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sdist", type=Path, help="vaderSentiment-3.3.2.tar.gz (the PyPI source distribution)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    seen: set[str] = set()
    by_label: dict[str, list[dict]] = {"negative": [], "positive": []}
    for number, valence, text in sentences(args.sdist):
        if abs(valence) < MARGIN or not text or text in seen:
            continue
        seen.add(text)
        label = "positive" if valence > 0 else "negative"
        by_label[label].append({"id": f"movie/{number}", "text": text, "label": label, "valence": valence})
    rng = random.Random(SEED)
    train, test = [], []
    for label in sorted(by_label):
        rows = rng.sample(by_label[label], TRAIN_PER_LABEL + TEST_PER_LABEL)
        test += rows[:TEST_PER_LABEL]
        train += rows[TEST_PER_LABEL:]
    rng.shuffle(train)
    rng.shuffle(test)
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out / "train.jsonl.gz", train)
    write(args.out / "test.jsonl.gz", test)
    print(f"train {len(train)}  test {len(test)}  (of {sum(map(len, by_label.values()))} after the margin)")


if __name__ == "__main__":
    main()
