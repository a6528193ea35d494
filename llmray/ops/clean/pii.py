"""PII redaction: e-mail addresses, IP addresses and phone numbers replaced by placeholders.

Patterns run as RE2 kernels (pyarrow.compute) over the rows where one of them could match, which a
compiled pass finds first (:func:`llmray.kernels.clean.pii_candidates`: an ``@``, digits in the
shape of an address or a phone number); the counts of what was redacted are reported per kind in
stats.json under the step's counters.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from llmray.kernels import arrow
from llmray.kernels.clean import EMAIL, IP, PHONE, pii_candidates
from llmray.ops.base import MapStep, register
from llmray.schema import TEXT

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
PATTERNS = {
    "email": r"\b[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}\b",
    "ip": rf"\b{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}\b",
    # Two separated digit groups after an optional country code or area code: 555-123-4567,
    # (555) 123 4567, +44 20 7946 0958. Bare digit runs (years, amounts) do not match.
    "phone": r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\b\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}\b",
}


@register
@dataclasses.dataclass
class PiiRedact(MapStep):
    """Replaces personal identifiers with placeholders so they do not end up in training data."""

    name: ClassVar[str] = "pii_redact"
    summary: ClassVar[str] = "redact e-mail addresses, IP addresses and phone numbers"
    email: bool = True
    ip: bool = True
    phone: bool = True
    email_replacement: str = "<EMAIL>"
    ip_replacement: str = "<IP_ADDRESS>"
    phone_replacement: str = "<PHONE>"
    _counts: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    def map(self, table: pa.Table) -> pa.Table:
        column = table.column(TEXT)
        kinds = (EMAIL if self.email else 0) | (IP if self.ip else 0) | (PHONE if self.phone else 0)
        # Rows without a candidate for any kind are left alone by every pattern (each needs its own
        # candidate, and replacements only happen in candidate rows), so only the others are searched.
        candidates = pii_candidates(column, kinds) != 0 if kinds else None
        if candidates is None or not candidates.any():
            return table
        mask = arrow.from_numpy(candidates)
        text = column.filter(mask)
        for kind, pattern in PATTERNS.items():
            if not getattr(self, kind):
                continue
            found = int(pc.sum(pc.count_substring_regex(text, pattern)).as_py() or 0)
            if found:
                self._counts[kind] = self._counts.get(kind, 0) + found
                text = pc.replace_substring_regex(text, pattern, getattr(self, f"{kind}_replacement"))
        if isinstance(column, pa.ChunkedArray):
            column, text = column.combine_chunks(), text.combine_chunks()
        text = pc.replace_with_mask(column, mask, text)
        return table.set_column(table.schema.get_field_index(TEXT), TEXT, text)

    def counters(self) -> dict[str, int]:
        counts, self._counts = {f"{k}_redacted": v for k, v in self._counts.items()}, {}
        return counts
