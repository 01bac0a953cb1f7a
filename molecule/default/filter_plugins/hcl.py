"""`from_hcl`: parse HCL text with python-hcl2 on the controller, for checks by meaning."""

from __future__ import annotations

from typing import Any

import hcl2
from hcl2 import SerializationOptions


def from_hcl(text: str) -> dict[str, Any]:
    """HCL text -> plain data (strings unquoted, one dict per block)."""
    options = SerializationOptions(
        strip_string_quotes=True, preserve_heredocs=False, explicit_blocks=False
    )
    return hcl2.loads(text, serialization_options=options)


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"from_hcl": from_hcl}
