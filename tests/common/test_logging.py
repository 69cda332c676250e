"""The master's log hides secrets: the processor every log line passes, and its hook."""

from __future__ import annotations

from pathlib import Path

from buildyard.common.logging import add_redaction, redact_secrets


def _hide(text: str) -> str:
    return text.replace("s3cr3t", "<tok>")


def test_every_value_of_a_log_line_is_redacted_while_the_hook_is_there() -> None:
    remove = add_redaction(_hide)
    try:
        event = redact_secrets(
            None,
            "info",
            {
                "event": "step_failed",
                "reason": "bad s3cr3t",
                "nested": {"k s3cr3t": ["a s3cr3t", 3, None]},
                "error": ValueError("invalid literal: 's3cr3t'"),
                "path": Path("/tmp/s3cr3t"),
                "count": 7,
            },
        )
        assert event == {
            "event": "step_failed",
            "reason": "bad <tok>",
            "nested": {"k <tok>": ["a <tok>", 3, None]},
            "error": "invalid literal: '<tok>'",
            "path": "/tmp/<tok>",
            "count": 7,
        }
        clean = ValueError("nothing here")
        assert redact_secrets(None, "info", {"error": clean})["error"] is clean
    finally:
        remove()
    assert redact_secrets(None, "info", {"reason": "bad s3cr3t"}) == {"reason": "bad s3cr3t"}
    remove()  # twice is harmless
