"""Errors a user can act on, and secret redaction for logs."""

from __future__ import annotations

import re


class ConfigError(ValueError):
    """A setting is missing or invalid. The message names the setting and how to fix it."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class EngineUnavailable(RuntimeError):
    """An engine cannot run here (missing package, model file or device); says what is missing."""


_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"),
)


def redact(text: str, *secrets: str | None) -> str:
    """Replace known secret values and secret-looking assignments in ``text`` with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + "***", text)
        else:
            text = pattern.sub("***", text)
    return text
