"""The tiny random-weight GGUF: deterministic, small, and a complete llama model file."""

from __future__ import annotations

from pathlib import Path

import gguf

from devtools.tinygguf import CHATML_TEMPLATE, write_tiny_gguf


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "a.gguf", seed=0).read_bytes()
    b = write_tiny_gguf(tmp_path / "b.gguf", seed=0).read_bytes()
    c = write_tiny_gguf(tmp_path / "c.gguf", seed=1).read_bytes()
    assert a == b
    assert a != c
    assert 300_000 < len(a) < 1_000_000


def test_metadata_vocab_and_tensors(tiny_gguf: Path) -> None:
    reader = gguf.GGUFReader(tiny_gguf)
    fields = reader.fields
    arch = fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    template = fields["tokenizer.chat_template"]
    assert bytes(template.parts[template.data[0]]).decode() == CHATML_TEMPLATE
    tokens_field = fields["tokenizer.ggml.tokens"]
    tokens = [bytes(tokens_field.parts[i]).decode() for i in tokens_field.data]
    assert "<|im_start|>" in tokens and "<|im_end|>" in tokens
    assert all(f"<0x{b:02X}>" in tokens for b in range(256))
    assert len(tokens) == len(set(tokens))
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output.weight", "blk.1.ffn_down.weight"} <= names
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert list(embd.shape) == [64, len(tokens)]
