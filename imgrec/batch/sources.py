"""What ``imgrec batch`` reads: a folder, a glob, a CSV/Parquet list of paths, or a bucket URL, as one file list."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from imgrec.core.errors import ImgrecError, first_line
from imgrec.core.storage import is_url, url_to_fs

LIST_SUFFIXES = (".csv", ".parquet")
PATH_COLUMN = "path"
GLOB_CHARACTERS = "*?["


class SourceError(ImgrecError):
    """A batch source names nothing readable; the message says what was given and what is expected."""


@dataclass(frozen=True)
class Source:
    """Files on one file system: ``paths`` as that file system names them, shown as ``shown(path)``."""

    fs: object  # an fsspec file system
    paths: tuple[str, ...]
    scheme: str  # "" for local files, else e.g. "s3://"

    def shown(self, path: str) -> str:
        """A path as a person passes it (a local path, or a full URL)."""
        return f"{self.scheme}{path}" if self.scheme else path

    def arrow_filesystem(self):
        """The file system for Ray Data's readers: None (Ray's own local one) or the fsspec one wrapped."""
        if not self.scheme:
            return None
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        return PyFileSystem(FSSpecHandler(self.fs))


def resolve_source(source: str) -> Source:
    """Every file ``source`` names, sorted; hidden files (a leading dot) are left out of folders and globs."""
    fs, root = url_to_fs(source)
    scheme = _scheme(fs) if is_url(source) else ""
    try:
        if root.lower().endswith(LIST_SUFFIXES) and fs.isfile(root):
            return _from_list(fs, root, scheme, source)
        base = root
        if any(c in root for c in GLOB_CHARACTERS):
            base = root[: min(root.index(c) for c in GLOB_CHARACTERS if c in root)].rsplit("/", 1)[0]
            paths = [p for p in fs.glob(root) if fs.isfile(p)]
        elif fs.isdir(root):
            paths = list(fs.find(root))
        elif fs.isfile(root):
            paths = [root]
        else:
            raise SourceError(f"Batch source '{source}' does not exist. Expected a folder, a glob, a CSV/Parquet "
                              f"list of paths, or a bucket URL such as s3://bucket/prefix.")
    except OSError as exc:
        raise SourceError(f"Could not read batch source '{source}': {first_line(exc)}.") from None
    paths = sorted(p for p in paths if not any(part.startswith(".") for part in p[len(base):].split("/")))
    if not paths:
        raise SourceError(f"Batch source '{source}' holds no files. Expected image files in it.")
    return Source(fs, tuple(paths), scheme)


def _scheme(fs) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return f"{protocol}://"


def _from_list(fs, root: str, scheme: str, source: str) -> Source:
    import pandas as pd

    with fs.open(root, "rb") as handle:
        try:
            table = pd.read_parquet(handle) if root.lower().endswith(".parquet") else pd.read_csv(handle, dtype=str)
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise SourceError(f"Could not read the path list '{source}': {first_line(exc)}.") from None
    if PATH_COLUMN in table.columns:
        column = table[PATH_COLUMN]
    elif len(table.columns) == 1:
        column = table[table.columns[0]]
    else:
        raise SourceError(f"Path list '{source}' has columns {', '.join(map(str, table.columns))}. "
                          f"Expected one column, or one named '{PATH_COLUMN}'.")
    entries = [str(p).strip() for p in column.dropna() if str(p).strip()]
    if not entries:
        raise SourceError(f"Path list '{source}' names no files. Expected one path per row.")
    folder = posixpath.dirname(root)
    paths = []
    for entry in entries:
        if is_url(entry):
            if not scheme or not entry.startswith(scheme):
                raise SourceError(f"Path list '{source}' names '{entry}', on another file system than the list. "
                                  f"Expected paths {('under ' + scheme) if scheme else 'on this machine'}.")
            paths.append(fs._strip_protocol(entry))
        else:
            paths.append(entry if entry.startswith("/") else posixpath.normpath(posixpath.join(folder, entry)))
    return Source(fs, tuple(dict.fromkeys(paths)), scheme)
