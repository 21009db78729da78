"""storage.py against real local files and a real moto S3 server."""

from __future__ import annotations

import io
import os

import boto3
import numpy as np
import pytest
import soundfile as sf

from soundbatch import storage
from soundbatch.errors import StorageError
from soundbatch.storage import AUDIO_EXTENSIONS, FileEntry

from conftest import free_port


def _touch(path, data: bytes = b"x") -> str:
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.fixture
def local_tree(tmp_path):
    root = tmp_path / "archive"
    files = {
        "S01/20261123_000000.WAV": b"a" * 10,
        "S01/20261123_001000.flac": b"b" * 20,
        "S02/deep/x.mp3": b"c" * 30,
        "S02/notes.csv": b"not audio",
        "S02/clip.OGG": b"d" * 5,
    }
    for rel, data in files.items():
        _touch(root / rel, data)
    return root


def _put(bucket_uri: str, keys: dict[str, bytes]) -> None:
    bucket = bucket_uri[len("s3://") :]
    client = boto3.client("s3")
    for key, data in keys.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)


@pytest.fixture
def s3_tree(s3_bucket):
    _put(
        s3_bucket,
        {
            "arch/S01/20261123_000000.WAV": b"a" * 10,
            "arch/S01/20261123_001000.flac": b"b" * 20,
            "arch/S02/deep/x.mp3": b"c" * 30,
            "arch/S02/notes.csv": b"not audio",
            "arch/S02/clip.OGG": b"d" * 5,
            "archive2/other.wav": b"e",
            "arch/dir/": b"",
        },
    )
    return s3_bucket


# --------------------------------------------------------------------- URIs


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("/a/b/../c/./d.wav", "/a/c/d.wav"),
        ("file:///a/b/c.wav", "/a/b/c.wav"),
        ("s3://bkt/a/b.wav", "s3://bkt/a/b.wav"),
        ("s3a://bkt/a", "s3://bkt/a"),
    ],
)
def test_normalize_uri_cases(uri, expected):
    assert storage.normalize_uri(uri) == expected


def test_normalize_uri_relative_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.normalize_uri("x/../y.wav") == str(tmp_path / "y.wav")


def test_normalize_uri_bad_scheme():
    with pytest.raises(StorageError, match="gs://b/x.*unsupported scheme"):
        storage.normalize_uri("gs://b/x")


@pytest.mark.parametrize(
    "base, parts, expected",
    [
        ("s3://b/out", ("events", "/date=x/", "f.parquet"), "s3://b/out/events/date=x/f.parquet"),
        ("s3://b/out/", ("runs",), "s3://b/out/runs"),
        ("s3://b", ("k",), "s3://b/k"),
        ("/o/out", ("events", "/abs"), "/o/out/events/abs"),
    ],
)
def test_join_cases(base, parts, expected):
    assert storage.join(base, *parts) == expected


# ------------------------------------------------------------ local listing


def test_list_inputs_local_folder(local_tree):
    entries = storage.list_inputs([str(local_tree)], extensions=AUDIO_EXTENSIONS)
    names = [os.path.relpath(e.uri, local_tree) for e in entries]
    assert names == ["S01/20261123_000000.WAV", "S01/20261123_001000.flac", "S02/clip.OGG", "S02/deep/x.mp3"]
    for e in entries:
        st = os.stat(e.uri)
        assert os.path.isabs(e.uri)
        assert e.size == st.st_size
        assert e.etag == f"{st.st_size}-{st.st_mtime_ns}"


def test_list_inputs_local_extension_filter_case_insensitive(local_tree):
    entries = storage.list_inputs([str(local_tree)], extensions=frozenset({".WAV", "ogg"}))
    assert [os.path.basename(e.uri) for e in entries] == ["20261123_000000.WAV", "clip.OGG"]


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("*/*.flac", ["S01/20261123_001000.flac"]),
        ("**/*.mp3", ["S02/deep/x.mp3"]),
        ("S0[2]/*", ["S02/clip.OGG", "S02/deep/x.mp3"]),  # a matched folder brings its contents
        ("S0[2]/*.*", ["S02/clip.OGG"]),
        ("S02", ["S02/clip.OGG", "S02/deep/x.mp3"]),
        ("S0?", ["S01/20261123_000000.WAV", "S01/20261123_001000.flac", "S02/clip.OGG", "S02/deep/x.mp3"]),
        ("**", ["S01/20261123_000000.WAV", "S01/20261123_001000.flac", "S02/clip.OGG", "S02/deep/x.mp3"]),
    ],
)
def test_list_inputs_local_glob(local_tree, pattern, expected):
    entries = storage.list_inputs([f"{local_tree}/{pattern}"], extensions=AUDIO_EXTENSIONS)
    assert [os.path.relpath(e.uri, local_tree) for e in entries] == expected


def test_list_inputs_dedup_and_sorted(local_tree):
    entries = storage.list_inputs(
        [f"{local_tree}/S02", str(local_tree), f"{local_tree}/S01/../S01/20261123_000000.WAV"],
        extensions=AUDIO_EXTENSIONS,
    )
    uris = [e.uri for e in entries]
    assert uris == sorted(set(uris))
    assert len(uris) == 4
    assert all(".." not in u for u in uris)


def test_list_inputs_local_text_list(local_tree, tmp_path):
    listing = tmp_path / "inputs.txt"
    listing.write_text(
        "# recordings to redo\n\n"
        f"{local_tree}/S01/20261123_000000.WAV\n"
        "  archive/S02/notes.csv  \n"  # relative to the list's folder; taken as is
    )
    entries = storage.list_inputs([str(listing)], extensions=AUDIO_EXTENSIONS)
    assert [e.uri for e in entries] == [
        str(local_tree / "S01/20261123_000000.WAV"),
        str(local_tree / "S02/notes.csv"),
    ]
    assert entries[1].size == len(b"not audio")


def test_list_inputs_non_audio_file_is_a_list(local_tree, tmp_path):
    listing = tmp_path / "inputs"  # no suffix, not audio: a list
    listing.write_text(f"{local_tree}/S02/clip.OGG\n")
    entries = storage.list_inputs([str(listing)], extensions=frozenset({".wav"}))
    assert [os.path.basename(e.uri) for e in entries] == ["clip.OGG"]


def test_list_inputs_single_audio_file(local_tree):
    path = str(local_tree / "S02/clip.OGG")
    assert storage.list_inputs([path], extensions=AUDIO_EXTENSIONS) == [storage._local_stat(path)]


def test_list_inputs_list_entry_missing_stays_listed(tmp_path, caplog):
    """A listed file that is missing stays in the sweep (it ends as an error row)."""
    listing = tmp_path / "inputs.lst"
    listing.write_text("# one\n/nowhere/a.wav\n")
    entries = storage.list_inputs([str(listing)], extensions=AUDIO_EXTENSIONS)
    assert entries == [storage.FileEntry(uri="/nowhere/a.wav", size=0, etag=None)]
    assert "inputs.lst line 2: /nowhere/a.wav does not exist" in caplog.text


@pytest.mark.parametrize("missing", ["no-such-folder", "no-such-*.wav"])
def test_list_inputs_local_missing(tmp_path, missing):
    with pytest.raises(StorageError, match=f"input .*{missing.replace('*', '[*]')}"):
        storage.list_inputs([str(tmp_path / missing)], extensions=AUDIO_EXTENSIONS)


def test_list_inputs_empty_folder_gives_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    assert storage.list_inputs([str(tmp_path / "empty")], extensions=AUDIO_EXTENSIONS) == []


# ------------------------------------------------------------ local files


def test_local_roundtrip(tmp_path):
    uri = str(tmp_path / "out" / "a" / "b.bin")
    assert not storage.exists(uri)
    storage.write_bytes(uri, b"hello")
    assert storage.exists(uri)
    assert storage.read_bytes(uri) == b"hello"
    storage.write_bytes(uri, b"again")
    assert storage.read_bytes(uri) == b"again"
    assert os.listdir(tmp_path / "out" / "a") == ["b.bin"]  # no temporary files left
    storage.write_bytes(str(tmp_path / "out" / "c.json"), b"{}")
    assert [os.path.relpath(e.uri, tmp_path) for e in storage.list_files(str(tmp_path / "out"))] == [
        "out/a/b.bin",
        "out/c.json",
    ]
    assert [e.uri for e in storage.list_files(str(tmp_path / "out"), suffix=".json")] == [
        str(tmp_path / "out" / "c.json")
    ]
    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri)  # already gone: fine
    assert storage.list_files(str(tmp_path / "nothing-here")) == []


def test_local_read_missing(tmp_path):
    with pytest.raises(StorageError, match="read: .*missing.bin does not exist"):
        storage.read_bytes(str(tmp_path / "missing.bin"))
    with pytest.raises(StorageError, match="open: .*missing.wav does not exist"):
        storage.open_input(str(tmp_path / "missing.wav"))


def test_local_open_input_is_buffered_and_seekable(write_audio):
    path = write_audio("a.wav", seconds=0.5)
    with storage.open_input(path) as f:
        assert isinstance(f, io.BufferedReader)
        assert f.seekable()
        with sf.SoundFile(f) as snd:
            snd.seek(4000)
            part = snd.read(100)
    full, _ = sf.read(path)
    np.testing.assert_array_equal(part, full[4000:4100])


def test_local_check_access(tmp_path):
    storage.check_access(str(tmp_path))
    storage.check_access(str(tmp_path / "new" / "out"), write=True)
    with pytest.raises(StorageError, match="does not exist"):
        storage.check_access(str(tmp_path / "nope"))


# ---------------------------------------------------------------- S3 listing


@pytest.mark.s3
def test_list_inputs_s3_prefix(s3_tree):
    entries = storage.list_inputs([f"{s3_tree}/arch"], extensions=AUDIO_EXTENSIONS)
    assert [e.uri for e in entries] == [
        "s3://sb-test/arch/S01/20261123_000000.WAV",
        "s3://sb-test/arch/S01/20261123_001000.flac",
        "s3://sb-test/arch/S02/clip.OGG",
        "s3://sb-test/arch/S02/deep/x.mp3",
    ]
    assert [e.size for e in entries] == [10, 20, 5, 30]
    heads = [boto3.client("s3").head_object(Bucket="sb-test", Key=e.uri[len("s3://sb-test/") :]) for e in entries]
    assert [e.etag for e in entries] == [h["ETag"].strip('"') for h in heads]
    assert all(e.etag and '"' not in e.etag for e in entries)


@pytest.mark.s3
def test_list_inputs_s3_bucket_root_and_trailing_slash(s3_tree):
    root = storage.list_inputs([s3_tree], extensions=frozenset({".wav"}))
    assert [e.uri for e in root] == ["s3://sb-test/arch/S01/20261123_000000.WAV", "s3://sb-test/archive2/other.wav"]
    slash = storage.list_inputs([f"{s3_tree}/arch/"], extensions=frozenset({".wav"}))
    assert [e.uri for e in slash] == ["s3://sb-test/arch/S01/20261123_000000.WAV"]


@pytest.mark.s3
@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("arch/*/*.flac", ["arch/S01/20261123_001000.flac"]),
        ("arch/**/*.mp3", ["arch/S02/deep/x.mp3"]),
        ("arch*/*.wav", ["archive2/other.wav"]),
        ("arch/S0[2]", ["arch/S02/clip.OGG", "arch/S02/deep/x.mp3"]),
    ],
)
def test_list_inputs_s3_glob(s3_tree, pattern, expected):
    entries = storage.list_inputs([f"{s3_tree}/{pattern}"], extensions=AUDIO_EXTENSIONS)
    assert [e.uri for e in entries] == [f"s3://sb-test/{k}" for k in expected]
    assert all(e.etag for e in entries)


@pytest.mark.s3
def test_list_inputs_s3_text_list(s3_tree, tmp_path):
    _put(
        s3_tree,
        {"lists/redo.txt": b"# redo\ns3://sb-test/arch/S02/notes.csv\n\n../arch/S01/20261123_000000.WAV\n"},
    )
    entries = storage.list_inputs(["s3://sb-test/lists/redo.txt"], extensions=AUDIO_EXTENSIONS)
    assert [e.uri for e in entries] == [
        "s3://sb-test/arch/S01/20261123_000000.WAV",
        "s3://sb-test/arch/S02/notes.csv",  # taken as is: no extension filter on lists
    ]


@pytest.mark.s3
def test_list_inputs_local_list_of_s3_uris(s3_tree, tmp_path):
    listing = tmp_path / "s3.lst"
    listing.write_text("s3://sb-test/arch/S02/clip.OGG\ns3://sb-test/arch/S02/notes.csv\n")
    entries = storage.list_inputs([str(listing)], extensions=AUDIO_EXTENSIONS)
    assert [(e.uri, e.size) for e in entries] == [
        ("s3://sb-test/arch/S02/clip.OGG", 5),
        ("s3://sb-test/arch/S02/notes.csv", 9),
    ]
    assert all(e.etag for e in entries)


@pytest.mark.s3
def test_list_inputs_s3_single_object(s3_tree):
    entries = storage.list_inputs(["s3://sb-test/arch/S02/clip.OGG"], extensions=AUDIO_EXTENSIONS)
    assert [(e.uri, e.size) for e in entries] == [("s3://sb-test/arch/S02/clip.OGG", 5)]
    assert entries[0].etag


@pytest.mark.s3
@pytest.mark.parametrize(
    "uri, match",
    [
        ("s3://sb-test/nope", r"input 's3://sb-test/nope' does not exist"),
        ("s3://sb-test/nope/*.wav", r"input 's3://sb-test/nope/\*.wav' matched no S3 objects"),
        ("s3://no-such-bucket/x", r"no-such-bucket.*does not exist"),
    ],
)
def test_list_inputs_s3_missing(s3_tree, uri, match):
    with pytest.raises(StorageError, match=match):
        storage.list_inputs([uri], extensions=AUDIO_EXTENSIONS)


@pytest.mark.s3
def test_list_inputs_s3_list_entry_missing_stays_listed(s3_tree):
    _put(s3_tree, {"l.txt": b"s3://sb-test/arch/none.wav\n"})
    entries = storage.list_inputs(["s3://sb-test/l.txt"], extensions=AUDIO_EXTENSIONS)
    assert entries == [storage.FileEntry(uri="s3://sb-test/arch/none.wav", size=0, etag=None)]


# ---------------------------------------------------------------- S3 files


@pytest.mark.s3
def test_s3_roundtrip(s3_bucket):
    uri = f"{s3_bucket}/out/runs/r1.json"
    assert not storage.exists(uri)
    storage.write_bytes(uri, b'{"a": 1}')
    assert storage.exists(uri)
    assert storage.exists(f"{s3_bucket}/out/runs")  # a prefix with objects
    assert storage.read_bytes(uri) == b'{"a": 1}'
    storage.write_bytes(f"{s3_bucket}/out/events/date=2026-11-23/p.parquet", b"PAR1")
    storage.write_bytes(f"{s3_bucket}/outside.json", b"{}")
    listed = storage.list_files(f"{s3_bucket}/out")
    assert [e.uri for e in listed] == [
        f"{s3_bucket}/out/events/date=2026-11-23/p.parquet",
        f"{s3_bucket}/out/runs/r1.json",
    ]
    assert all(e.etag for e in listed)
    assert [e.uri for e in storage.list_files(f"{s3_bucket}/out/", suffix=".json")] == [uri]
    assert storage.list_files(f"{s3_bucket}/nothing") == []
    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri)
    with pytest.raises(StorageError, match="r1.json"):
        storage.read_bytes(uri)


@pytest.mark.s3
def test_s3_open_input_seek_and_read(s3_bucket, write_audio):
    path = write_audio("tone.flac", seconds=2.0)
    uri = f"{s3_bucket}/rec/tone.flac"
    storage.copy(path, uri)
    with storage.open_input(uri) as f:
        assert isinstance(f, io.BufferedReader)
        f.seek(4)
        assert f.read(4) == open(path, "rb").read()[4:8]
        f.seek(0)
        with sf.SoundFile(f) as snd:
            assert snd.frames == 32000
            snd.seek(20000)
            part = snd.read(256)
    full, _ = sf.read(path)
    np.testing.assert_array_equal(part, full[20000:20256])


@pytest.mark.s3
def test_copy_all_directions(s3_bucket, tmp_path):
    src = str(tmp_path / "a.bin")
    storage.write_bytes(src, b"payload")
    storage.copy(src, f"{s3_bucket}/a.bin")
    storage.copy(f"{s3_bucket}/a.bin", f"{s3_bucket}/b/a.bin")
    storage.copy(f"{s3_bucket}/b/a.bin", str(tmp_path / "back" / "a.bin"))
    assert storage.read_bytes(str(tmp_path / "back" / "a.bin")) == b"payload"
    with pytest.raises(StorageError, match="missing.bin"):
        storage.copy(f"{s3_bucket}/missing.bin", str(tmp_path / "x"))


@pytest.mark.s3
def test_filesystem_is_cached_per_process(s3_bucket):
    fs1, path = storage.filesystem(f"{s3_bucket}/k")
    fs2, _ = storage.filesystem(f"{s3_bucket}/other")
    assert fs1 is fs2
    assert path == "sb-test/k"


@pytest.mark.s3
def test_check_access_ok(s3_bucket):
    storage.check_access(f"{s3_bucket}/inputs/**/*.wav")
    storage.check_access(f"{s3_bucket}/out", write=True)
    assert storage.list_files(f"{s3_bucket}/out") == []  # the probe is gone


@pytest.mark.s3
def test_check_access_missing_bucket(s3_bucket):
    with pytest.raises(StorageError, match=r"bucket of s3://no-such-bucket/x does not exist"):
        storage.check_access("s3://no-such-bucket/x")


@pytest.mark.s3
def test_check_access_unreachable_endpoint(s3_bucket, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    with pytest.raises(StorageError, match=rf"cannot reach S3 endpoint {url}.*AWS_ENDPOINT_URL"):
        storage.check_access(f"{s3_bucket}/x", timeout_s=2)


@pytest.mark.s3
def test_bad_endpoint_url_is_config_error(s3_bucket, monkeypatch):
    from soundbatch.errors import ConfigError

    monkeypatch.setenv("AWS_ENDPOINT_URL", "127.0.0.1:9000")
    with pytest.raises(ConfigError, match=r"AWS_ENDPOINT_URL='127.0.0.1:9000'"):
        storage.filesystem(f"{s3_bucket}/x")


def test_file_entry_is_frozen():
    e = FileEntry("/a.wav", 1, "1-2")
    with pytest.raises(AttributeError):
        e.size = 3  # type: ignore[misc]
