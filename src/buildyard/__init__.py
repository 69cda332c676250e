"""buildyard: a continuous-integration master and worker on asyncio, successor to Buildbot."""

__version__ = "0.1.0"
