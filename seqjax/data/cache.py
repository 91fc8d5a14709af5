"""On-disk cache of encoded dataset splits, so that a second load reads arrays instead of text.

Tokenizing IMDB's 12M words takes seconds on every call; reading the encoded ids back takes
a fraction of one. The text loaders (``load_imdb``, ``load_imdb_keras``, ``load_mr``,
``load_sarcasm``, ``load_tatoeba``) take ``cache=True`` by default; ``cache=False`` bypasses
the cache entirely, reading nothing from it and writing nothing to it.

Where: ``$SEQJAX_DATA_CACHE_DIR`` if set, else ``$SEQJAX_CACHE_DIR/data``, else
``~/.cache/seqjax/data`` (under ``$XDG_CACHE_HOME`` when that is set). The folder may be
moved or deleted at any time; :func:`clear_cache` empties it, and so does ``rm -r`` on it.

Key: the SHA-256 of everything that decides the result: the loader and each argument that
changes its output, the tokenizer's configuration (and its vocabulary, when it comes
already fitted), each data file's resolved path and SHA-256, and the source code of
``seqjax.data``. A changed data file, tokenizer setting or loader release therefore
misses the cache instead of returning stale ids. Hashing whole files is cheap here
(about 20 ms for each 13 MB IMDB file) and, unlike size and modification time, cannot
be fooled by an edit that keeps both, so nothing cheaper is trusted in its place.

An entry is a folder ``<loader>-<key>`` of plain files, and no pickle: ``arrays.npz``
(uncompressed; a ragged list of sequences is stored as one flat array plus offsets),
``tokenizer.json`` (the tokenizer's own ``to_json``; ``tokenizer-0.json`` and
``tokenizer-1.json`` for a source/target pair), ``info.json`` and ``meta.json`` (the
layout of the splits, the warnings to repeat, and each file's SHA-256). An entry is
written into a temporary folder and renamed into place, so a process that is killed
leaves no partial entry. An entry that cannot be read, or whose files do not match their
recorded hashes, is rebuilt and never returned. CoNLL-2003 is never cached: its licence
forbids copies.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .records import Examples, LoadedDataset
from .tokenizers import tokenizer_from_dict

__all__ = [
    "CACHE_DIR_ENV",
    "cache_dir",
    "cached_load",
    "check_cache",
    "clear_cache",
    "file_fingerprint",
]

CACHE_DIR_ENV = "SEQJAX_DATA_CACHE_DIR"
_FORMAT = 1
_ENTRY_NAME = re.compile(r"^[a-z0-9_]+-[0-9a-f]{32}$")
_SCRATCH_PREFIXES = (".tmp-", ".trash-")
_SCRATCH_MAX_AGE_S = 24 * 3600
_log = logging.getLogger(__name__)

Build = Callable[[], tuple[LoadedDataset, list[str]]]


class _Uncacheable(Exception):
    """The result holds something this cache cannot store; it is returned uncached."""


class _Corrupt(Exception):
    """An entry on disk is not what its meta.json says; it is rebuilt."""


def check_cache(cache: object) -> None:
    """Validates a loader's ``cache`` argument.

    Raises:
        ValueError: If ``cache`` is not a bool.
    """
    if not isinstance(cache, bool):
        raise ValueError(f"cache must be True or False, got {cache!r}")


def cache_dir() -> Path:
    """The folder of the data cache (it may not exist yet).

    ``$SEQJAX_DATA_CACHE_DIR`` if set, else ``$SEQJAX_CACHE_DIR/data``, else
    ``$XDG_CACHE_HOME/seqjax/data``, else ``~/.cache/seqjax/data``.
    """
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    shared = os.environ.get("SEQJAX_CACHE_DIR")
    if shared:
        return Path(shared) / "data"
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home) / "seqjax" / "data"


def clear_cache(loader: str | None = None) -> int:
    """Deletes cached dataset entries (and leftovers of interrupted writes).

    Only folders this cache wrote are touched, so pointing ``$SEQJAX_DATA_CACHE_DIR`` at
    a folder that holds other files is safe.

    Args:
        loader: Only this loader's entries (e.g. ``"load_imdb"``); ``None`` clears all.

    Returns:
        The number of entries deleted.
    """
    root = cache_dir()
    if not root.is_dir():
        return 0
    removed = 0
    for path in root.iterdir():
        if not path.is_dir():
            continue
        if path.name.startswith(_SCRATCH_PREFIXES):
            if loader is None:
                shutil.rmtree(path, ignore_errors=True)
            continue
        if not _ENTRY_NAME.match(path.name):
            continue
        if loader is not None and path.name.rsplit("-", 1)[0] != loader:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


@functools.cache
def _hash_file(path: str, stat_key: tuple[int, ...]) -> str:
    # stat_key is part of the memo key only: a file rewritten in place hashes again. It
    # holds the ctime, which every write (and every utime) moves, so not even an edit
    # that restores the size and mtime reuses the old hash.
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Resolved path, size and SHA-256 of a data file: its part of a cache key.

    The modification time is left out on purpose: the content hash already decides,
    and a copied or touched file with the same bytes should still hit. The path stays
    in because results record it (``info["files"]``). The hash is remembered for the
    life of the process while the file's inode, size, mtime and ctime stay the same.
    """
    resolved = Path(path).resolve()
    stat = resolved.stat()
    stat_key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    return {
        "path": str(resolved),
        "size": stat.st_size,
        "sha256": _hash_file(str(resolved), stat_key),
    }


@functools.cache
def _code_digest() -> str:
    """SHA-256 of seqjax.data's source: a loader change must not return old results."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _key_digest(loader: str, key: dict[str, Any]) -> str:
    payload = {"format": _FORMAT, "loader": loader, "code": _code_digest(), "key": key}
    try:
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise _Uncacheable(f"the cache key is not JSON: {err}") from err
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_load(
    loader: str,
    key: dict[str, Any],
    build: Build,
    *,
    cache: bool,
    given_tokenizer: Any = None,
) -> LoadedDataset:
    """Returns the loader's result from the cache, or builds, stores and returns it.

    Args:
        loader: The loader's name, the first part of the entry's folder name.
        key: JSON-able description of every input that changes the result (arguments,
            tokenizer configuration, :func:`file_fingerprint` of each data file).
        build: Computes the result: ``(dataset, warnings)``. The warnings (one message per
            skipped-records report) are emitted here, on a hit as on a miss.
        cache: ``False`` calls ``build`` and touches no file.
        given_tokenizer: The tokenizer the caller passed, if any. A loader fits an
            unfitted one in place, so on a hit it takes the cached tokenizer's state,
            and it is the one returned.

    Raises:
        ValueError: If ``cache`` is not a bool.
    """
    check_cache(cache)
    entry = None
    if cache:
        try:
            entry = cache_dir() / f"{loader}-{_key_digest(loader, key)}"
        except _Uncacheable as err:
            _log.debug("seqjax.data: %s is not cached: %s", loader, err)
    found = _try_read(entry) if entry is not None else None
    if found is not None:
        dataset, messages = found
        dataset = _with_given_tokenizer(dataset, given_tokenizer)
    else:
        dataset, messages = build()
        if entry is not None:
            dataset = _try_write(entry, dataset, messages)
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=3)
    return dataset


def _with_given_tokenizer(dataset: LoadedDataset, given: Any) -> LoadedDataset:
    if given is None:
        return dataset
    if given.vocab_size == len(given.reserved_tokens):  # unfitted: the loader would fit it
        given._take_state(dataset.tokenizer)
    dataset.tokenizer = given
    return dataset


# -- reading -------------------------------------------------------------------------------
def _try_read(entry: Path) -> tuple[LoadedDataset, list[str]] | None:
    if not entry.is_dir():
        return None
    try:
        return _read(entry)
    except Exception as err:  # noqa: BLE001 - any failure to read means: rebuild
        _log.warning("seqjax.data: rebuilding the unreadable cache entry %s (%s)", entry, err)
        return None


def _read(entry: Path) -> tuple[LoadedDataset, list[str]]:
    meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    if meta.get("format") != _FORMAT or meta.get("name") != entry.name:
        raise _Corrupt("meta.json belongs to another entry or format")
    contents = {}
    for name, expected in meta["sha256"].items():
        data = (entry / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            raise _Corrupt(f"{name} does not match its recorded SHA-256")
        contents[name] = data
    with np.load(io.BytesIO(contents["arrays.npz"]), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    splits = {
        name: Examples(_unpack(spec["inputs"], arrays), _unpack(spec["targets"], arrays))
        for name, spec in meta["splits"].items()
    }
    tokenizers = [
        tokenizer_from_dict(json.loads(contents[name]), what=str(entry / name))
        for name in meta["tokenizer_files"]
    ]
    kind = meta["tokenizer"]
    tokenizer = None if kind == "none" else tokenizers[0] if kind == "single" else tuple(tokenizers)
    info = json.loads(contents["info.json"])
    return LoadedDataset(splits, tokenizer, info), list(meta["warnings"])


def _unpack(spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    kind = spec["kind"]
    if kind == "array":
        return arrays[spec["name"]]
    if kind == "tuple":
        return tuple(_unpack(item, arrays) for item in spec["items"])
    if kind == "ragged":
        flat, offsets = arrays[spec["name"] + ".flat"], arrays[spec["name"] + ".offsets"]
        if (
            offsets.ndim != 1
            or len(offsets) == 0
            or offsets[0] != 0
            or offsets[-1] != len(flat)
            or (np.diff(offsets) < 0).any()
        ):
            raise _Corrupt(f"offsets of {spec['name']} do not partition its flat array")
        bounds = offsets.tolist()  # plain slicing: about 3x faster than np.split here
        return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    raise _Corrupt(f"unknown layout {kind!r}")


# -- writing -------------------------------------------------------------------------------
def _pack(value: Any, name: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise _Uncacheable(f"{name} is an object array")
        arrays[name] = value
        return {"kind": "array", "name": name}
    if isinstance(value, tuple):
        return {
            "kind": "tuple",
            "items": [_pack(item, f"{name}.{i}", arrays) for i, item in enumerate(value)],
        }
    if isinstance(value, list) and all(
        isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype != object for v in value
    ):
        dtypes = {v.dtype for v in value}
        if len(dtypes) > 1:
            raise _Uncacheable(f"{name} mixes dtypes {sorted(map(str, dtypes))}")
        dtype = dtypes.pop() if dtypes else np.dtype(np.int32)
        lengths = np.fromiter((len(v) for v in value), np.int64, len(value))
        arrays[name + ".flat"] = np.concatenate(value) if value else np.zeros(0, dtype)
        arrays[name + ".offsets"] = np.concatenate([[0], np.cumsum(lengths)])
        return {"kind": "ragged", "name": name}
    raise _Uncacheable(f"{name} is a {type(value).__name__}, not arrays")


def _try_write(entry: Path, dataset: LoadedDataset, messages: list[str]) -> LoadedDataset:
    """Stores ``dataset``; returns it with ``info`` as read back from JSON (as a hit would)."""
    try:
        info_json = json.dumps(dataset.info, ensure_ascii=False, allow_nan=False)
        arrays: dict[str, np.ndarray] = {}
        layout = {
            name: {
                "inputs": _pack(ex.inputs, f"{name}.inputs", arrays),
                "targets": _pack(ex.targets, f"{name}.targets", arrays),
            }
            for name, ex in dataset.splits.items()
        }
        tok = dataset.tokenizer
        if tok is None:
            kind, toks = "none", []
        elif isinstance(tok, tuple):
            kind, toks = "tuple", list(tok)
        else:
            kind, toks = "single", [tok]
        if not all(hasattr(t, "to_json") for t in toks):
            raise _Uncacheable("the tokenizer has no to_json")
    except (_Uncacheable, TypeError, ValueError) as err:
        _log.debug("seqjax.data: %s is not cached: %s", entry.name, err)
        return dataset
    names = (
        ["tokenizer.json"]
        if kind == "single"
        else [f"tokenizer-{i}.json" for i in range(len(toks))]
    )
    files = {
        "info.json": info_json.encode(),
        **{n: t.to_json().encode() for n, t in zip(names, toks)},
    }
    try:
        _write(entry, arrays, files, layout, kind, names, messages)
    except OSError as err:
        warnings.warn(
            f"seqjax.data: could not write the cache entry {entry} ({err}); set "
            f"${CACHE_DIR_ENV} to a writable folder, or pass cache=False",
            RuntimeWarning,
            stacklevel=4,
        )
    dataset.info = json.loads(info_json)
    return dataset


def _write(
    entry: Path,
    arrays: dict[str, np.ndarray],
    files: dict[str, bytes],
    layout: dict[str, Any],
    kind: str,
    tokenizer_files: list[str],
    messages: list[str],
) -> None:
    root = entry.parent
    root.mkdir(parents=True, exist_ok=True)
    _remove_old_scratch(root)
    if entry.exists():  # unreadable (a good entry would have been returned): set it aside
        _discard(entry, root)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        files = {"arrays.npz": buffer.getvalue(), **files}
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        meta = {
            "format": _FORMAT,
            "name": entry.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "splits": layout,
            "tokenizer": kind,
            "tokenizer_files": tokenizer_files,
            "warnings": messages,
            "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        try:
            os.rename(tmp, entry)  # atomic: readers see all of the entry or none of it
        except OSError:
            if not entry.is_dir():
                raise
            # Another process wrote the same entry first; its content equals ours.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _discard(path: Path, root: Path) -> None:
    trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=root))
    try:
        os.rename(path, trash / path.name)
    except OSError:
        pass  # already gone (another process got there first)
    shutil.rmtree(trash, ignore_errors=True)


def _remove_old_scratch(root: Path) -> None:
    # Leftovers of processes killed while writing; young ones may still be in use.
    now = time.time()
    for path in root.iterdir():
        if path.name.startswith(_SCRATCH_PREFIXES):
            try:
                if now - path.stat().st_mtime > _SCRATCH_MAX_AGE_S:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
