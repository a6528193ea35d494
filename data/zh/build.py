"""Rebuild the Chinese corpora of this folder from the two packages they come from (README.md).

    npm pack chinese-poetry@2.0.1 && tar xzf chinese-poetry-2.0.1.tgz           # -> package/
    apt-get download kicad-doc-zh=6.0.11+dfsg-1 && dpkg-deb -x kicad-doc-zh_*.deb kicad
    python data/zh/build.py --poetry package --kicad kicad --out data/zh

No network here: the two commands above fetch the packages from the npm registry and Debian.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path


def guwenguanzhi(package: Path) -> list[dict]:
    """古文觀止 (1695): 222 classical essays, one document each: title line, then its paragraphs."""
    book = json.loads((package / "dist/mengxue/guwenguanzhi.json").read_text(encoding="utf-8"))
    docs = []
    for v, volume in enumerate(book["content"], 1):
        for a, essay in enumerate(volume["content"], 1):
            paragraphs = [p.strip() for p in essay["paragraphs"] if p.strip()]
            docs.append({"id": f"guwen-{v:02d}-{a:02d}", "text": "\n".join([essay["chapter"].strip(), *paragraphs]),
                         "title": essay["chapter"].strip(), "author": (essay.get("author") or "").strip(),
                         "work": (essay.get("source") or "").strip(), "volume": volume["title"]})
    return docs


def kicad(root: Path) -> list[dict]:
    """The KiCad 6 manuals in Chinese, one document per section (h2/h3): its title, then its
    paragraphs. Partly translated: some sections are still English."""
    import lxml.html

    docs = []
    for path in sorted((root / "usr/share/doc/kicad/help/zh").glob("*.html")):
        page = lxml.html.parse(str(path)).getroot()
        for bad in page.xpath("//pre|//script|//style|//div[@id='toc']|//div[@id='footer']|//table"):
            bad.drop_tree()
        sections: list[list[str]] = []
        for element in page.iter():
            if element.tag in ("h2", "h3"):
                sections.append([re.sub(r"\s+", " ", element.text_content()).strip()])
            elif element.tag == "p" and sections:
                line = re.sub(r"\s+", " ", element.text_content()).strip()
                if line:
                    sections[-1].append(line)
        kept = [section for section in sections if len(section) > 1]
        docs += [{"id": f"kicad-{path.stem}-{n:03d}", "text": "\n".join(section), "manual": path.stem,
                  "title": section[0]} for n, section in enumerate(kept, 1)]
    return docs


def write(path: Path, docs: list[dict]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as f:
        for doc in docs:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poetry", type=Path, required=True, help="the unpacked chinese-poetry npm package")
    parser.add_argument("--kicad", type=Path, required=True, help="the unpacked kicad-doc-zh Debian package")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out / "guwenguanzhi.jsonl.gz", guwenguanzhi(args.poetry))
    write(args.out / "kicad-zh.jsonl.gz", kicad(args.kicad))


if __name__ == "__main__":
    main()
