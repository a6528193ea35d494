"""Per-language settings: one step judges each row with the settings of its ``language`` column.

Every quality step takes a ``languages`` parameter. The ``language`` step writes a ``language``
column (fastText lid.176 codes: ``en``, ``zh``, ``ja``, ...); a row whose language is listed is
judged with that language's settings, every other row with the step's own parameters::

    - gopher_quality:
        languages: [zh]                  # zh rows: the built-in zh profile
    - gopher_quality:
        min_words: 80                    # en and every unlisted language
        languages:
          zh: {min_words: 40}            # the zh profile, min_words changed
          yue: {profile: zh}             # Cantonese rows get the zh profile too
          ja: {word_segmentation: characters, min_mean_word_length: 1.0, ...}
          ko: default                    # the step's own parameters (as if not listed)
          th: skip                       # kept untouched (a map step leaves the text as it is)

A value is a profile name or a mapping of overrides of the step's parameters, optionally with a
``profile`` key. The settings of a listed language are: the step's own parameters, replaced by
those the profile sets, replaced by the overrides. The profile is the built-in one named like the
language when the step has one (the ``PROFILES`` of its class, documented with the step), else
``default`` (no change). ``skip`` keeps the rows as they are.

With ``languages`` set, rows must carry the ``language`` column (run the ``language`` step first,
with ``record: true``, its default); rows whose language is null use the step's own parameters.
Without ``languages`` nothing changes: the step runs exactly as before, on every row.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa

from llmray import params
from llmray.errors import UserError
from llmray.kernels import arrow
from llmray.ops.base import KEEP, Verdict

#: The column the ``language`` step writes (``llmray.ops.filters.language.LANGUAGE``).
LANGUAGE = "language"
DEFAULT, SKIP = "default", "skip"

#: Word segmentation modes (:mod:`llmray.kernels.segment`), the ``word_segmentation`` parameter.
Segmentation = Literal["spaces", "jieba", "characters"]


@dataclasses.dataclass
class PerLanguage:
    """Mixin of the steps that take ``languages`` (module docstring). A filter implements ``judge``
    (what ``evaluate`` was: reason codes of rows judged with this instance's parameters); a map step
    implements ``rewrite`` (its ``map``)."""

    #: Built-in profiles: name -> parameter values (a language code names its own profile).
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {}

    #: Per-language settings (module docstring): language code -> profile name or overrides.
    languages: dict[str, str | dict[str, Any] | None] | list[str] | None = dataclasses.field(
        default=None, kw_only=True)
    _by_language: dict[str, Any] = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]  # the step's own checks
        self._by_language = self._resolve_languages()

    def _resolve_languages(self) -> dict[str, Any]:
        spec = self.languages
        if not spec:
            return {}
        if isinstance(spec, list):
            spec = {code: None for code in spec}
        cls = type(self)
        own = {name: copy.deepcopy(getattr(self, name)) for name in params.fields(cls)
               if name not in ("languages", "annotate")}
        resolved: dict[str, Any] = {}
        problems = params.Problems()
        for code, value in spec.items():
            where = f"languages.{code}"
            overrides = {} if value is None else {"profile": value} if isinstance(value, str) else dict(value)
            profile = overrides.pop("profile", code if code in self.PROFILES else DEFAULT)
            if profile != SKIP and self.PROFILES.get(profile, {}).get("profile") == SKIP:  # a profile that skips
                if overrides:
                    problems.add(f"{where}: the {profile} profile of this step skips these rows; write "
                                 f"`profile: default` to judge them with the settings given")
                    continue
                profile = SKIP
            if profile == SKIP:
                resolved[code] = None
                continue
            if profile != DEFAULT and profile not in self.PROFILES:
                choices = [DEFAULT, SKIP, *self.PROFILES]
                problems.add(f"{where}.profile: {params.unknown(str(profile), choices, 'profile')}")
                continue
            for key in ("languages", "annotate"):
                if key in overrides:
                    problems.add(f"{where}.{key}: not a per-language setting")
                    overrides.pop(key)
            settings = {**own, **copy.deepcopy(self.PROFILES.get(profile, {})), **overrides}
            resolved[code] = problems.capture(params.build, cls, settings, where)
        problems.raise_if_any()
        return resolved

    def language_groups(self, table: pa.Table) -> list[tuple[Any, np.ndarray]]:
        """(settings or None for skip, rows as a bool mask) per listed language present in the
        table, then (self, the other rows); groups without rows are left out."""
        rows = table.num_rows
        if not self._by_language:
            return [(self, np.ones(rows, np.bool_))]
        if LANGUAGE not in table.column_names:
            raise UserError(f"{getattr(self, 'name', type(self).__name__)}: `languages` is set but the documents "
                            f"have no `{LANGUAGE}` column: run the `language` step before this one")
        row_codes, languages = arrow.codes(table.column(LANGUAGE))  # no pa.scalar: it imports pandas
        rest = np.ones(rows, np.bool_)
        groups: list[tuple[Any, np.ndarray]] = []
        for code, settings in self._by_language.items():
            if code in languages:
                mask = row_codes == languages.index(code)
                groups.append((settings, mask))
                rest &= ~mask
        if rest.any():
            groups.append((self, rest))
        return groups

    def evaluate(self, table: pa.Table) -> Verdict:
        """Reason codes (and measures), each row judged with the settings of its language."""
        groups = self.language_groups(table)
        if len(groups) == 1 and groups[0][0] is self:
            return self.judge(table)
        rows = table.num_rows
        merged = Verdict(np.full(rows, KEEP, np.int16), np.full(rows, np.nan), np.full(rows, np.nan))
        for settings, mask in groups:
            if settings is not None:
                part = settings.judge(table.filter(arrow.from_numpy(mask)))
                merged.codes[mask] = part.codes
                merged.value[mask], merged.threshold[mask] = part.value, part.threshold
        return merged

    def judge(self, table: pa.Table) -> Verdict:
        raise NotImplementedError


def take_rows(table: pa.Table, parts: list[tuple[pa.Table, np.ndarray]]) -> pa.Table:
    """Reassemble the rows of ``parts`` (a table and the rows of the original it holds, as a bool
    mask) in their original order."""
    if len(parts) == 1:
        return parts[0][0]
    order = np.concatenate([np.flatnonzero(mask) for _, mask in parts])
    merged = pa.concat_tables([part for part, _ in parts], promote_options="permissive")
    return merged.take(arrow.from_numpy(np.argsort(order, kind="stable")))
