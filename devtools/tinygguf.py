"""A tiny random-weight llama GGUF (about 0.5 MB) for fast tests of the real llama-server.

The model is deterministic for a seed. Its text is random, but it is made of English words
and sentence punctuation rather than raw bytes: dimension 0 of the residual stream carries a
constant that the output matrix turns into a per-token bias (byte and control tokens get a
large negative one, words a small positive one, end of turn a moderate one), so replies are
readable word salad that ends now and then. The tokenizer is SentencePiece-style (``llama``)
with byte fallback ``<0x00>``..``<0xFF>`` and ChatML's ``<|im_start|>``/``<|im_end|>``; the chat
template (``tokenizer.chat_template``) is ChatML.
"""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_WORD_TEXT = (
    "the a an and or but so to of in on at for with from by about as is are was were be "
    "been it this that these those there here what which who where when how why yes no not "
    "I you he she we they me him her us them my your our their one two three four five six "
    "seven eight nine ten time day night year week city river sea sun moon star planet "
    "world house room door window table chair book song voice word story bird cat dog fish "
    "tree flower rain snow wind light sound music paris france london berlin rome capital "
    "country answer question small large good new old long little great warm cold quiet "
    "bright fast slow red blue green white black go goes come comes see sees say says make "
    "makes know knows think thinks take takes find finds give gives tell tells play plays "
    "hear hears sing sings walk walks look looks very really always often never today now "
    "then again also just only well still hello thanks please sorry okay"
)
_WORDS = tuple(_WORD_TEXT.split())
_PUNCT = (".", ",", "?", "!")
_LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")

N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 4
N_FF = 128
N_LAYER = 2
N_CTX = 4096


def _vocab() -> tuple[list[str], list[float], list[int], dict[str, int]]:
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []
    special: dict[str, int] = {}

    def add(text: str, score: float, kind: gguf.TokenType) -> None:
        tokens.append(text)
        scores.append(score)
        types.append(int(kind))

    for name, kind in (("<unk>", gguf.TokenType.UNKNOWN), ("<s>", gguf.TokenType.CONTROL),
                       ("</s>", gguf.TokenType.CONTROL), ("<|im_start|>", gguf.TokenType.CONTROL),
                       ("<|im_end|>", gguf.TokenType.CONTROL)):
        special[name] = len(tokens)
        add(name, 0.0, kind)
    for byte in range(256):
        add(f"<0x{byte:02X}>", 0.0, gguf.TokenType.BYTE)
    for letter in _LETTERS:  # single letters: merge bases for the SentencePiece tokenizer
        add(letter, -10.0, gguf.TokenType.NORMAL)
        add("\u2581" + letter, -9.0, gguf.TokenType.NORMAL)
    for mark in _PUNCT:
        add(mark, -5.0, gguf.TokenType.NORMAL)
    add("\u2581", -8.0, gguf.TokenType.NORMAL)
    seen = set(tokens)
    for rank, word in enumerate(_WORDS):
        piece = "\u2581" + word
        if piece not in seen:
            seen.add(piece)
            add(piece, -1.0 - rank / 1000.0, gguf.TokenType.NORMAL)
    return tokens, scores, types, special


def write_tiny_gguf(path: Path, seed: int = 0, n_layer: int = N_LAYER) -> Path:
    """Write the tiny model to ``path`` (atomically) and return ``path``. ``n_layer`` blocks
    (the benchmark gives it a real model's depth to measure the per-token cost that does not
    depend on the weights' size)."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    tokens, scores, types, special = _vocab()
    n_vocab = len(tokens)

    def weight(rows: int, cols: int, scale: float = 0.3) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)).astype(np.float32)

    embd = (rng.standard_normal((n_vocab, N_EMBD)) * 0.5).astype(np.float32)
    embd[:, 0] = 8.0  # constant channel that becomes the per-token output bias
    out = weight(n_vocab, N_EMBD, scale=4.0)
    kinds = np.array(types)
    bias = np.where(kinds == int(gguf.TokenType.NORMAL), 0.4, -6.0).astype(np.float32)
    words = [i for i, t in enumerate(tokens) if t.startswith("\u2581") and len(t) > 2]
    bias[words] = 0.8
    for i, t in enumerate(tokens):
        if t in _PUNCT:
            bias[i] = 1.2 if t in (".", "?") else 0.6
    bias[special["<|im_end|>"]] = 0.7
    out[:, 0] = bias

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name("pipecatapp-tiny-random")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(special["<unk>"])
    writer.add_bos_token_id(special["<s>"])
    writer.add_eos_token_id(special["<|im_end|>"])
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    writer.add_tensor("token_embd.weight", embd)
    for layer in range(n_layer):
        prefix = f"blk.{layer}"
        ones = np.ones(N_EMBD, dtype=np.float32)
        writer.add_tensor(f"{prefix}.attn_norm.weight", ones)
        writer.add_tensor(f"{prefix}.attn_q.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"{prefix}.attn_k.weight", weight(N_EMBD // N_HEAD * N_HEAD_KV, N_EMBD))
        writer.add_tensor(f"{prefix}.attn_v.weight", weight(N_EMBD // N_HEAD * N_HEAD_KV, N_EMBD))
        attn_out = weight(N_EMBD, N_EMBD)
        attn_out[0, :] = 0.0  # keep the bias channel constant
        writer.add_tensor(f"{prefix}.attn_output.weight", attn_out)
        writer.add_tensor(f"{prefix}.ffn_norm.weight", ones.copy())
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weight(N_FF, N_EMBD))
        down = weight(N_EMBD, N_FF)
        down[0, :] = 0.0
        writer.add_tensor(f"{prefix}.ffn_down.weight", down)
    norm = np.ones(N_EMBD, dtype=np.float32)
    writer.add_tensor("output_norm.weight", norm)
    writer.add_tensor("output.weight", out)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)
    return path
