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
