"""Log observers: what a step's code attaches to a log to read its lines as they come.

Buildbot's classes, for ``self.addLogObserver("stdio", observer)`` in a custom step:

* :class:`LogLineObserver`: override ``outLineReceived``, ``errLineReceived`` and
  ``headerLineReceived`` (each gets one line, without its newline) and ``finishReceived``.
* :class:`LineConsumerLogObserver`: wraps a generator function that receives
  ``(stream, line)`` tuples (``stream`` is ``"o"``, ``"e"`` or ``"h"``).
* :class:`LogObserver`: the chunk interface (``outReceived``, ``errReceived``,
  ``headerReceived``, ``gotData``); here every chunk is one line with its newline.
* :class:`BufferLogObserver`: keeps stdout (and stderr if asked) for ``getStdout``/``getStderr``.

How lines arrive: ``BuildStep.addLogObserver`` (:mod:`buildyard.master.steps.base`) calls
``setStep`` and, once the log exists, ``setLog``; it feeds the ``*LineReceived`` methods of an
observer that has them, and calls ``finishReceived`` when the log is finished. A
:class:`LogObserver` without line methods subscribes to the log itself in :meth:`setLog`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

__all__ = [
    "BufferLogObserver",
    "LineConsumerLogObserver",
    "LogLineObserver",
    "LogObserver",
]

# LogWriter's stream names -> Buildbot's one-letter channels ("" is a text log: stdout)
_CHANNELS = {"stdout": "o", "stderr": "e", "header": "h", "": None}


class LogObserver:
    """Receives a log's text by channel; subclasses override the ``*Received`` methods."""

    step: Any = None
    log: Any = None

    def setStep(self, step: Any) -> None:
        self.step = step

    def setLog(self, log: Any) -> None:
        """Subscribe to ``log`` (a :class:`~buildyard.master.logs.writer.LogWriter`)."""
        self.log = log
        log.add_observer(self._line)

    def _line(self, stream: str, line: str) -> None:
        self.gotData(_CHANNELS.get(stream, "o"), line + "\n")

    def gotData(self, stream: str | None, data: str | None) -> None:
        if data is None:
            self.finishReceived()
        elif stream is None or stream == "o":
            self.outReceived(data)
        elif stream == "e":
            self.errReceived(data)
        elif stream == "h":
            self.headerReceived(data)

    def finishReceived(self) -> None:
        pass

    def outReceived(self, data: str) -> None:
        pass

    def errReceived(self, data: str) -> None:
        pass

    def headerReceived(self, data: str) -> None:
        pass

    def logChunk(self, build: Any, step: Any, log: Any, channel: str, text: str) -> None:
        pass


class LogLineObserver(LogObserver):
    """Receives whole lines per stream: override the ``*LineReceived`` methods."""

    stdoutDelimiter = "\n"
    stderrDelimiter = "\n"
    headerDelimiter = "\n"

    def __init__(self) -> None:
        super().__init__()
        self.max_length = 16384

    def setMaxLineLength(self, max_length: int) -> None:
        """Lines longer than ``max_length`` characters are dropped (default 16384)."""
        self.max_length = max_length

    def setLog(self, log: Any) -> None:
        # the step feeds our *LineReceived methods itself (see the module's docstring)
        self.log = log

    def _lines(self, data: str, delimiter: str, received: Callable[[str], None]) -> None:
        for line in data.rstrip().split(delimiter):
            if len(line) <= self.max_length:
                received(line)

    # a chunk pushed by hand (gotData) is cut into lines as Buildbot does
    def outReceived(self, data: str) -> None:
        self._lines(data, self.stdoutDelimiter, self.outLineReceived)

    def errReceived(self, data: str) -> None:
        self._lines(data, self.stderrDelimiter, self.errLineReceived)

    def headerReceived(self, data: str) -> None:
        self._lines(data, self.headerDelimiter, self.headerLineReceived)

    def outLineReceived(self, line: str) -> None:
        """One complete stdout line, without its newline."""

    def errLineReceived(self, line: str) -> None:
        """One complete stderr line, without its newline."""

    def headerLineReceived(self, line: str) -> None:
        """One complete header line, without its newline."""


Consumer = Generator[None, tuple[str, str], None]


class LineConsumerLogObserver(LogLineObserver):
    """Sends ``(channel, line)`` to the generator ``consumerFunction()`` makes, which is started
    at the first line (so one observer object can serve the step built from master.cfg)."""

    def __init__(self, consumerFunction: Callable[[], Consumer]) -> None:
        super().__init__()
        self.consumerFunction = consumerFunction
        self.generator: Consumer | None = None

    def feed(self, item: tuple[str, str]) -> None:
        if self.generator is None:
            self.generator = self.consumerFunction()
            next(self.generator)
        self.generator.send(item)

    def outLineReceived(self, line: str) -> None:
        self.feed(("o", line))

    def errLineReceived(self, line: str) -> None:
        self.feed(("e", line))

    def headerLineReceived(self, line: str) -> None:
        self.feed(("h", line))

    def finishReceived(self) -> None:
        if self.generator is not None:
            self.generator.close()


class BufferLogObserver(LogObserver):
    """Keeps what came on stdout (``wantStdout``) and stderr (``wantStderr``)."""

    def __init__(self, wantStdout: bool = True, wantStderr: bool = False) -> None:
        super().__init__()
        self.stdout: list[str] | None = [] if wantStdout else None
        self.stderr: list[str] | None = [] if wantStderr else None

    def outReceived(self, data: str) -> None:
        if self.stdout is not None:
            self.stdout.append(data)

    def errReceived(self, data: str) -> None:
        if self.stderr is not None:
            self.stderr.append(data)

    def getStdout(self) -> str:
        return "".join(self.stdout or ())

    def getStderr(self) -> str:
        return "".join(self.stderr or ())
