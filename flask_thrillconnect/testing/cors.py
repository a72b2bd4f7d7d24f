"""The operator's CORS origin rules (``/v1/cors``), and whether a browser origin matches one.

Thread-safe on its own lock: the CORS answer header is computed on every request, apart from
the jackpot state of :class:`~.world.World`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .domain import cors_rule_regex
from .errors import InvalidInput

MAX_CORS_RULES = 100
_MAX_PATTERN_LENGTH = 512


class CorsRules:
    """The stored rules by pattern, each with its compiled regular expression.

    :param rules: the starting rules (``{"pattern", "match_mode"}`` each).
    """

    def __init__(self, rules: Iterable[Mapping[str, str]]) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, tuple[dict[str, str], re.Pattern[str]]] = {}
        for rule in rules:
            self._rules[rule["pattern"]] = (
                dict(rule),
                cors_rule_regex(rule["pattern"], rule["match_mode"]),
            )

    def rules(self) -> list[dict[str, str]]:
        """The stored rules (``CorsOriginDoc`` list)."""
        with self._lock:
            return [dict(rule) for rule, _ in self._rules.values()]

    def upsert(self, rules: Any) -> list[dict[str, str]]:
        """Add or replace rules by pattern; answer the whole list.

        :raises InvalidInput: malformed rules, unknown match mode, bad regex, too many rules.
        """
        if not isinstance(rules, list) or not rules:
            raise InvalidInput("invalid_body", "cors_origin_list must be a non-empty list")
        compiled = [_compile(rule) for rule in rules]
        with self._lock:
            patterns = set(self._rules) | {rule["pattern"] for rule, _ in compiled}
            if len(patterns) > MAX_CORS_RULES:
                raise InvalidInput("too_many_rules", f"at most {MAX_CORS_RULES} rules")
            for rule, regex in compiled:
                self._rules[rule["pattern"]] = (rule, regex)
        return self.rules()

    def remove(self, patterns: Any) -> tuple[int, list[dict[str, str]]]:
        """Remove rules by pattern; answer how many went and what remains.

        :raises InvalidInput: when ``patterns`` is not a list of strings.
        """
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise InvalidInput("invalid_body", "cors_origin_list must be a list of patterns")
        with self._lock:
            removed = sum(self._rules.pop(pattern, None) is not None for pattern in set(patterns))
        return removed, self.rules()

    def allows(self, origin: str) -> bool:
        """Whether a browser ``Origin`` matches one of the stored rules."""
        with self._lock:
            regexes = [regex for _, regex in self._rules.values()]
        return any(regex.fullmatch(origin) for regex in regexes)


def _compile(rule: Any) -> tuple[dict[str, str], re.Pattern[str]]:
    if not isinstance(rule, dict) or set(rule) != {"pattern", "match_mode"}:
        raise InvalidInput(
            "invalid_body", "each rule must be an object with pattern and match_mode"
        )
    pattern, mode = rule["pattern"], rule["match_mode"]
    if not isinstance(pattern, str) or not 0 < len(pattern) <= _MAX_PATTERN_LENGTH:
        raise InvalidInput(
            "invalid_body", f"pattern must be a string of 1 to {_MAX_PATTERN_LENGTH} chars"
        )
    # cors_rule_regex refuses an unknown match mode, whatever its type.
    regex = cors_rule_regex(pattern, mode)
    return {"pattern": pattern, "match_mode": mode}, regex
