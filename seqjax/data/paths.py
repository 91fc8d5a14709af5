"""Where the real datasets live, and opening their files with errors that name them.

The datasets are read in place from a data directory and never copied: some of them
(CoNLL-2003) may not be redistributed, and all of them are too large for the repo.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "DATA_DIR_ENV",
    "DataFormatError",
    "data_dir",
    "data_file",
    "open_text",
    "read_lines",
    "read_text",
]

DATA_DIR_ENV = "SEQJAX_DATA_DIR"

# seqjax/data/paths.py -> repository root (only meaningful for a source checkout).
_REPO_ROOT = Path(__file__).resolve().parents[2]


class DataFormatError(ValueError):
    """A data file exists but its content is not what the loader expected."""


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Resolves the directory that holds the real datasets.

    Order: the explicit ``path``; the ``SEQJAX_DATA_DIR`` environment variable;
    ``../shared/data`` relative to the current directory; ``../shared/data`` relative
    to the repository root.

    Args:
        path: An explicit directory, which wins over everything else.

    Returns:
        The directory as a ``Path``.

    Raises:
        FileNotFoundError: If the chosen directory does not exist, or none was found.
    """
    if path is not None:
        chosen = Path(path)
        if not chosen.is_dir():
            raise FileNotFoundError(
                f"data directory {str(chosen)!r} (argument data_dir) does not exist"
            )
        return chosen
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        chosen = Path(env)
        if not chosen.is_dir():
            raise FileNotFoundError(
                f"data directory {env!r} from ${DATA_DIR_ENV} does not exist; "
                f"unset {DATA_DIR_ENV} or point it at the shared datasets"
            )
        return chosen
    candidates = [Path.cwd() / ".." / "shared" / "data", _REPO_ROOT / ".." / "shared" / "data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    tried = ", ".join(repr(str(c)) for c in candidates)
    raise FileNotFoundError(
        f"no data directory found: set ${DATA_DIR_ENV} or pass data_dir=... (tried {tried})"
    )


def data_file(relative: str, expected: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Returns ``root/relative`` after checking that the file exists.

    Args:
        relative: Path of the file inside the data directory.
        expected: What the file should contain, quoted in the error message.
        root: The data directory; resolved with :func:`data_dir` when ``None``.

    Raises:
        FileNotFoundError: Naming the missing file and what was expected in it.
    """
    path = data_dir(root) / relative
    if not path.is_file():
        raise FileNotFoundError(f"missing data file {str(path)!r}: expected {expected}")
    return path


def open_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> io.TextIOBase:
    """Opens a text file for reading, transparently gunzipping ``*.gz``.

    Lines keep their newline translation off (``newline=""`` semantics are not used) so
    that ``\\r`` inside records survives; files here are LF-only by contract.
    """
    path = Path(path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="\n")
    return open(path, encoding=encoding, newline="\n")  # noqa: SIM115


def read_lines(path: str | os.PathLike[str], encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yields ``(line_number, line)`` with 1-based numbers and the trailing newline removed.

    Raises:
        DataFormatError: If the file is not valid text in ``encoding`` (or not gzip for
            ``*.gz``), naming the file.
    """
    try:
        with open_text(path, encoding) as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line[:-1] if line.endswith("\n") else line
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{str(path)!r} is not valid {encoding} text: {err}") from err
    except (gzip.BadGzipFile, EOFError) as err:
        raise DataFormatError(f"{str(path)!r} is not a valid gzip file: {err}") from err


def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """Reads a whole text file (gunzipping ``*.gz``), with errors that name the file.

    Raises:
        DataFormatError: If the file is not valid text in ``encoding`` (or bad gzip).
    """
    try:
        with open_text(path, encoding) as handle:
            return handle.read()
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{str(path)!r} is not valid {encoding} text: {err}") from err
    except (gzip.BadGzipFile, EOFError) as err:
        raise DataFormatError(f"{str(path)!r} is not a valid gzip file: {err}") from err
