"""OpenTelemetry names and units -> Prometheus names, as the collector's Prometheus exporter makes them.

The rules are those of ``prometheus/otlptranslator`` (used by the collector's ``prometheus`` exporter
with its default ``UnderscoreEscapingWithSuffixes`` strategy), so a dashboard written against a
collector keeps working against the gateway:

- metric names: split on every character outside ``[a-zA-Z0-9:]`` (so ``.``, ``-`` and runs of
  ``_`` become a single ``_``); append the unit (``s`` -> ``seconds``, ``By`` -> ``bytes``,
  ``By/s`` -> ``bytes_per_second``; ``{...}`` annotations and ``1`` give no unit; an unknown unit
  such as ``USD`` is appended as is) unless a name token already equals it; monotonic counters get
  ``_total`` (once); gauges, and only gauges, with unit ``1`` get ``_ratio``; a leading digit gets ``_``.
- label names: every character outside ``[a-zA-Z0-9_]`` becomes ``_`` (runs are *not* collapsed,
  as in the translator); a leading digit gets ``key_``; a single leading ``_`` gets ``key``.

Results are cached: the same few hundred metric and attribute names arrive in every export.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Literal

NameKind = Literal["counter", "gauge", "histogram", "summary", "updown"]
"""``updown`` is a non-monotonic sum: a Prometheus gauge that does not get ``_ratio`` for unit ``1``."""

UNIT_WORDS: dict[str, str] = {
    # time
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    # bytes
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    # SI
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    # misc
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
PER_UNIT_WORDS: dict[str, str] = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}

_NAME_SPLIT = re.compile(r"[^a-zA-Z0-9:]+")
_UNIT_INVALID = re.compile(r"[^a-zA-Z0-9:_]")
_UNDERSCORES = re.compile(r"__+")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def _clean_unit(unit: str) -> str:
    return _UNDERSCORES.sub("_", _UNIT_INVALID.sub("_", unit)).lstrip("_")


def unit_suffixes(unit: str) -> tuple[str, str]:
    """(main, per) Prometheus unit words for an OTel (UCUM) unit; either may be empty."""
    main_text, sep, per_text = unit.partition("/")
    main = ""
    per = ""
    main_text = main_text.strip()
    if main_text and "{" not in main_text and "}" not in main_text:
        main = _clean_unit(UNIT_WORDS.get(main_text, main_text))
    per_text = per_text.strip()
    if sep and per_text and "{" not in per_text and "}" not in per_text:
        per = _clean_unit("per_" + PER_UNIT_WORDS.get(per_text, per_text))
    return main, per


@lru_cache(maxsize=4096)
def metric_name(name: str, unit: str, kind: NameKind) -> str:
    """The full Prometheus metric name (with ``_total`` for counters) of an OTLP metric."""
    tokens = [token for token in _NAME_SPLIT.split(name) if token]
    main, per = unit_suffixes(unit)
    if main in tokens:
        main = ""
    if per == "per_":
        per = ""
    else:
        per = per.rstrip("_")
        if per in tokens:
            per = ""
    if per:
        main = main.rstrip("_")
    if main:
        tokens.append(main)
    if per:
        tokens.append(per)
    if kind == "counter":
        tokens = [token for token in tokens if token != "total"]
        tokens.append("total")
    if unit == "1" and kind == "gauge":
        tokens = [token for token in tokens if token != "ratio"]
        tokens.append("ratio")
    result = "_".join(tokens)
    if result and result[0].isdigit():
        result = "_" + result
    return result


@lru_cache(maxsize=8192)
def label_name(key: str) -> str:
    """A Prometheus label name for an OTel attribute key (``http.method`` -> ``http_method``)."""
    if not key:
        return key
    label = _LABEL_INVALID.sub("_", key)
    if label[0].isdigit():
        return "key_" + label
    if label.startswith("_") and not label.startswith("__"):
        return "key" + label
    return label


def escape_label_value(value: str) -> str:
    """Backslash, double quote and newline escaped, the same in the text format and OpenMetrics."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def escape_help(text: str, openmetrics: bool) -> str:
    """HELP text escaping: both formats escape backslash and newline, OpenMetrics also ``"``.

    The text-format parser refuses ``\\"`` in HELP, so the two cannot share one escaping.
    """
    text = text.replace("\\", r"\\").replace("\n", r"\n")
    return text.replace('"', r"\"") if openmetrics else text


def go_float(number: float, *, openmetrics: bool = False) -> str:
    """Go's ``strconv.FormatFloat(f, 'g', -1, 64)``; with ``openmetrics`` also a ``.0`` on integers.

    ``le`` and ``quantile`` label values are part of a series' identity, so they are written
    exactly as the collector's Go client writes them to Prometheus (which scrapes OpenMetrics by
    default): ``2.0``, ``0.005``, ``1e+06``.
    """
    if number != number:
        return "NaN"
    if number in (math.inf, -math.inf):
        return "+Inf" if number > 0 else "-Inf"
    if number == 0.0:
        text = "-0" if math.copysign(1.0, number) < 0 else "0"
        return text + ".0" if openmetrics else text
    text = repr(number)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    integer, _, fraction = mantissa.partition(".")
    all_digits = integer + fraction
    stripped = all_digits.lstrip("0")
    decimal_point = len(integer) - (len(all_digits) - len(stripped)) + (int(exp_text) if exp_text else 0)
    digits = stripped.rstrip("0") or "0"
    exponent = decimal_point - 1
    if exponent < -4 or exponent >= 6:
        # Go uses %e when the exponent is < -4 or >= the precision, which is 6 for the shortest form.
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if decimal_point <= 0:
        body = "0." + "0" * (-decimal_point) + digits
    elif decimal_point >= len(digits):
        body = digits + "0" * (decimal_point - len(digits))
    else:
        body = digits[:decimal_point] + "." + digits[decimal_point:]
    if openmetrics and "." not in body:
        body += ".0"
    return sign + body
