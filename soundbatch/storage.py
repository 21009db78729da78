"""Local and S3 storage: listing inputs, reading recordings, writing outputs.

URIs are either ``s3://bucket/key`` or local paths. Local paths are made
absolute and normalised (no ``..``); ``file://`` prefixes are accepted.

Which client does what, and why
-------------------------------
- Reading and writing go through ``pyarrow.fs`` (``LocalFileSystem`` and
  ``S3FileSystem``): pyarrow was the faster of the S3 clients for the many
  small ranged reads a seeking decoder makes.
- S3 *listings* (and the ``HeadObject`` of single named objects) go through
  boto3, because pyarrow's ``FileInfo`` carries no ETag, and the ETag is what
  the resume logic compares (``recordings.etag``). boto3 reads the same
  standard AWS environment, ``AWS_ENDPOINT_URL`` included.

Configuration comes from the standard AWS environment only:
``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``) for a non-AWS endpoint such as
MinIO or moto, ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``), and credentials from
the default chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_SESSION_TOKEN``, ``~/.aws``, instance metadata).

Filesystem and client objects are built lazily and cached per process, keyed
by the process id and the AWS settings above, so each Ray worker builds its own
and a changed environment (tests) yields a fresh one. Nothing here is meant to
be pickled; pass URIs between processes, not filesystems.

ETags
-----
- S3: the object's ETag from the listing / ``HeadObject``, quotes stripped.
- Local: ``f"{size}-{mtime_ns}"``.
"""

from __future__ import annotations

import concurrent.futures
import io
import logging
import os
import posixpath
import re
import shutil
import tempfile
import threading
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import BinaryIO, Iterable

import pyarrow.fs as pafs

from soundbatch.config import AUDIO_EXTENSIONS
from soundbatch.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

__all__ = [
    "AUDIO_EXTENSIONS",
    "LIST_SUFFIXES",
    "FileEntry",
    "check_access",
    "clear_cache",
    "copy",
    "delete",
    "exists",
    "filesystem",
    "is_s3",
    "join",
    "list_files",
    "list_inputs",
    "normalize_uri",
    "open_input",
    "read_bytes",
    "write_bytes",
]

#: Suffixes that always mark an input as a text file of URIs.
LIST_SUFFIXES: frozenset[str] = frozenset({".txt", ".lst"})

_READ_BUFFER = 1 << 20  # stack notes: unbuffered pyarrow streams made soundfile 60x slower
_GLOB_CHARS = re.compile(r"[*?\[]")
_S3_HEAD_THREADS = 16


@dataclass(frozen=True)
class FileEntry:
    """One listed file.

    Attributes
    ----------
    uri : str
        ``s3://bucket/key`` or an absolute, normalised local path.
    size : int
        Size in bytes.
    etag : str or None
        S3 ETag (quotes stripped) or ``f"{size}-{mtime_ns}"`` locally.
    """

    uri: str
    size: int
    etag: str | None


# ---------------------------------------------------------------------------
# URIs
# ---------------------------------------------------------------------------


def is_s3(uri: str) -> bool:
    """Whether ``uri`` names an S3 object or prefix (``s3://...``)."""
    return uri.startswith("s3://")


def normalize_uri(uri: str) -> str:
    """Return the canonical form of a URI.

    Local paths become absolute and normalised (``~`` expanded, ``..`` and
    ``.`` resolved lexically, no trailing slash); ``file://`` is stripped.
    S3 URIs are returned unchanged apart from a ``s3a://``/``s3n://`` scheme.
    """
    if not isinstance(uri, str) or not uri:
        raise StorageError(f"uri={uri!r} must be a non-empty string (a local path or s3://bucket/key)")
    for alias in ("s3a://", "s3n://"):
        if uri.startswith(alias):
            return "s3://" + uri[len(alias) :]
    if is_s3(uri):
        return uri
    if uri.startswith("file://"):
        uri = urllib.parse.unquote(urllib.parse.urlparse(uri).path)
    elif "://" in uri:
        raise StorageError(f"uri={uri!r} has an unsupported scheme; expected a local path or s3://bucket/key")
    return os.path.abspath(os.path.expanduser(uri))


def _split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); key may be empty."""
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"uri={uri!r} names no bucket; expected s3://bucket/key")
    return bucket, key


def join(base_uri: str, *parts: str) -> str:
    """Join path parts onto a local or S3 base URI with ``/``.

    Leading and trailing slashes of the parts are ignored, so a part never
    resets the base. Local results are normalised like :func:`normalize_uri`.
    """
    clean = [p.strip("/") for p in parts if p and p.strip("/")]
    if is_s3(base_uri):
        return "/".join([base_uri.rstrip("/"), *clean]) if clean else base_uri
    return os.path.normpath(os.path.join(normalize_uri(base_uri), *clean))


# ---------------------------------------------------------------------------
# Filesystems and clients, cached per process
# ---------------------------------------------------------------------------

_cache_lock = threading.Lock()
_fs_cache: dict[tuple, pafs.FileSystem] = {}
_client_cache: dict[tuple, object] = {}


def _aws_env_key() -> tuple:
    names = (
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    )
    return (os.getpid(),) + tuple(os.environ.get(n) for n in names)


def endpoint_url() -> str | None:
    """The S3 endpoint from the environment, as botocore would choose it."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region() -> str | None:
    """The AWS region from the environment (AWS_REGION, then AWS_DEFAULT_REGION)."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def _parse_endpoint(url: str) -> tuple[str, str]:
    """``http://host:port`` -> (scheme, "host:port") for pyarrow's S3FileSystem."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"AWS_ENDPOINT_URL={url!r} must be a URL with a scheme, like http://127.0.0.1:9000"
        )
    return parsed.scheme, parsed.netloc + parsed.path.rstrip("/")


def clear_cache() -> None:
    """Forget the cached filesystems and clients of this process (tests use it)."""
    with _cache_lock:
        _fs_cache.clear()
        _client_cache.clear()


def _s3_filesystem() -> pafs.S3FileSystem:
    key = _aws_env_key()
    with _cache_lock:
        fs = _fs_cache.get(key)
        if fs is None:
            kwargs: dict = {}
            endpoint = endpoint_url()
            if endpoint:
                scheme, override = _parse_endpoint(endpoint)
                kwargs.update(scheme=scheme, endpoint_override=override)
            aws_region = region()
            if aws_region:
                kwargs["region"] = aws_region
            try:
                fs = pafs.S3FileSystem(**kwargs)
            except Exception as exc:  # pyarrow raises OSError/ArrowInvalid on bad settings
                raise StorageError(f"could not set up S3 with endpoint={endpoint!r} region={aws_region!r}: {exc}") from exc
            _fs_cache[key] = fs
        return fs


_local_fs = pafs.LocalFileSystem()


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return the pyarrow filesystem for ``uri`` and the path within it.

    Returns
    -------
    (pyarrow.fs.FileSystem, str)
        ``(S3FileSystem, "bucket/key")`` for S3, ``(LocalFileSystem, "/abs/path")``
        for local paths.
    """
    uri = normalize_uri(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        return _s3_filesystem(), f"{bucket}/{key}".rstrip("/")
    return _local_fs, uri


def _s3_client(*, attempts: int = 5, timeout_s: float | None = None):
    """A boto3 S3 client from the standard AWS environment (cached per process)."""
    cache_key = _aws_env_key() + (attempts, timeout_s)
    with _cache_lock:
        client = _client_cache.get(cache_key)
        if client is None:
            import boto3
            import botocore.config

            cfg: dict = {"retries": {"max_attempts": attempts, "mode": "standard"}}
            if timeout_s is not None:
                cfg.update(connect_timeout=timeout_s, read_timeout=timeout_s)
            # boto3 reads AWS_ENDPOINT_URL(_S3) itself; passing it too keeps both clients
            # on the same endpoint even with botocore versions that ignore the variable.
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url(),
                region_name=region(),
                config=botocore.config.Config(**cfg),
            )
            _client_cache[cache_key] = client
        return client


def _describe_s3_error(uri: str, exc: BaseException) -> str:
    """Words a user can act on for a boto3 / pyarrow S3 failure."""
    endpoint = endpoint_url() or "the AWS default endpoint"
    name = type(exc).__name__
    code = ""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
    text = str(exc)
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError") or (
        "connect" in text.lower() and not code
    ):
        return f"cannot reach S3 endpoint {endpoint} for {uri} (check AWS_ENDPOINT_URL and the network): {exc}"
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return f"no AWS credentials found for {uri} (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile): {exc}"
    if code == "NoSuchBucket" or "NoSuchBucket" in text or "NO_SUCH_BUCKET" in text:
        return f"bucket of {uri} does not exist at {endpoint}: {exc}"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken") or code in (
        "403",
        "AccessDenied",
    ):
        return f"S3 refused access to {uri} at {endpoint} (check the credentials and their permissions): {exc}"
    if isinstance(exc, FileNotFoundError):
        return f"{uri} does not exist at {endpoint}: {exc}"
    return f"S3 request for {uri} at {endpoint} failed: {exc}"


def _fail(op: str, uri: str, exc: BaseException) -> StorageError:
    if is_s3(uri):
        return StorageError(f"{op}: {_describe_s3_error(uri, exc)}")
    if isinstance(exc, FileNotFoundError):
        return StorageError(f"{op}: {uri} does not exist: {exc}")
    return StorageError(f"{op} {uri} failed: {exc}")


# ---------------------------------------------------------------------------
# Reading and writing single files
# ---------------------------------------------------------------------------


def open_input(uri: str, *, buffer_size: int = _READ_BUFFER) -> BinaryIO:
    """Open a recording for reading.

    Parameters
    ----------
    uri : str
    buffer_size : int
        Bytes per read from the store (one ranged GET per refill on S3): 1 MiB
        for decoding; a header probe wants less.

    Returns
    -------
    io.BufferedReader
        A seekable binary file over a pyarrow random access file. Close it after use.

    Raises
    ------
    StorageError
        The file does not exist or cannot be opened.
    """
    fs, path = filesystem(uri)
    try:
        raw = fs.open_input_file(path)
    except Exception as exc:
        raise _fail("open", uri, exc) from exc
    return io.BufferedReader(raw, buffer_size)  # type: ignore[arg-type]


def read_bytes(uri: str) -> bytes:
    """Return the whole content of a file."""
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except Exception as exc:
        raise _fail("read", uri, exc) from exc


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri``, replacing what is there.

    Locally the write is atomic (a temporary file in the same folder, then
    ``os.replace``) and parent folders are created. On S3 one PUT is atomic.
    """
    uri = normalize_uri(uri)
    if is_s3(uri):
        fs, path = filesystem(uri)
        try:
            with fs.open_output_stream(path) as f:
                f.write(data)
        except Exception as exc:
            raise _fail("write", uri, exc) from exc
        return
    try:
        _atomic_local_write(uri, lambda f: f.write(data))
    except OSError as exc:
        raise _fail("write", uri, exc) from exc


def _atomic_local_write(path: str, fill) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def exists(uri: str) -> bool:
    """Whether a file, a local folder, or an S3 prefix with objects exists at ``uri``."""
    fs, path = filesystem(uri)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except Exception as exc:
        raise _fail("check existence of", uri, exc) from exc


def delete(uri: str) -> None:
    """Delete one file. A file that is already gone is not an error (as on S3)."""
    fs, path = filesystem(uri)
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return
        if info.type != pafs.FileType.File:
            raise StorageError(f"delete {uri}: it is a folder/prefix, expected a single file")
        fs.delete_file(path)
    except StorageError:
        raise
    except FileNotFoundError:
        return
    except Exception as exc:
        raise _fail("delete", uri, exc) from exc


def copy(src_uri: str, dst_uri: str) -> None:
    """Copy one file; any mix of local and S3.

    S3 to S3 is a server-side copy; otherwise the bytes are streamed. A local
    destination is written atomically.
    """
    src_uri, dst_uri = normalize_uri(src_uri), normalize_uri(dst_uri)
    src_fs, src_path = filesystem(src_uri)
    dst_fs, dst_path = filesystem(dst_uri)
    if is_s3(src_uri) and is_s3(dst_uri):
        try:
            src_fs.copy_file(src_path, dst_path)
        except Exception as exc:
            raise StorageError(f"copy {src_uri} -> {dst_uri}: {_describe_s3_error(src_uri, exc)}") from exc
        return
    try:
        with src_fs.open_input_stream(src_path) as src:
            if is_s3(dst_uri):
                with dst_fs.open_output_stream(dst_path) as dst:
                    shutil.copyfileobj(src, dst, _READ_BUFFER)
            else:
                _atomic_local_write(dst_uri, lambda f: shutil.copyfileobj(src, f, _READ_BUFFER))
    except Exception as exc:
        raise StorageError(f"copy {src_uri} -> {dst_uri} failed: {exc}") from exc


# ---------------------------------------------------------------------------
# Listing
# ---------------------------------------------------------------------------


def _local_entry(path: str, size: int, mtime_ns: int | None) -> FileEntry:
    return FileEntry(path, int(size), f"{int(size)}-{int(mtime_ns or 0)}")


def _local_stat(path: str) -> FileEntry:
    st = os.stat(path)
    return _local_entry(path, st.st_size, st.st_mtime_ns)


def _list_local_tree(folder: str) -> list[FileEntry]:
    selector = pafs.FileSelector(folder, recursive=True)
    infos = _local_fs.get_file_info(selector)
    return [
        _local_entry(os.path.normpath(i.path), i.size, i.mtime_ns)
        for i in infos
        if i.type == pafs.FileType.File
    ]


def _s3_etag(raw: str | None) -> str | None:
    return raw.strip('"') if raw else None


def _list_s3_prefix(bucket: str, prefix: str, uri_for_errors: str) -> list[FileEntry]:
    """Every object whose key starts with ``prefix`` (folder markers skipped)."""
    client = _s3_client()
    out: list[FileEntry] = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", ()):
                key = obj["Key"]
                if key.endswith("/"):
                    continue
                out.append(FileEntry(f"s3://{bucket}/{key}", int(obj["Size"]), _s3_etag(obj.get("ETag"))))
    except Exception as exc:
        raise _fail("list", uri_for_errors, exc) from exc
    return out


def _head_s3(uri: str) -> FileEntry | None:
    """The object at ``uri``, or None where there is none."""
    bucket, key = _split_s3(uri)
    if not key or key.endswith("/"):
        return None
    client = _s3_client()
    try:
        resp = client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return None
        raise _fail("look up", uri, exc) from exc
    return FileEntry(uri, int(resp["ContentLength"]), _s3_etag(resp.get("ETag")))


def list_files(prefix_uri: str, *, suffix: str | None = None) -> list[FileEntry]:
    """List the files under a folder (local) or prefix (S3), recursively.

    ``prefix_uri`` is taken as a folder: ``s3://b/out`` lists keys under
    ``out/``. A missing folder gives ``[]``.

    Parameters
    ----------
    prefix_uri : str
        Local folder or ``s3://bucket/prefix``.
    suffix : str, optional
        Keep only files whose name ends with this (case-sensitive), e.g. ``".parquet"``.

    Returns
    -------
    list of FileEntry
        Sorted by URI.
    """
    prefix_uri = normalize_uri(prefix_uri)
    if is_s3(prefix_uri):
        bucket, key = _split_s3(prefix_uri)
        key = key.rstrip("/")
        entries = _list_s3_prefix(bucket, f"{key}/" if key else "", prefix_uri)
    else:
        if not os.path.isdir(prefix_uri):
            return []
        try:
            entries = _list_local_tree(prefix_uri)
        except Exception as exc:
            raise _fail("list", prefix_uri, exc) from exc
    if suffix is not None:
        entries = [e for e in entries if e.uri.endswith(suffix)]
    return sorted(entries, key=lambda e: e.uri)


def _extension(uri: str) -> str:
    return posixpath.splitext(uri.rsplit("/", 1)[-1])[1].lower()


def _is_list_file(uri: str, audio_exts: frozenset[str]) -> bool:
    ext = _extension(uri)
    return ext in LIST_SUFFIXES or ext not in audio_exts


def _glob_component(part: str) -> str:
    """Regex for one path component of a glob: ``*``, ``?``, ``[...]`` never cross ``/``."""
    out: list[str] = []
    i = 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < len(part) and part[j] in "!^":
                j += 1
            if j < len(part) and part[j] == "]":
                j += 1
            j = part.find("]", j)
            if j < 0:  # no closing bracket: a literal '['
                out.append(re.escape(c))
            else:
                body = part[i + 1 : j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob over ``/``-separated paths.

    ``*`` and ``?`` stay within one path component, ``[...]`` is a class,
    ``**`` as a whole component matches zero or more components. A match may
    name a folder: everything under it matches too.
    """
    parts = pattern.split("/")
    out: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]*/)*")
        else:
            out.append(_glob_component(part) + ("" if last else "/"))
    return re.compile("".join(out) + r"(?:/.*)?\Z", re.DOTALL)


def _glob_base(pattern: str) -> str:
    """The literal leading part of a glob, up to the last ``/`` before a glob char."""
    m = _GLOB_CHARS.search(pattern)
    head = pattern[: m.start()] if m else pattern
    return head[: head.rfind("/") + 1] if "/" in head else ""


def _expand_glob(uri: str) -> list[FileEntry]:
    if is_s3(uri):
        bucket, key_pattern = _split_s3(uri)
        base = _glob_base(key_pattern)
        rx = _glob_regex(key_pattern)
        entries = _list_s3_prefix(bucket, base, uri)
        return [e for e in entries if rx.match(_split_s3(e.uri)[1])]
    base = _glob_base(uri).rstrip("/") or "/"
    rx = _glob_regex(uri)
    if not os.path.isdir(base):
        return []
    try:
        entries = _list_local_tree(base)
    except Exception as exc:
        raise _fail("list", base, exc) from exc
    return [e for e in entries if rx.match(e.uri)]


def _relative_entry(list_uri: str, parent: str, lineno: int, item: str) -> str:
    """Resolve a relative list entry against the list's folder (``..`` allowed)."""
    if not is_s3(parent):
        return normalize_uri(os.path.join(parent, item))
    bucket, key = _split_s3(parent + "/")
    joined = posixpath.normpath(posixpath.join(key, item))
    if joined == ".." or joined.startswith("../"):
        raise StorageError(f"{list_uri} line {lineno}: {item!r} points above the bucket root")
    return f"s3://{bucket}/{joined}"


def _read_uri_list(list_uri: str) -> list[FileEntry]:
    """Entries of a text file of URIs; relative entries are relative to its folder."""
    try:
        text = read_bytes(list_uri).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StorageError(
            f"input {list_uri} is neither an audio file nor a UTF-8 text list of URIs "
            f"(one per line): {exc}"
        ) from exc
    parent = list_uri.rsplit("/", 1)[0] if is_s3(list_uri) else os.path.dirname(list_uri)
    uris: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        if is_s3(item) or item.startswith(("s3a://", "s3n://", "file://")) or os.path.isabs(item):
            uris.append((lineno, normalize_uri(item)))
        elif "://" in item:
            raise StorageError(f"{list_uri} line {lineno}: {item!r} has an unsupported scheme; expected a path or s3://bucket/key")
        else:
            uris.append((lineno, _relative_entry(list_uri, parent, lineno, item)))

    def stat(item: tuple[int, str]) -> FileEntry:
        lineno, uri = item
        if is_s3(uri):
            entry = _head_s3(uri)
        else:
            entry = _local_stat(uri) if os.path.isfile(uri) else None
        if entry is None:
            # Listed but missing: it stays in the sweep and ends as an error row
            # ("does not exist"), so nothing listed is silently dropped.
            log.warning("%s line %d: %s does not exist or is not a file", list_uri, lineno, uri)
            return FileEntry(uri=uri, size=0, etag=None)
        return entry

    if any(is_s3(u) for _, u in uris):
        with concurrent.futures.ThreadPoolExecutor(_S3_HEAD_THREADS) as pool:
            return list(pool.map(stat, uris))
    return [stat(item) for item in uris]


def _expand_input(uri: str, audio_exts: frozenset[str]) -> tuple[list[FileEntry], bool]:
    """Entries of one input and whether they still need the extension filter."""
    raw = uri
    uri = normalize_uri(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        if _GLOB_CHARS.search(key):
            entries = _expand_glob(uri)
            if not entries:
                raise StorageError(f"input {raw!r} matched no S3 objects")
            return entries, True
        single = _head_s3(uri)
        if single is not None:
            if _is_list_file(uri, audio_exts):
                return _read_uri_list(uri), False
            return [single], False
        key = key.rstrip("/")
        entries = _list_s3_prefix(bucket, f"{key}/" if key else "", uri)
        if not entries and key:
            raise StorageError(f"input {raw!r} does not exist: no S3 object or prefix s3://{bucket}/{key}")
        return entries, True
    if _GLOB_CHARS.search(uri) and not os.path.exists(uri):
        entries = _expand_glob(uri)
        if not entries:
            raise StorageError(f"input {raw!r} matched no files")
        return entries, True
    if os.path.isdir(uri):
        try:
            return _list_local_tree(uri), True
        except Exception as exc:
            raise _fail("list", uri, exc) from exc
    if os.path.isfile(uri):
        if _is_list_file(uri, audio_exts):
            return _read_uri_list(uri), False
        return [_local_stat(uri)], False
    raise StorageError(f"input {raw!r} does not exist (expected a folder, a file, a glob or a text list of URIs)")


def list_inputs(inputs: Iterable[str], *, extensions: frozenset[str] = AUDIO_EXTENSIONS) -> list[FileEntry]:
    """Expand a sweep's inputs into the recordings to process.

    Each input is one of:

    - a local folder (listed recursively) or ``s3://bucket/prefix`` (every object under it);
    - a glob, local or S3: ``*`` and ``?`` within a path component, ``**`` across
      components; a match that is a folder brings everything under it;
    - a single recording (a file with an audio extension), taken as is;
    - a text file of URIs, one per line (``#`` comments and blank lines ignored;
      relative entries are relative to the list's folder). An input is a list
      when its suffix is ``.txt``/``.lst`` or it is a file whose extension is
      not an audio one. Its entries are taken as is, without the extension filter,
      and each must exist.

    Parameters
    ----------
    inputs : iterable of str
        Local paths, globs, ``s3://`` URIs.
    extensions : frozenset of str
        Audio extensions to keep from folders and globs, with dot, any case.

    Returns
    -------
    list of FileEntry
        Sorted by URI, each URI once.

    Raises
    ------
    StorageError
        An input does not exist, a glob or prefix matches nothing, a list entry
        is missing, or storage could not be read.
    """
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    exts = frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    audio_exts = AUDIO_EXTENSIONS | exts
    found: dict[str, FileEntry] = {}
    for item in inputs:
        entries, filtered = _expand_input(item, audio_exts)
        for entry in entries:
            if filtered and _extension(entry.uri) not in exts:
                continue
            found.setdefault(entry.uri, entry)
    result = [found[u] for u in sorted(found)]
    log.debug("listed %d recordings from %d inputs", len(result), len(inputs))
    return result


# ---------------------------------------------------------------------------
# Access check
# ---------------------------------------------------------------------------


def check_access(uri: str, *, write: bool = False, timeout_s: float = 10.0) -> None:
    """Fail early, with a clear message, when ``uri`` cannot be reached.

    For S3 it lists at most one key under the URI (which checks the endpoint,
    the credentials, the bucket and the right to list) with one attempt and a
    short timeout; with ``write=True`` it also writes and deletes a small
    probe object under the prefix. Locally it checks that the path (or, for a
    glob or an output folder yet to be made, its nearest existing folder) is
    there and readable (writable with ``write=True``).

    Parameters
    ----------
    uri : str
        An input or output URI; globs are allowed.
    write : bool
        Also check that writing is allowed (for the output root).
    timeout_s : float
        Connect and read timeout for the S3 check, in seconds.

    Raises
    ------
    StorageError
        Naming the URI, the endpoint and what to check.
    """
    uri = normalize_uri(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        m = _GLOB_CHARS.search(key)
        prefix = key[: m.start()] if m else key
        client = _s3_client(attempts=1, timeout_s=timeout_s)
        try:
            client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except Exception as exc:
            raise StorageError(f"S3 access check failed: {_describe_s3_error(uri, exc)}") from exc
        if write:
            probe = join(f"s3://{bucket}", prefix.rstrip("/"), f".soundbatch-write-check-{uuid.uuid4().hex}")
            try:
                write_bytes(probe, b"")
                delete(probe)
            except StorageError as exc:
                raise StorageError(f"S3 access check failed: cannot write under {uri}: {exc}") from exc
        return
    m = _GLOB_CHARS.search(uri)
    path = uri if not m or os.path.exists(uri) else (_glob_base(uri).rstrip("/") or "/")
    if not write:
        if not os.path.exists(path):
            raise StorageError(f"access check failed: {path} does not exist")
        if not os.access(path, os.R_OK):
            raise StorageError(f"access check failed: {path} is not readable by this user")
        return
    probe_dir = path
    while not os.path.exists(probe_dir):
        probe_dir = os.path.dirname(probe_dir)
    if not os.path.isdir(probe_dir):
        raise StorageError(f"access check failed: {probe_dir} is a file, expected a folder to write {uri} in")
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise StorageError(f"access check failed: cannot write in {probe_dir} (for {uri})")
