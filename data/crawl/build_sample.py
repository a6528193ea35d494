"""Rebuild data/crawl/sample.warc.gz: a small crawl of pages written for this project (CC0).

Every page, URL and text here was written for llmray; the domains are under the reserved
``.example`` names. The file looks like a Common Crawl WARC (warcinfo, then a request and a
response record per page) and holds the cases the crawl job must handle: boilerplate around
articles, a page in windows-1252, gzip and chunked HTTP bodies, a French page, blocked domains and
URL words, a page without main text and an image.

    python data/crawl/build_sample.py
"""

from __future__ import annotations

import gzip
import io
import uuid
from pathlib import Path

from fastwarc.warc import WarcRecord, WarcRecordType

HERE = Path(__file__).resolve().parent
DATE = "2024-05-18T01:58:10Z"
REQUEST, RESPONSE = "application/http; msgtype=request", "application/http; msgtype=response"

ARTICLES = {
    "https://news.riverside.example/2024/05/community-garden-opens": (
        "Community garden opens on the old rail yard",
        "After three years of planning, the Riverside community garden opened its gates on Saturday "
        "morning. Forty raised beds now stand where freight wagons once waited, each one rented for a "
        "small yearly fee to a family from the neighbourhood.",
        "Volunteers spent the winter clearing gravel and bringing in soil from a farm outside town. "
        "The city paid for the fence and the water line, while a local hardware shop gave tools for the "
        "shared shed. Children from the primary school planted the first row of sunflowers along the "
        "southern fence.",
        "Plots are still available for the autumn season. Anyone who wants one can write to the "
        "organisers at garden@riverside.example or visit the open day on the first Sunday of each month.",
    ),
    "https://blog.tinkerbench.example/bicycle-chain-maintenance": (
        "How to keep a bicycle chain running smoothly",
        "A clean chain makes a bicycle quieter, faster and cheaper to run. Most riders only notice the "
        "chain when it starts to squeak, but by then the grit has already worn the teeth of the gears.",
        "Start by wiping the chain with a dry rag while turning the pedals backwards. If the rag comes "
        "away black, use a brush and a little degreaser, then rinse and let the chain dry completely. "
        "Apply one drop of oil to each roller, wait a few minutes, and wipe off whatever remains on the "
        "outside of the links.",
        "Measure the chain every few months with a simple gauge. Replacing a stretched chain early is far "
        "cheaper than replacing the cassette and the chainrings that it would otherwise wear out.",
    ),
    "https://kitchen.example.org/recipes/sourdough-starter": (
        "Making a sourdough starter at home",
        "A sourdough starter is nothing more than flour and water left to ferment. Wild yeasts and "
        "bacteria from the flour do the work; the baker’s job is to feed them on a regular schedule.",
        "Mix fifty grams of wholemeal flour with fifty grams of lukewarm water in a clean jar. Cover it "
        "loosely and leave it somewhere warm. Each day, discard half of the mixture and feed it again "
        "with the same amounts of flour and water. After about a week the starter should double in size "
        "within a few hours of feeding and smell pleasantly sour, a little like a café au lait.",
        "Once it is lively, keep the starter in the fridge and feed it once a week. Take it out the "
        "evening before you bake so that it has time to wake up.",
    ),
    "https://library.townhall.example/news/summer-reading": (
        "Summer reading challenge returns to the town library",
        "The town library invites readers of all ages to its summer reading challenge. Participants "
        "collect a stamp for every book they finish and can swap their cards for small prizes at the "
        "front desk.",
        "This year the library has added audiobooks and graphic novels to the list, so that everyone "
        "can take part in the way that suits them best. Volunteers will run storytelling mornings for "
        "younger children every Wednesday in July and August.",
        "Registration opens on the first of June. Reading logs are available at the library and on its "
        "notice board, and the challenge ends with a picnic in the park at the end of the holidays.",
    ),
    "https://birds.example.net/field-notes/spring-migration": (
        "Field notes: the spring migration along the estuary",
        "The first swallows arrived over the estuary in the second week of April, a few days later than "
        "last year. By the end of the month the reed beds were full of warblers singing from dawn.",
        "Our weekly counts along the sea wall recorded more than sixty species in May. The highlight was "
        "a small group of spoonbills feeding at low tide, which stayed for almost a fortnight before "
        "moving north.",
        "Counts continue every Saturday morning. Beginners are welcome; bring binoculars if you have "
        "them, and warm clothes, because the wind off the water can be cold even in late spring.",
    ),
    "https://journal.example.fr/jardin-partage": (
        "Un jardin partagé ouvre ses portes",
        "Après trois ans de travaux, le jardin partagé du quartier a ouvert ses portes samedi matin. "
        "Quarante parcelles sont désormais cultivées par les familles du voisinage.",
        "Les bénévoles ont préparé la terre pendant tout l'hiver et les enfants de l'école ont planté "
        "la première rangée de tournesols le long de la clôture.",
        "Des parcelles sont encore disponibles pour la saison d'automne ; il suffit de s'inscrire à la "
        "mairie.",
    ),
    "https://www.casino-bonus.example/welcome": (
        "Welcome bonus",
        "Claim your welcome bonus today and play more than a thousand games with free spins every day.",
        "New players receive extra credit on their first deposit, and the bonus can be used on every "
        "table and every machine in the lobby, at any hour of the day or night.",
        "Sign up now to receive the offer before it expires at the end of the week.",
    ),
    "https://deals.adfarm.example/offers/today": (
        "Today's offers",
        "Thousands of products are on sale today with discounts on every item in the shop and fast "
        "delivery to your door within two working days.",
        "Compare prices, read reviews from other customers and pick the offer that suits you best. "
        "Prices change every hour, so come back often to find new deals.",
        "Subscribe to the newsletter to hear about new offers before anybody else does.",
    ),
}

NAV_ONLY = "https://portal.riverside.example/login"
IMAGE = "https://news.riverside.example/images/garden.png"
#: Bodies not plain UTF-8 on the wire: (charset, Content-Encoding, chunked) per URL.
WIRE = {
    "https://kitchen.example.org/recipes/sourdough-starter": ("windows-1252", None, False),
    "https://library.townhall.example/news/summer-reading": ("utf-8", "gzip", True),
}


def page(title: str, paragraphs: tuple[str, ...], charset: str) -> str:
    """An HTML page with the usual boilerplate around the article: menu, cookie note, footer."""
    body = "\n".join(f"      <p>{p}</p>" for p in paragraphs)
    article = f"    <article>\n      <h1>{title}</h1>\n{body}\n    </article>\n" if paragraphs else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="{charset}"><title>{title}</title></head>
<body>
  <header><nav><a href="/">Home</a> | <a href="/news">News</a> | <a href="/events">Events</a> |
    <a href="/contact">Contact</a> | <a href="/login">Log in</a></nav></header>
  <div class="cookie-banner">We use cookies to remember your settings. <button>Accept</button></div>
  <main>
{article}  </main>
  <aside><h2>Most read</h2><ul><li><a href="/a">Parking changes</a></li><li><a href="/b">Market hours</a></li>
  </ul></aside>
  <footer>Copyright 2024. All rights reserved.
    <a href="/privacy">Privacy</a> | <a href="/terms">Terms</a></footer>
</body>
</html>
"""


def http_response(body: bytes, content_type: str, encoding: str | None = None,
                  chunked: bool = False) -> bytes:
    headers = [b"HTTP/1.1 200 OK", b"Content-Type: " + content_type.encode(), b"Server: sample"]
    if encoding == "gzip":
        body = gzip.compress(body, mtime=0)
        headers.append(b"Content-Encoding: gzip")
    if chunked:
        body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 256]), body[i:i + 256])
                        for i in range(0, len(body), 256)) + b"0\r\n\r\n"
        headers.append(b"Transfer-Encoding: chunked")
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


def record(kind: WarcRecordType, content: bytes, content_type: str, url: str | None, n: int) -> WarcRecord:
    rec = WarcRecord()
    rec.init_headers(kind, f"uuid:{uuid.UUID(int=n)}".encode())
    rec.headers["WARC-Date"] = DATE
    if url:
        rec.headers["WARC-Target-URI"] = url
    rec.headers["Content-Type"] = content_type
    rec.set_bytes_content(content)
    return rec


def records() -> list[WarcRecord]:
    info = b"software: llmray data/crawl/build_sample.py\r\nformat: WARC File Format 1.1\r\n"
    out = [record(WarcRecordType.warcinfo, info, "application/warc-fields", None, 1)]
    pages = {url: page(title, tuple(paras), WIRE.get(url, ("utf-8",))[0])
             for url, (title, *paras) in ARTICLES.items()}
    pages[NAV_ONLY] = page("Log in", (), "utf-8")
    for url, html in pages.items():
        charset, encoding, chunked = WIRE.get(url, ("utf-8", None, False))
        _, _, host, path = url.split("/", 3)
        request = f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sample\r\n\r\n".encode()
        out.append(record(WarcRecordType.request, request, REQUEST, url, len(out) + 1))
        body = http_response(html.encode(charset), f"text/html; charset={charset}", encoding, chunked)
        out.append(record(WarcRecordType.response, body, RESPONSE, url, len(out) + 1))
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    image = http_response(png, "image/png")
    out.append(record(WarcRecordType.response, image, RESPONSE, IMAGE, len(out) + 1))
    return out


def main(path: Path = HERE / "sample.warc.gz") -> None:
    """One gzip member per record, as crawlers write them (and byte for byte the same on every run)."""
    with open(path, "wb") as f:
        for rec in records():
            buffer = io.BytesIO()
            rec.write(buffer)
            f.write(gzip.compress(buffer.getvalue(), mtime=0))
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
