"""How fast a log stream is redacted: MB/s of StreamRedactor.feed over one log's output.

The output is ``--megabytes`` of text in 1 MB updates (as buildyard-worker sends them), either
100-character lines or lines the worker cut at 4096 characters, with 0, 1 or 3 secrets in use
(none of them in the text: the common case, where every byte is looked at and nothing found),
and once with a secret on every 1000th line.

    .venv/bin/python bench/redaction.py --megabytes 50
"""

from __future__ import annotations

import argparse
import random
import string
import time

from buildyard.master.secrets.redaction import Redactor

SECRETS = ["ghp_Q7K2W9MR4PL8VN3TB6HJ", "s3cr3t-p4ssw0rd", "AKIAIOSFODNN7EXAMPLE"]


def _output(megabytes: int, line: int, with_secret: bool) -> list[str]:
    rnd = random.Random(1)
    alphabet = string.ascii_lowercase + string.digits + "  ./-_"
    lines = ["".join(rnd.choices(alphabet, k=line - 1)) + "\n" for _ in range(512)]
    if with_secret:
        lines[0] = "token " + SECRETS[0] + lines[0][len(SECRETS[0]) + 6 :]
    text = "".join(lines)
    whole = (text * (megabytes * 1_000_000 // len(text) + 1))[: megabytes * 1_000_000]
    return [whole[i : i + 1_000_000] for i in range(0, len(whole), 1_000_000)]


def _run(updates: list[str], secrets: int) -> float:
    redactor = Redactor()
    for i, value in enumerate(SECRETS[:secrets]):
        redactor.add(value, f"s{i}")
    stream = redactor.stream()
    started = time.perf_counter()
    for update in updates:
        stream.feed(update)
    stream.flush()
    elapsed = time.perf_counter() - started
    return sum(map(len, updates)) / 1e6 / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=50)
    args = parser.parse_args()
    for line, with_secret, label in [
        (100, False, "100-char lines"),
        (4097, False, "4096-char cut lines"),
        (100, True, "100-char lines, a secret per 512 lines"),
    ]:
        updates = _output(args.megabytes, line, with_secret)
        figures = ", ".join(f"{n} secrets {_run(updates, n):8.0f} MB/s" for n in (0, 1, 3))
        print(f"{label:40} {figures}")


if __name__ == "__main__":
    main()
