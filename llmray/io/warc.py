"""Web-crawl readers: WARC and WET records, and HTML files, as documents with url, date and content type.

WARC ``response``/``resource`` records give raw HTML (``html_to_text`` extracts the main text later);
WET ``conversion`` records give the crawler's plain text. Each document's ``extra`` holds ``url``,
``date`` (the WARC-Date as written) and ``content_type`` (MIME type only): list them in
``input.keep_fields`` to carry them as columns. Records that hold no page (warcinfo, request,
metadata, revisit, DNS lookups) are skipped; every page record is read, dropped as too large or
quarantined with its reason (not HTML, truncated, undecodable), never lost silently.

fastwarc parses the records; decompression is left to fsspec (as for JSONL) because Python's gzip
raises on a truncated file where fastwarc's own decoder would end quietly.
"""

from __future__ import annotations

import codecs
import functools
import io
import re
from collections.abc import Iterator
from typing import IO, Any

from fastwarc.stream_io import BrotliReader, ChunkedReader, GzipReader, ZstdReader
from fastwarc.warc import ArchiveIterator, HeaderMap, WarcRecord, WarcRecordType
from resiliparse.parse.encoding import detect_encoding, map_encoding_to_html5

from llmray.io.batch import BatchBuilder, Piece, ReadBatch
from llmray.io.specs import InputSpec

HTML_TYPES = ("text/html", "application/xhtml+xml")
#: Without a content type, text is HTML when it opens with one of these tags (WHATWG MIME sniffing).
HTML_TAGS = "!doctype html|html|head|script|iframe|h1|div|font|table|a|style|title|b|body|br|p|!--"
_LOOKS_HTML = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<(?:" + HTML_TAGS.encode() + rb")[\s>/]", re.IGNORECASE)
_PAGES = WarcRecordType.response | WarcRecordType.resource | WarcRecordType.conversion
#: A decoded page may have at most this share of replacement or control characters (binary data,
#: or text in an encoding we could not find, has many more).
MAX_BAD_CHARS = 0.01
_BAD_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\ufffd]")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_READ_ERRORS = (EOFError, OSError, ValueError)
#: Readers that undo an HTTP transfer or content encoding ("deflate" is zlib-wrapped in practice).
_DECODERS: dict[str, Any] = {
    "chunked": ChunkedReader, "gzip": GzipReader, "x-gzip": GzipReader,
    "deflate": functools.partial(GzipReader, zlib=True), "br": BrotliReader, "zstd": ZstdReader,
}


def read_warc(stream: IO[bytes], piece: Piece, spec: InputSpec, out: BatchBuilder) -> Iterator[ReadBatch]:
    """Stream the page records of a WARC or WET file (plain or compressed) as documents."""
    limit = int(spec.max_doc_mb * (1 << 20))
    number = pages = 0
    # HTTP headers are parsed per record, leniently: some crawls (ClueWeb) end their lines in LF.
    records = ArchiveIterator(_Salvaging(stream), parse_http=False, stream_detect=False)
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except _READ_ERRORS as exc:
            problem = f"file ends early or is corrupt after record {number}" if number else "not WARC"
            out.quarantine(number + 1, f"{problem} ({exc}); the rest of it is lost", b"")
            return
        number += 1
        if record.headers.get("Content-Length") is None:
            out.quarantine(number, "record header is incomplete (no Content-Length): the file is "
                                   "truncated or corrupt here; the rest of it is lost", b"")
            return
        if record.record_type & _PAGES and not _is_dns(record):
            pages += 1
            try:
                _read_record(record, number, limit, out)
            except EOFError as exc:
                out.quarantine(number, f"record is truncated: file ends early ({exc})", b"")
                return
            except (OSError, ValueError) as exc:
                out.quarantine(number, f"record cannot be read ({_short(exc)})", b"")
        elif record.record_type == WarcRecordType.continuation:
            pages += 1
            out.quarantine(number, "segmented records (WARC continuation) are not supported", b"")
        yield from out.flush()
    if number == 0:
        out.quarantine(None, "empty file", b"")
    elif pages == 0:
        # A note, not a lost document: e.g. a WAT file (metadata only) read as WARC.
        out.quarantine(None, f"no page records (response, resource or conversion) among {number} records",
                       b"", rows=0)


def _is_dns(record: WarcRecord) -> bool:
    """Heritrix stores each DNS lookup as a response record: not a page."""
    return (record.headers.get("WARC-Target-URI") or "").startswith("dns:")


def _read_record(record: WarcRecord, number: int, limit: int, out: BatchBuilder) -> None:
    """Add one page record as a document, or quarantine it saying why it is not one."""
    record_id = (record.record_id or "").strip("<>")
    doc_id = record_id or out.derived_id(number)
    url = record.headers.get("WARC-Target-URI")
    where = f"{record_id or 'record'} ({url})"
    if record.is_http:
        record.parse_http(auto_decode="none", quirks_mode=True)
        content_type, charset = record.http_content_type, record.http_charset
    else:
        declared = record.headers.get("Content-Type") or ""
        content_type = declared.split(";", 1)[0].strip().lower() or None
        match = _CHARSET.search(declared)
        charset = match.group(1) if match else None
    size = record.content_length
    if size > limit:
        out.drop_too_large(doc_id, size)
        return
    body = record.reader.read()
    if len(body) < size:
        out.quarantine(number, f"{where}: record is truncated ({len(body)} of {size} bytes)", body)
        return
    payload, undo_error = _undo_encodings(body, record.http_headers) if record.is_http else (body, None)
    if content_type is None and _LOOKS_HTML.match(payload[:1024]):
        content_type = "text/html"
    is_text = content_type in HTML_TYPES or (content_type == "text/plain"
                                             and record.record_type == WarcRecordType.conversion)
    if not is_text:
        out.quarantine(number, f"{where}: not an HTML page (content type {content_type}); skipped", b"")
        return
    text, why = decode(payload, charset)
    if text is None:
        out.quarantine(number, f"{where}: {undo_error or why}", body)
        return
    out.add(doc_id, text, {"url": url, "date": record.headers.get("WARC-Date"), "content_type": content_type})


def _undo_encodings(body: bytes, headers: HeaderMap) -> tuple[bytes, str | None]:
    """The HTTP body with its transfer and content encodings undone, or the body as stored and why not.

    A failure is not final: some crawls (ClueWeb) stored bodies already decoded under their original
    headers, so the caller keeps the stored body when it reads as text.
    """
    layers = ["chunked"] if "chunked" in (headers.get("Transfer-Encoding") or "").lower() else []
    layers += [e.strip().lower() for e in reversed((headers.get("Content-Encoding") or "").split(","))
               if e.strip().lower() not in ("", "identity")]
    if not layers:
        return body, None
    unknown = [e for e in layers if e not in _DECODERS]
    if unknown:
        return body, f"unknown content encoding {unknown[0]!r}"
    reader: Any = io.BytesIO(body)
    try:
        for encoding in layers:
            reader = _DECODERS[encoding](reader)
        return reader.read(), None
    except OSError as exc:
        return body, f"payload cannot be decoded ({'+'.join(layers)}: {_short(exc)})"


def _short(exc: Exception) -> str:
    """An error message cut to a readable length (some quote the whole payload)."""
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


class _Salvaging:
    """Hands fastwarc the bytes a failing stream gave before its error, and the error on the next read.

    Python's decompressors raise at the cut of a truncated file and drop what that read call had
    decoded; fastwarc reads 64 KiB at a time, so the complete records just before the cut would be
    lost with it. Reading in the stream's own steps (``read1``) keeps them.
    """

    def __init__(self, stream: IO[bytes]):
        self.stream, self.position, self.error = stream, 0, None
        self.step = getattr(stream, "read1", stream.read)

    def read(self, size: int = -1) -> bytes:
        if self.error is not None:
            raise self.error
        parts, wanted = [], size if size >= 0 else 1 << 62
        try:
            while wanted > 0 and (part := self.step(min(wanted, 1 << 16))):
                parts.append(part)
                wanted -= len(part)
        except _READ_ERRORS as exc:
            if not parts:
                raise
            self.error = exc
        data = b"".join(parts)
        self.position += len(data)
        return data

    def tell(self) -> int:
        return self.position


def read_html(stream: IO[bytes], piece: Piece, spec: InputSpec, out: BatchBuilder) -> Iterator[ReadBatch]:
    """One HTML file, one document: its raw HTML, decoded as a browser would, for ``html_to_text``."""
    limit = int(spec.max_doc_mb * (1 << 20))
    try:
        data = stream.read(limit + 1)
        if len(data) > limit:
            out.drop_too_large(piece.name, len(data) + _remaining(stream))
            return
    except _READ_ERRORS as exc:
        out.quarantine(None, f"file ends early or is corrupt ({exc})", b"")
        return
    if not data:
        out.quarantine(None, "empty file", b"")
        return
    text, why = decode(data, None)
    if text is None:
        out.quarantine(None, why, data)
        return
    out.add(piece.name, text, {"content_type": "text/html"})
    yield from out.flush()


def _remaining(stream: IO[bytes]) -> int:
    """Bytes left in a stream, read in blocks so that a huge file is never held whole."""
    size = 0
    while block := stream.read(8 << 20):
        size += len(block)
    return size


def decode(data: bytes, declared: str | None) -> tuple[str | None, str]:
    """(text, codec) or (None, why), for bytes whose charset may be missing or wrong.

    UTF-8 comes first whatever the label says (servers often send ISO-8859-1 by default): valid UTF-8
    is UTF-8, and so is text whose valid multi-byte characters outnumber its broken bytes (a stray
    byte, a character cut at the crawler's size limit), which any other codec would turn into
    mojibake. Then the declared charset and the page's meta tag or a guess, strictly, then with
    replacements. Text with many broken or control characters is refused: it is binary data, or in
    an encoding nobody named correctly.
    """
    utf8 = data.decode("utf-8", errors="replace")
    broken = utf8.count("\ufffd")
    if (broken == 0 or len(data) - len(utf8) > broken) and _readable(utf8):
        return utf8, "utf-8"
    labels = (declared, detect_encoding(data, from_html_meta=True))
    known = list(dict.fromkeys(c for c in map(_codec, labels) if c))
    attempts = [(c, "strict") for c in known if c != "utf-8"] + [(c, "replace") for c in known or ["utf-8"]]
    for codec, errors in attempts:
        try:
            text = data.decode(codec, errors)
        except UnicodeDecodeError:
            continue
        if _readable(text):
            return text, codec
    unknown = f"; declared charset {declared!r} is unknown" if declared and not _codec(declared) else ""
    tried = ", ".join(dict.fromkeys(["utf-8", *known]))
    return None, f"text is in an unknown encoding or is not text (tried {tried}{unknown})"


def _readable(text: str) -> bool:
    return len(_BAD_CHARS.findall(text)) <= MAX_BAD_CHARS * len(text)


def _codec(name: str | None) -> str | None:
    """Python's codec for an HTTP or HTML charset label (with HTML5's aliases: latin-1 means cp1252)."""
    if not name:
        return None
    try:
        return codecs.lookup(map_encoding_to_html5(name, fallback_utf8=False) or name).name
    except LookupError:
        return None
