"""Datasets that are tables rather than text files: Parquet files, and datasets on the Hugging
Face hub (or a local folder laid out like a hub repository) read through the ``datasets``
library and its cache.

Their records are rows, numbered from 1 (``Record.line`` is the row number), and a problem
in one is reported at ``<source>: row N``.  A hub dataset with one config per language
(``config = "{lang}"``, or a map from language code to config) is read one config per
language, and each row records the language its config holds (:data:`CONFIG_LANGUAGE`): the
long layout, as a ``language`` column would give.

The fingerprint of a hub dataset is a sha256 over its rows (as canonical JSON, config by
config), so it is the same on every machine and changes exactly when the data does; a
Parquet file's is the sha256 of its bytes, as for JSONL and CSV.

``pyarrow`` and ``datasets`` are imported on first use.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import os
from collections.abc import Iterable

from .data import DataError, DataFileError, Record, read_bytes
from .files import sha256_bytes

CONFIG_LANGUAGE = "_config_language"
"""The field each row of a per-language config gets: its config's language code."""

LANG_PLACEHOLDER = "{lang}"

OFFLINE_VARS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


class HubUnavailable(OSError):
    """The hub dataset cannot be read (not cached and no network, no such dataset, config or
    split); the message says what to do."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        self.strerror = message


def read_parquet(path: str) -> tuple[list[Record], str]:
    """The rows of a Parquet file as records, and the file's sha256."""
    raw = read_bytes(path)
    digest = sha256_bytes(raw)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # the compiler alone does not need pyarrow
        raise DataFileError(path, "reading Parquet needs pyarrow (install xlspec with its `run` extra)") from None
    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataError(path, 1, f"not a readable Parquet file ({_first_line(e)})", col=0) from None
    return rows_to_records(table.to_pylist()), digest


def rows_to_records(rows: Iterable[dict], start: int = 1, extra: dict | None = None) -> list[Record]:
    return [Record(start + i, {**{k: plain(v) for k, v in row.items()}, **(extra or {})}) for i, row in enumerate(rows)]


def plain(value):
    """A table value as JSON data (dates and decimals as text, bytes as hex)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time, decimal.Decimal)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return str(value)


def language_configs(config: str | dict[str, str] | None, languages: Iterable[str]) -> dict[str, str] | None:
    """language -> config where the config depends on the language (a map, or a text with
    ``{lang}``); None for one config for every language."""
    if isinstance(config, dict):
        return dict(sorted(config.items()))
    if isinstance(config, str) and LANG_PLACEHOLDER in config:
        return {lang: config.replace(LANG_PLACEHOLDER, lang) for lang in sorted(set(languages))}
    return None


def offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARS)


def read_hub(source: str, config: str | None, split: str | None, revision: str | None,
             configs: dict[str, str] | None = None, skip_missing: bool = False) -> tuple[list[Record], str, dict[str, str] | None]:
    """The rows of a hub dataset (``source``: a hub id, or a local folder laid out as a hub
    repository) with ``datasets.load_dataset(source, config, split=..., revision=...)``.

    ``configs`` (language -> config) reads one config per language and adds
    :data:`CONFIG_LANGUAGE` to each row; with ``skip_missing``, languages whose config the
    dataset does not have are left out (a ``{lang}`` pattern over the spec's languages).
    Returns the records, the fingerprint and the configs read."""
    try:
        import datasets
    except ImportError:
        raise HubUnavailable("reading hub datasets needs the `datasets` library (install xlspec with its `run` extra)") from None
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    digest = hashlib.sha256()
    # The hub id, never a local folder's path: the same data in two checkouts has one
    # fingerprint (plans are byte-identical on every machine).
    hub_id = None if os.path.isdir(source) else source
    digest.update(json.dumps({"hub_id": hub_id, "config": config, "split": split, "revision": revision}, sort_keys=True).encode())
    records: list[Record] = []
    read: dict[str, str] | None = None
    if configs is not None:
        available = None
        if skip_missing:
            available = set(_config_names(datasets, source, revision))
        read = {}
        for lang, name in configs.items():
            if available is not None and name not in available:
                continue
            rows = _load(datasets, source, name, split, revision)
            digest.update(json.dumps([lang, name]).encode())
            _hash_rows(digest, rows)
            records += rows_to_records(rows, start=len(records) + 1, extra={CONFIG_LANGUAGE: lang})
            read[lang] = name
    else:
        rows = _load(datasets, source, config, split, revision)
        _hash_rows(digest, rows)
        records = rows_to_records(rows)
    return records, digest.hexdigest(), read


def _hash_rows(digest, rows: list[dict]) -> None:
    for row in rows:
        digest.update(json.dumps(plain(row), sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode())
        digest.update(b"\n")


def _what_to_do(source: str) -> str:
    if offline():
        return f"it is not in the local datasets cache and {' / '.join(OFFLINE_VARS)} says not to download it: run `xlspec compile` once with network access (the copy is cached), or point hf(...) at a local copy"
    return "check the name and your network access (a private or gated dataset needs `huggingface-cli login`), or point hf(...) at a local copy"


def _config_names(datasets, source: str, revision: str | None) -> list[str]:
    try:
        return list(datasets.get_dataset_config_names(source, revision=revision))
    except Exception as e:  # noqa: BLE001 - the library's many error types: one message
        raise HubUnavailable(f"cannot list the configs of `{source}` ({_first_line(e)}); {_what_to_do(source)}") from None


def _load(datasets, source: str, config: str | None, split: str | None, revision: str | None) -> list[dict]:
    try:
        # A local folder is read afresh each time: the library's cache may not notice a data
        # file edited in place, and reading local files costs little.
        fresh = {"download_mode": "force_redownload", "verification_mode": "no_checks"} if os.path.isdir(source) else {}
        loaded = datasets.load_dataset(source, config, split=split, revision=revision, **fresh)
    except ValueError as e:  # an unknown config or split: the library names the ones there are
        raise HubUnavailable(f"`{source}`{f' config `{config}`' if config else ''}: {_first_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - not found, offline, unreachable
        raise HubUnavailable(f"cannot read `{source}`{f' (config `{config}`)' if config else ''}: {_first_line(e)}; {_what_to_do(source)}") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if len(splits) != 1:
            raise HubUnavailable(f"`{source}`{f' config `{config}`' if config else ''} has the splits {', '.join(splits)}: say which with split = \"...\"")
        loaded = loaded[splits[0]]
    return loaded.to_list()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text and text[0] else type(e).__name__


def read_dataset(fmt: str, abs_path: str, *, hub_id: str | None = None, config: str | None = None, configs: dict[str, str] | None = None,
                 split: str | None = None, revision: str | None = None, skip_missing: bool = False) -> tuple[list[Record], str, dict[str, str] | None]:
    """The records of any data source the spec can name, its fingerprint, and (hub datasets
    with a config per language) the configs read.  One reader for the compiler, the runtime
    and the stale-plan check, so all three see the same records."""
    if fmt == "hf":
        return read_hub(hub_id or abs_path, config, split, revision, configs, skip_missing)
    if fmt == "parquet":
        records, digest = read_parquet(abs_path)
        return records, digest, None
    from .data import read_records

    records, digest = read_records(abs_path, fmt)
    return records, digest, None
