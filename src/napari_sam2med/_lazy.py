"""Lazy re-exports for package ``__init__`` modules (PEP 562), shared by ``engine`` and ``sam2``.

They re-export names from their submodules without importing them up front, so that the torch-free
parts (the model registry, the generator driver) can be used without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, MutableMapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: dict[str, str],
                 namespace: MutableMapping[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for a package that re-exports names lazily.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    where : dict of str to str
        Exported name -> submodule (relative to ``package``) that defines it.
    namespace : mapping
        The package's ``globals()``: a name, once imported, is stored there so later look-ups skip
        ``__getattr__``.

    Returns
    -------
    tuple of callable
        ``(__getattr__, __dir__)`` to assign at module level.
    """

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{where[name]}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__
