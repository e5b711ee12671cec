"""Model references: ``name`` or ``name@version`` text, parsed and validated in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

from imgrec.core.errors import ImgrecError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ModelRefError(ImgrecError):
    """Text that is not ``name`` or ``name@version``."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str | None = None  # None: the latest version

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """``name`` or ``name@version``; letters, digits, '.', '_' and '-', starting with a letter or digit."""
        name, at, version = str(text).strip().partition("@")
        if not NAME_PATTERN.fullmatch(name) or (at and not NAME_PATTERN.fullmatch(version)):
            raise ModelRefError(f"Model {text!r} is not valid. Expected name or name@version "
                                "(letters, digits, '.', '_' or '-').")
        return cls(name, version or None)

    @property
    def pinned(self) -> bool:
        return self.version is not None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"
