"""Storage under an fsspec URL (a local folder, ``s3://bucket/prefix``, ``gs://…``): atomic writes, checked reads.

A bucket has no rename, but one PUT is all-or-nothing: readers see the whole object or none of it, so a
single-object write is the bucket's atomic write. A folder of several files (a model version) is published
with its marker file (``card.json``) last, so a reader never finds a marker whose files are not all there.
Credentials and endpoints come from the file system's own configuration (for S3 the usual ``AWS_*``
variables, e.g. ``AWS_ENDPOINT_URL`` for an S3-compatible server), never from imgrec.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from imgrec.core.errors import ImgrecError, SettingsError, first_line
from imgrec.core.files import write_atomically
from imgrec.core.settings import Settings


class StorageError(ImgrecError):
    """A file under the storage URL could not be written, found or trusted."""


def is_url(text: str) -> bool:
    """Whether ``text`` names a remote file system (``s3://…``) rather than a local path."""
    return "://" in str(text) and not str(text).startswith("file://")


def url_to_fs(url: str):
    """``(file system, path inside it)`` for a folder or URL, refusing an unknown scheme with a clear message."""
    import fsspec  # imported here: reading settings stays cheap

    try:
        return fsspec.core.url_to_fs(str(url))
    except (ImportError, ValueError) as exc:
        raise StorageError(
            f"Cannot use '{url}': {first_line(exc)}. Expected a folder or a URL such as s3://bucket/prefix or gs://bucket/prefix."
        ) from None


class Storage:
    """Files under one root URL, addressed by '/'-separated keys relative to it."""

    def __init__(self, url: str):
        self.url = str(url).rstrip("/")
        self.fs, self.root = url_to_fs(self.url)
        self.local = not is_url(self.url)

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

    def path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def url_of(self, key: str) -> str:
        return f"{self.url}/{key}" if key else self.url

    def exists(self, key: str) -> bool:
        return self._call("look up", key, self.fs.exists, self.path(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write one object whole: temp file and rename locally, a single PUT on a bucket."""
        if self.local:
            write_atomically(Path(self.path(key)), data)
        else:
            self._call("write", key, self.fs.pipe_file, self.path(key), data)

    def read_bytes(self, key: str, sha256: str | None = None) -> bytes:
        """An object's bytes; with ``sha256``, refused unless they match it."""
        try:
            data = self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            raise StorageError(f"'{self.url_of(key)}' does not exist.") from None
        except OSError as exc:
            raise StorageError(f"Could not read '{self.url_of(key)}': {first_line(exc)}.") from None
        if sha256 is not None:
            _check_digest(self.url_of(key), hashlib.sha256(data).hexdigest(), sha256)
        return data

    def put_file(self, local: Path, key: str) -> None:
        if self.local:
            target = Path(self.path(key))
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as tmp:
                pass
            try:
                shutil.copyfile(local, tmp.name)
                Path(tmp.name).replace(target)
            except BaseException:
                Path(tmp.name).unlink(missing_ok=True)
                raise
        else:
            self._call("upload", key, self.fs.put_file, str(local), self.path(key))

    def put_tree(self, folder: Path, prefix: str, last: str) -> None:
        """Upload the files under ``folder`` to ``prefix/``, the file named ``last`` (the marker) after all others."""
        # Hidden files are locks and leftovers of interrupted writes, never part of what is published.
        files = sorted(p for p in Path(folder).rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        files.sort(key=lambda p: p.relative_to(folder).as_posix() == last)
        for file in files:
            self.put_file(file, f"{prefix}/{file.relative_to(folder).as_posix()}")

    def get_tree(self, prefix: str, folder: Path) -> None:
        """Download everything under ``prefix/`` into ``folder`` (a new folder, renamed in whole)."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
        try:
            base = self.path(prefix)
            for remote in self._call("list", prefix, self.fs.find, base):
                target = staging / remote[len(base) :].lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                self._call("download", prefix, self.fs.get_file, remote, str(target))
            staging.chmod(0o755)
            staging.rename(folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def list_names(self, prefix: str) -> list[str]:
        """The names of the folders and files directly under ``prefix`` (none when it does not exist)."""
        try:
            entries = self.fs.ls(self.path(prefix), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"Could not list '{self.url_of(prefix)}': {first_line(exc)}.") from None
        return sorted({entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries})

    def modified(self, key: str) -> float:
        """When an object was last written, in seconds since the epoch."""
        return self._call("look up", key, self.fs.modified, self.path(key)).timestamp()

    def delete(self, key: str) -> None:
        """Delete a file or everything under a prefix; a missing one is not an error."""
        try:
            self.fs.rm(self.path(key), recursive=True)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"Could not delete '{self.url_of(key)}': {first_line(exc)}.") from None

    def _call(self, verb: str, key: str, method, *args):
        try:
            return method(*args)
        except OSError as exc:
            raise StorageError(f"Could not {verb} '{self.url_of(key)}': {first_line(exc)}.") from None


def _check_digest(where: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise StorageError(
            f"'{where}' has checksum {actual[:12]}…, expected {expected[:12]}…. The file is corrupt or was replaced."
        )


def storage_for(settings: Settings) -> Storage | None:
    """The storage ``IMGREC_STORAGE_URL`` names, or None for local folders (the default)."""
    if not settings.storage_url:
        return None
    try:
        return Storage(settings.storage_url)
    except StorageError as exc:
        raise SettingsError(f"IMGREC_STORAGE_URL={settings.storage_url!r}: {exc}") from None
