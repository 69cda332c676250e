"""buildyard: a continuous-integration master and worker on asyncio, successor to Buildbot."""

import sys as _sys

__version__ = "0.1.0"


def _import_structlog() -> None:
    """Import structlog without rich and Twisted.

    structlog imports rich (for its pretty tracebacks) and Twisted (for its Twisted logger)
    whenever they are installed, which costs a master about 7 MiB and 100 modules at start-up.
    buildyard uses neither through structlog: its logs print plain tracebacks, with or
    without rich installed (with rich, structlog's console used to print rich's boxed ones:
    that changed on purpose), and Twisted is loaded only for users' Twisted-style code
    (buildyard.compat.twisted). So both are hidden while structlog is imported, and visible
    again afterwards for whoever imports them later.
    """
    if "structlog" in _sys.modules:
        return
    hidden = [name for name in ("rich", "twisted") if name not in _sys.modules]
    for name in hidden:
        _sys.modules[name] = None  # type: ignore[assignment]  # "not installed", for this import
    try:
        import structlog  # noqa: F401
    finally:
        for name in hidden:
            if name in _sys.modules and _sys.modules[name] is None:
                del _sys.modules[name]


_import_structlog()


# -- sqlalchemy.ext.asyncio without the ORM -------------------------------------------------------
#
# buildyard uses SQLAlchemy's Core through the asyncio extension's AsyncEngine and
# AsyncConnection, never the ORM. The extension's package imports its AsyncSession (and with it
# ``sqlalchemy.orm``, about 9 MiB of a master's memory and 40 modules) whatever one imports from
# it. So the package is imported in two halves: its engine and results (``.engine``,
# ``.result``: Core only) when one of their names is asked for, and the rest, by running the
# package's own ``__init__``, the first time any other name (AsyncSession, ...) is asked for.
# Every name stays importable from ``sqlalchemy.ext.asyncio``, each the same object as before;
# a process that imported the package before buildyard keeps it as it was.

_ASYNCIO = "sqlalchemy.ext.asyncio"
# what the package's __init__ takes from .engine and .result (SQLAlchemy 2.0, 2.1)
_ASYNCIO_CORE = {
    "AsyncConnection": "engine",
    "AsyncEngine": "engine",
    "AsyncTransaction": "engine",
    "async_engine_from_config": "engine",
    "create_async_engine": "engine",
    "create_async_pool_from_url": "engine",
    "AsyncMappingResult": "result",
    "AsyncResult": "result",
    "AsyncScalarResult": "result",
    "AsyncTupleResult": "result",
}


class _AsyncioHalves:
    """The loader of ``sqlalchemy.ext.asyncio`` (wrapping the real one): see above."""

    def __init__(self, real: object) -> None:
        self.real = real

    def create_module(self, spec: object) -> None:
        return None  # the default module (its __path__ finds the real submodules)

    def exec_module(self, module: object) -> None:
        import importlib
        import threading
        import types

        from sqlalchemy.util import concurrency

        assert isinstance(module, types.ModuleType)
        real = self.real
        # the package's own __init__ runs once, whichever thread asks first; the others wait
        # for it under the lock (a name asked for meanwhile is there when they get it), and
        # the thread running it that asks again (its own imports) is not made to wait
        lock = threading.RLock()
        whole = loading = False

        def load_whole() -> None:
            nonlocal whole, loading
            with lock:
                if whole or loading:
                    return
                loading = True
                try:
                    real.exec_module(module)  # type: ignore[attr-defined]  # may raise: again next time
                finally:
                    loading = False
                whole = True

        def __getattr__(name: str) -> object:  # noqa: N807 (a module's __getattr__)
            sub = _ASYNCIO_CORE.get(name)
            if sub is not None:
                value = getattr(importlib.import_module(f"{_ASYNCIO}.{sub}"), name)
                setattr(module, name, value)
                return value
            if name == "__all__":  # ``import *``: every name, as the package has them
                load_whole()
                found = vars(module).get("__all__")
                return found if found is not None else [n for n in vars(module) if n[0] != "_"]
            if name.startswith("__") or _submodule(module, name):
                # (a submodule not imported yet: ``from . import exc`` then imports it)
                raise AttributeError(f"module {_ASYNCIO!r} has no attribute {name!r}")
            load_whole()
            try:
                return vars(module)[name]
            except KeyError:
                raise AttributeError(f"module {_ASYNCIO!r} has no attribute {name!r}") from None

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        # what the package's __init__ does on import: greenlet, or a clear ImportError; a
        # SQLAlchemy without that private hook gets its whole package imported at once
        shim = getattr(getattr(concurrency, "_concurrency_shim", None), "_initialize", None)
        if shim is None:
            load_whole()
        else:
            shim()

    def __getattr__(self, name: str) -> object:  # get_source, is_package, ... of the real one
        return getattr(self.real, name)


def _submodule(package: object, name: str) -> bool:
    from importlib.machinery import PathFinder

    where = getattr(package, "__path__", None)
    return PathFinder.find_spec(f"{_ASYNCIO}.{name}", where) is not None


class _AsyncioFinder:
    """Finds ``sqlalchemy.ext.asyncio`` where Python would, with :class:`_AsyncioHalves` as
    its loader."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> object:
        if name != _ASYNCIO:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)  # type: ignore[arg-type]
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _AsyncioHalves(spec.loader)  # type: ignore[assignment]
        return spec


if _ASYNCIO not in _sys.modules:
    _sys.meta_path.insert(0, _AsyncioFinder)  # type: ignore[arg-type]
