#!/usr/bin/python
"""Read a GGUF model's header (architecture, layer count, sizes) without loading its weights."""

from __future__ import annotations

import os
import struct
from typing import Any, BinaryIO

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: gguf_info
short_description: Read the header of a GGUF model file
description:
  - Reads the metadata key/value section of a GGUF file (versions 2 and 3) and returns the
    architecture, the layer count and the sizes the memory formula needs. The weights are not read.
options:
  path:
    description: Path of the GGUF file.
    type: path
    required: true
author: pipecatapp
"""

EXAMPLES = r"""
- name: Read the model's layer count on the controller
  gguf_info:
    path: /models/SmolLM2-135M-Instruct.Q4_1.gguf
  delegate_to: localhost
"""

RETURN = r"""
architecture:
  description: general.architecture (e.g. llama).
  type: str
  returned: success
block_count:
  description: Number of transformer layers (<arch>.block_count).
  type: int
  returned: success
embedding_length:
  description: <arch>.embedding_length.
  type: int
  returned: success
head_count:
  description: <arch>.attention.head_count.
  type: int
  returned: success
head_count_kv:
  description: <arch>.attention.head_count_kv (head_count when absent).
  type: int
  returned: success
context_length:
  description: <arch>.context_length (training context).
  type: int
  returned: success
size:
  description: File size in bytes.
  type: int
  returned: success
"""

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands."""


class _Reader:
    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def take(self, size: int) -> bytes:
        data = self.handle.read(size)
        if len(data) != size:
            raise GGUFError("the file ends inside its header")
        return data

    def scalar(self, kind: int) -> Any:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        (length,) = struct.unpack("<Q", self.take(8))
        return self.take(length).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(kind)
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            (inner,) = struct.unpack("<I", self.take(4))
            (count,) = struct.unpack("<Q", self.take(8))
            if inner in _SCALARS:  # skip numeric arrays (token scores, types) without decoding
                self.take(struct.calcsize(_SCALARS[inner]) * count)
                return None
            for _ in range(count):
                self.value(inner)
            return None
        raise GGUFError(f"unknown metadata value type {kind}")


def read_header(path: str) -> dict[str, Any]:
    """Metadata of the GGUF file at ``path`` as a dict (arrays left out)."""
    with open(path, "rb") as handle:
        reader = _Reader(handle)
        if reader.take(4) != b"GGUF":
            raise GGUFError("no GGUF magic at the start of the file")
        (version,) = struct.unpack("<I", reader.take(4))
        if version not in (2, 3):
            raise GGUFError(f"GGUF version {version} is not supported (2 or 3)")
        _tensors, n_kv = struct.unpack("<QQ", reader.take(16))
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = reader.string()
            (kind,) = struct.unpack("<I", reader.take(4))
            value = reader.value(kind)
            if value is not None:
                meta[key] = value
    return meta


def summary(path: str) -> dict[str, Any]:
    meta = read_header(path)
    arch = meta.get("general.architecture")
    if not arch:
        raise GGUFError("general.architecture is missing")

    def number(name: str, default: int | None = None) -> int:
        value = meta.get(f"{arch}.{name}", default)
        if value is None:
            raise GGUFError(f"{arch}.{name} is missing")
        return int(value)

    heads = number("attention.head_count", 0)
    return {
        "architecture": arch,
        "block_count": number("block_count"),
        "embedding_length": number("embedding_length", 0),
        "head_count": heads,
        "head_count_kv": number("attention.head_count_kv", heads),
        "context_length": number("context_length", 0),
        "size": os.path.getsize(path),
    }


def main() -> None:
    module = AnsibleModule(argument_spec={"path": {"type": "path", "required": True}},
                           supports_check_mode=True)
    path = module.params["path"]
    try:
        info = summary(path)
    except (OSError, GGUFError, struct.error) as exc:
        module.fail_json(msg=f"{path} is not a readable GGUF model: {exc}")
    module.exit_json(changed=False, **info)


if __name__ == "__main__":
    main()
