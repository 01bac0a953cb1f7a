"""Re-quantize a GGUF with gguf-py (numpy): the same weights stored as another type.

The benchmark uses it to ask what bounds decode: if a type with more bytes per weight but
simpler arithmetic (Q8_0, F16) moves more bytes per second than Q4_1, the Q4_1 kernel is held
back by its arithmetic, not by memory. Quality does not matter here (Q4_1 -> Q8_0 keeps the
Q4_1 rounding); only speed is measured.
"""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import quants

# Types the numpy code can write and llama.cpp runs on any CPU.
TARGETS = {"Q8_0": Q.Q8_0, "F16": Q.F16}
_FILE_TYPE = {Q.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0, Q.F16: gguf.LlamaFileType.MOSTLY_F16}


def requantize(src: Path, dst: Path, target: Q) -> Path:
    """Write ``src`` with every quantized matrix stored as ``target`` (other tensors as they
    are) to ``dst``, atomically; an existing ``dst`` is reused."""
    if dst.is_file():
        return dst
    reader = gguf.GGUFReader(src)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    for field in reader.fields.values():
        if field.name in ("general.architecture", "general.file_type") or field.name.startswith(
                "GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    writer.add_file_type(_FILE_TYPE[target])
    for tensor in reader.tensors:
        data, kind = np.asarray(tensor.data), tensor.tensor_type
        if kind not in (Q.F32, Q.F16, Q.BF16) or (kind != Q.F32 and kind != target):
            weights = quants.dequantize(data, kind)
            data = weights.astype(np.float16) if target == Q.F16 else quants.quantize(
                weights, target)
            kind = target
        writer.add_tensor(tensor.name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, dst)
    return dst
