"""Sensor id and start time of a recording, read from its path.

Two ways, both pure (no I/O):

- No pattern: AudioMoth names. A file called ``YYYYMMDD_HHMMSS.<audio ext>``
  (any case, e.g. ``20261123_000000.WAV``) starts at that UTC time, and the
  folder it sits in names the sensor. Any other name gives ``(None, None)``.
- ``--path-pattern``: a template matched against the END of the path: the
  shortest run of whole trailing path components that fits it, so it may
  cover the file name only, or sensor folders too. Placeholders:

  ``{sensor}``
      the sensor id: one path component or part of one (shortest match, never ``/``).
  ``{start:FORMAT}``
      the start time, with a ``strftime`` format such as ``%Y%m%d_%H%M%S`` or
      ``%Y-%m-%dT%H-%M-%S``; ``{start}`` alone means ``%Y%m%d_%H%M%S``.
  ``{date:FORMAT}`` and ``{time:FORMAT}``
      date and time of day in separate places (``{date:%Y-%m-%d}/{time:%H%M%S}.wav``).
  ``{ignore}`` and ``*``
      anything within one component (shortest match); ``**`` as a whole
      component spans any number of components.

  ``{{`` and ``}}`` are literal braces. Matching ignores case. When the
  template does not cover the file's extension (``{sensor}/{start}``), it is
  tried again on the path without its extension. Times without a ``%z``
  offset are UTC. A path that does not match, or whose time is not a valid
  date, gives ``(None, None)``.

Examples
--------
>>> parse_recording_name("/d/S01/20261123_000000.WAV", None).sensor
'S01'
>>> p = PathPattern("{sensor}_{start:%Y%m%d_%H%M%S}.wav")
>>> p.parse("s3://b/x/SITE_A_20261123_101500.wav").sensor
'SITE_A'
"""

from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from soundbatch.config import AUDIO_EXTENSIONS
from soundbatch.errors import ConfigError

__all__ = ["AUDIOMOTH_FORMAT", "PathPattern", "RecordingName", "parse_recording_name"]

#: The ``strftime`` format of AudioMoth file names.
AUDIOMOTH_FORMAT = "%Y%m%d_%H%M%S"

# Extensions that count as audio for AudioMoth names (kept here so naming stays pure).
_AUDIOMOTH_NAME = re.compile(r"(\d{8}_\d{6})(\.[A-Za-z0-9]+)\Z")

# Regex for each strftime directive a pattern may use.
_DIRECTIVES: dict[str, str] = {
    "Y": r"\d{4}",
    "y": r"\d{2}",
    "m": r"\d{1,2}",
    "d": r"\d{1,2}",
    "H": r"\d{1,2}",
    "I": r"\d{1,2}",
    "M": r"\d{1,2}",
    "S": r"\d{1,2}",
    "f": r"\d{1,6}",
    "j": r"\d{1,3}",
    "p": r"[AaPp][Mm]",
    "b": r"[A-Za-z]{3}",
    "B": r"[A-Za-z]{3,9}",
    "z": r"(?:Z|[+-]\d{2}:?\d{2})",
    "s": r"\d{1,12}",  # seconds since the epoch (handled apart from strptime)
    "%": "%",
}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class RecordingName:
    """What a recording's path says about it.

    Attributes
    ----------
    sensor : str or None
        Sensor id, where the path gives one.
    start_time : datetime or None
        Start of the recording, timezone-aware UTC, where the path gives it.
    """

    sensor: str | None
    start_time: datetime | None


_NOTHING = RecordingName(None, None)


def _path_of(uri: str) -> str:
    """The ``/``-separated path of a URI (``s3://b/k`` -> ``b/k``)."""
    if "://" in uri:
        uri = uri.split("://", 1)[1]
    return uri.replace("\\", "/")


def _format_regex(fmt: str, pattern: str) -> str:
    """Regex for a strftime format; raises ConfigError for unsupported directives."""
    out: list[str] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%":
            if i + 1 >= len(fmt):
                raise ConfigError(f"path pattern {pattern!r}: time format {fmt!r} ends with a lone '%'")
            d = fmt[i + 1]
            if d not in _DIRECTIVES:
                raise ConfigError(
                    f"path pattern {pattern!r}: time format {fmt!r} uses %{d}, expected one of "
                    + " ".join(f"%{k}" for k in _DIRECTIVES)
                )
            out.append(_DIRECTIVES[d] if d != "%" else "%")
            i += 2
            continue
        if c == "/":
            out.append("/")
        else:
            out.append(re.escape(c))
        i += 1
    if "%s" in fmt and fmt.strip() != "%s":
        raise ConfigError(f"path pattern {pattern!r}: %s (epoch seconds) must be the whole time format, got {fmt!r}")
    return "".join(out)


def _parse_time(text: str, fmt: str) -> datetime:
    """Parse ``text`` with ``fmt``; naive times are UTC. Raises ValueError."""
    if fmt == "%s":
        return datetime.fromtimestamp(int(text), tz=UTC)
    if "%z" in fmt and text.endswith(("Z", "z")):
        text = text[:-1] + "+0000"
    t = datetime.strptime(text, fmt)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class PathPattern:
    """A compiled ``--path-pattern`` (see the module docstring for the syntax).

    Parameters
    ----------
    pattern : str
        The template, e.g. ``"{sensor}/{start:%Y%m%d_%H%M%S}.wav"``.

    Raises
    ------
    ConfigError
        Unknown or repeated placeholder, unsupported time directive, unbalanced
        braces, ``{start}`` together with ``{date}``/``{time}``.
    """

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigError(f"path pattern {pattern!r} must be a non-empty template such as '{{sensor}}/{{start}}.wav'")
        self.pattern = pattern
        self._formats: dict[str, str] = {}
        body = self._compile(pattern)
        # Matched against whole trailing components, see _match.
        self._regex = re.compile(body, re.IGNORECASE | re.DOTALL)

    def _compile(self, pattern: str) -> str:
        out: list[str] = []
        seen: set[str] = set()
        pos = 0
        text = pattern
        while pos < len(text):
            if text.startswith("{{", pos):
                out.append(re.escape("{"))
                pos += 2
                continue
            if text.startswith("}}", pos):
                out.append(re.escape("}"))
                pos += 2
                continue
            c = text[pos]
            if c == "}":
                raise ConfigError(f"path pattern {pattern!r}: unmatched '}}' at position {pos}; write '}}}}' for a literal brace")
            if c == "{":
                m = _PLACEHOLDER.match(text, pos)
                if m is None:
                    raise ConfigError(f"path pattern {pattern!r}: unmatched '{{' at position {pos}; write '{{{{' for a literal brace")
                out.append(self._placeholder(m.group(1), seen))
                pos = m.end()
                continue
            if c == "*":
                at_start = pos == 0 or text[pos - 1] == "/"
                if text.startswith("**", pos) and at_start and (pos + 2 == len(text) or text[pos + 2] == "/"):
                    if pos + 2 == len(text):
                        out.append(r".*?")
                        pos += 2
                    else:
                        out.append(r"(?:[^/]*/)*?")
                        pos += 3
                    continue
                out.append(r"[^/]*?")
                pos += 1
                continue
            out.append(re.escape(c))
            pos += 1
        if "start" in seen and ({"date", "time"} & seen):
            raise ConfigError(f"path pattern {pattern!r}: use either {{start:...}} or {{date:...}} with {{time:...}}, not both")
        if ("date" in seen) != ("time" in seen):
            raise ConfigError(f"path pattern {pattern!r}: {{date:...}} and {{time:...}} must be used together")
        return "".join(out)

    def _placeholder(self, spec: str, seen: set[str]) -> str:
        name, sep, fmt = spec.partition(":")
        name = name.strip()
        if name == "ignore" and not sep:
            return r"[^/]*?"
        if name in ("sensor",) and not sep:
            if name in seen:
                raise ConfigError(f"path pattern {self.pattern!r}: {{sensor}} appears twice, expected at most once")
            seen.add(name)
            return r"(?P<sensor>[^/]+?)"
        if name in ("start", "date", "time"):
            if name in seen:
                raise ConfigError(f"path pattern {self.pattern!r}: {{{name}}} appears twice, expected at most once")
            seen.add(name)
            if not sep:
                if name != "start":
                    raise ConfigError(f"path pattern {self.pattern!r}: {{{name}}} needs a strftime format, e.g. {{{name}:%H%M%S}}")
                fmt = AUDIOMOTH_FORMAT
            if not fmt:
                raise ConfigError(f"path pattern {self.pattern!r}: {{{spec}}} has an empty time format")
            self._formats[name] = fmt
            return f"(?P<{name}>{_format_regex(fmt, self.pattern)})"
        raise ConfigError(
            f"path pattern {self.pattern!r}: unknown placeholder {{{spec}}}; expected {{sensor}}, "
            "{start:FORMAT}, {date:FORMAT}, {time:FORMAT}, {ignore} or *"
        )

    def __repr__(self) -> str:
        return f"PathPattern({self.pattern!r})"

    def _match(self, path: str) -> re.Match[str] | None:
        """Match the shortest run of trailing path components that fits the template."""
        starts = [i + 1 for i, c in enumerate(path) if c == "/"][::-1] + [0]
        for start in starts:
            m = self._regex.fullmatch(path, start)
            if m is not None:
                return m
        return None

    def parse(self, uri: str) -> RecordingName:
        """Sensor and start time of ``uri``; ``(None, None)`` when it does not match."""
        path = _path_of(uri)
        m = self._match(path)
        if m is None:
            stem, ext = posixpath.splitext(path)
            if not ext or "/" in ext:
                return _NOTHING
            m = self._match(stem)
            if m is None:
                return _NOTHING
        groups = m.groupdict()
        sensor = groups.get("sensor") or None
        try:
            if "start" in self._formats:
                start = _parse_time(groups["start"], self._formats["start"])
            elif "date" in self._formats:
                day = _parse_time(groups["date"], self._formats["date"])
                tod = datetime.strptime(groups["time"], self._formats["time"])
                start = day.replace(hour=tod.hour, minute=tod.minute, second=tod.second, microsecond=tod.microsecond)
            else:
                start = None
        except (ValueError, OverflowError, OSError):
            return _NOTHING  # e.g. month 13: the name only looks like the template
        return RecordingName(sensor, start)


def parse_audiomoth(uri: str) -> RecordingName:
    """AudioMoth naming: ``<sensor folder>/YYYYMMDD_HHMMSS.<audio ext>``."""
    path = _path_of(uri)
    folder, _, name = path.rpartition("/")
    m = _AUDIOMOTH_NAME.fullmatch(name)
    if m is None or m.group(2).lower() not in AUDIO_EXTENSIONS:
        return _NOTHING
    try:
        start = datetime.strptime(m.group(1), AUDIOMOTH_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return _NOTHING
    sensor = folder.rpartition("/")[2] or None
    if sensor is not None and "://" in uri and "/" not in folder:
        sensor = None  # s3://bucket/20261123_000000.WAV: the bucket is no sensor
    return RecordingName(sensor, start)


@functools.lru_cache(maxsize=32)
def _compiled(pattern: str) -> PathPattern:
    return PathPattern(pattern)


def parse_recording_name(uri: str, pattern: str | PathPattern | None) -> RecordingName:
    """Sensor and start time from a recording's URI.

    Parameters
    ----------
    uri : str
        Local path or ``s3://bucket/key``.
    pattern : str, PathPattern or None
        A ``--path-pattern`` template; None for AudioMoth naming.

    Returns
    -------
    RecordingName
        ``(None, None)`` where the name says nothing.
    """
    if pattern is None:
        return parse_audiomoth(uri)
    if isinstance(pattern, PathPattern):
        return pattern.parse(uri)
    return _compiled(pattern).parse(uri)
