"""Convert a CTranslate2 Whisper model to whisper.cpp's ggml file (the f16 layout of its PyTorch converter).

File layout, little-endian ``int32`` unless noted::

    magic 0x67676d6c | n_vocab n_audio_ctx n_audio_state n_audio_head n_audio_layer
    n_text_ctx n_text_state n_text_head n_text_layer n_mels | ftype (1 = f16)
    n_mel n_fft | float32 mel filters [n_mel × n_fft]
    n_tokens | n_tokens × ( len | raw token bytes )
    per tensor: n_dims | name_len | ttype (0 f32, 1 f16) | dims reversed [n_dims] | name | data

Tensors carry OpenAI's names in their checkpoint's order. 1-d tensors, conv biases (reshaped to
``[n, 1]``) and positional embeddings are float32; the rest keep the source's float16. CTranslate2 fuses
self-attention q/k/v and cross-attention k/v into one linear layer: they are split back here. OpenAI's
key projection has no bias; CTranslate2 stores zeros for it, and they are dropped (a key bias only adds
the same ``q·b`` to every score of a query, which softmax ignores, so nothing is lost either way).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from wavegraph.processors.asr.ct2 import Ct2Model
from wavegraph.processors.asr.errors import Ct2FormatError

GGML_MAGIC = 0x67676D6C
HPARAM_NAMES = (
    "n_vocab",
    "n_audio_ctx",
    "n_audio_state",
    "n_audio_head",
    "n_audio_layer",
    "n_text_ctx",
    "n_text_state",
    "n_text_head",
    "n_text_layer",
    "n_mels",
)
_F32_NAMES = frozenset(
    {
        "encoder.conv1.bias",
        "encoder.conv2.bias",
        "encoder.positional_embedding",
        "decoder.positional_embedding",
    }
)
EOT_TOKEN = "<|endoftext|>"

Progress = Callable[[int, int], None]
"""Called with (tensors written, tensors in total)."""


class Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...


def hparams(model: Ct2Model) -> dict[str, int]:
    """Whisper's dimensions, read off the shapes of the CTranslate2 variables."""
    n_audio_ctx, n_audio_state = model["encoder/position_encodings/encodings"].shape
    n_text_ctx, n_text_state = model["decoder/position_encodings/encodings"].shape
    return {
        "n_vocab": model["decoder/embeddings/weight"].shape[0],
        "n_audio_ctx": n_audio_ctx,
        "n_audio_state": n_audio_state,
        "n_audio_head": model.scalar("encoder/num_heads"),
        "n_audio_layer": _count_layers(model, "encoder"),
        "n_text_ctx": n_text_ctx,
        "n_text_state": n_text_state,
        "n_text_head": model.scalar("decoder/num_heads"),
        "n_text_layer": _count_layers(model, "decoder"),
        "n_mels": model["encoder/conv1/weight"].shape[1],
    }


def _count_layers(model: Ct2Model, side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in model:
        n += 1
    if n == 0:
        raise Ct2FormatError(f"no {side} layers found: not a Whisper model?")
    return n


def _split(array: np.ndarray, parts: int, name: str) -> list[np.ndarray]:
    if array.shape[0] % parts:
        raise Ct2FormatError(f"{name}: first dimension {array.shape[0]} does not split into {parts}")
    return list(np.split(array, parts, axis=0))


def _linear(model: Ct2Model, src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", model[f"{src}/weight"]
    yield f"{dst}.bias", model[f"{src}/bias"]


def _norm(model: Ct2Model, src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", model[f"{src}/gamma"]
    yield f"{dst}.bias", model[f"{src}/beta"]


def _self_attention(model: Ct2Model, src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    wq, wk, wv = _split(model[f"{src}/linear_0/weight"], 3, f"{src}/linear_0/weight")
    bq, _bk, bv = _split(model[f"{src}/linear_0/bias"], 3, f"{src}/linear_0/bias")
    yield f"{dst}.query.weight", wq
    yield f"{dst}.query.bias", bq
    yield f"{dst}.key.weight", wk
    yield f"{dst}.value.weight", wv
    yield f"{dst}.value.bias", bv
    yield from _linear(model, f"{src}/linear_1", f"{dst}.out")


def _cross_attention(model: Ct2Model, src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield from _linear(model, f"{src}/linear_0", f"{dst}.query")
    wk, wv = _split(model[f"{src}/linear_1/weight"], 2, f"{src}/linear_1/weight")
    _bk, bv = _split(model[f"{src}/linear_1/bias"], 2, f"{src}/linear_1/bias")
    yield f"{dst}.key.weight", wk
    yield f"{dst}.value.weight", wv
    yield f"{dst}.value.bias", bv
    yield from _linear(model, f"{src}/linear_2", f"{dst}.out")


def _mlp(model: Ct2Model, src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield from _linear(model, f"{src}/linear_0", f"{dst}.mlp.0")
    yield from _linear(model, f"{src}/linear_1", f"{dst}.mlp.2")
    yield from _norm(model, f"{src}/layer_norm", f"{dst}.mlp_ln")


def openai_tensors(model: Ct2Model) -> Iterator[tuple[str, np.ndarray]]:
    """Every tensor under its OpenAI name, in the order of OpenAI's ``model_state_dict``."""
    dims = hparams(model)
    yield "encoder.positional_embedding", model["encoder/position_encodings/encodings"]
    yield from _linear(model, "encoder/conv1", "encoder.conv1")
    yield from _linear(model, "encoder/conv2", "encoder.conv2")
    for i in range(dims["n_audio_layer"]):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        yield from _self_attention(model, f"{src}/self_attention", f"{dst}.attn")
        yield from _norm(model, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        yield from _mlp(model, f"{src}/ffn", dst)
    yield from _norm(model, "encoder/layer_norm", "encoder.ln_post")
    yield "decoder.positional_embedding", model["decoder/position_encodings/encodings"]
    yield "decoder.token_embedding.weight", model["decoder/embeddings/weight"]
    for i in range(dims["n_text_layer"]):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        yield from _self_attention(model, f"{src}/self_attention", f"{dst}.attn")
        yield from _norm(model, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        yield from _cross_attention(model, f"{src}/attention", f"{dst}.cross_attn")
        yield from _norm(model, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        yield from _mlp(model, f"{src}/ffn", dst)
    yield from _norm(model, "decoder/layer_norm", "decoder.ln")


def _byte_decoder() -> dict[str, int]:
    """GPT-2's reversible map from the printable stand-in characters back to raw bytes."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def vocabulary_tokens(lines: Sequence[str]) -> list[bytes]:
    """The BPE tokens of CTranslate2's ``vocabulary.txt`` as raw bytes, stopping before ``<|endoftext|>``.

    These are exactly the entries of Whisper's tiktoken file (50,256 for English-only models, 50,257
    for multilingual ones, whose last entry is empty); whisper.cpp generates the special tokens itself.
    """
    try:
        end = list(lines).index(EOT_TOKEN)
    except ValueError:
        raise Ct2FormatError(f"vocabulary has no {EOT_TOKEN} token") from None
    decode = _byte_decoder()
    tokens = []
    for i, token in enumerate(lines[:end]):
        try:
            tokens.append(bytes(decode[ch] for ch in token))
        except KeyError as exc:
            raise Ct2FormatError(
                f"vocabulary line {i + 1}: character {exc.args[0]!r} is not byte-level BPE"
            ) from None
    return tokens


def read_vocabulary(path: Path) -> list[str]:
    """The lines of a CTranslate2 ``vocabulary.txt`` (split on ``\\n`` only)."""
    text = path.read_text(encoding="utf-8")
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


def load_mel_filters(npz: Path, n_mels: int) -> np.ndarray:
    """The ``mel_{n_mels}`` filter bank from OpenAI's ``mel_filters.npz``, as float32."""
    with np.load(npz) as data:
        key = f"mel_{n_mels}"
        if key not in data:
            raise Ct2FormatError(f"{npz} has no {key} filter bank")
        return np.ascontiguousarray(data[key], dtype="<f4")


def _ggml_data(name: str, array: np.ndarray) -> tuple[np.ndarray, int]:
    data = np.squeeze(array)
    if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
        data = data.reshape(data.shape[0], 1)
    if data.ndim < 2 or name in _F32_NAMES:
        return np.ascontiguousarray(data, dtype="<f4"), 0
    return np.ascontiguousarray(data, dtype="<f2"), 1


def write_ggml(
    model: Ct2Model,
    vocabulary: Sequence[str],
    mel_filters: np.ndarray,
    out: Writer,
    progress: Progress | None = None,
) -> None:
    """Write ``model`` as a whisper.cpp ggml f16 file to the open binary stream ``out``."""
    dims = hparams(model)
    if mel_filters.ndim != 2 or mel_filters.shape[0] != dims["n_mels"]:
        raise Ct2FormatError(
            f"mel filters of shape {mel_filters.shape} for a model with {dims['n_mels']} mels"
        )
    tokens = vocabulary_tokens(vocabulary)
    out.write(struct.pack("<i", GGML_MAGIC))
    out.write(struct.pack("<10i", *(dims[k] for k in HPARAM_NAMES)))
    out.write(struct.pack("<i", 1))
    out.write(struct.pack("<2i", *mel_filters.shape))
    out.write(np.ascontiguousarray(mel_filters, dtype="<f4").tobytes())
    out.write(struct.pack("<i", len(tokens)))
    for token in tokens:
        out.write(struct.pack("<i", len(token)))
        out.write(token)
    tensors = list(openai_tensors(model))
    for done, (name, array) in enumerate(tensors, start=1):
        data, ttype = _ggml_data(name, array)
        encoded = name.encode("utf-8")
        out.write(struct.pack("<3i", data.ndim, len(encoded), ttype))
        out.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
        out.write(encoded)
        out.write(data.tobytes())
        if progress is not None:
            progress(done, len(tensors))


@dataclass(frozen=True)
class GgmlTensor:
    name: str
    shape: tuple[int, ...]
    ttype: int
    offset: int


@dataclass(frozen=True)
class GgmlHeader:
    hparams: dict[str, int]
    ftype: int
    mel_filters: np.ndarray
    tokens: list[bytes]
    tensors: dict[str, GgmlTensor]


def read_ggml(path: Path) -> GgmlHeader:
    """Index a ggml Whisper file: hyper-parameters, mel filters, tokens and tensor locations."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _index_ggml(path, data)


def _index_ggml(path: Path, data: mmap.mmap) -> GgmlHeader:
    pos = 0

    def ints(n: int) -> tuple[int, ...]:
        nonlocal pos
        values = struct.unpack_from(f"<{n}i", data, pos)
        pos += 4 * n
        return values

    if len(data) < 4 or ints(1)[0] != GGML_MAGIC:
        raise Ct2FormatError(f"{path} is not a ggml file")
    dims = dict(zip(HPARAM_NAMES, ints(10), strict=True))
    (ftype,) = ints(1)
    n_mel, n_fft = ints(2)
    mel = np.frombuffer(data[pos : pos + 4 * n_mel * n_fft], dtype="<f4").reshape(n_mel, n_fft).copy()
    pos += 4 * n_mel * n_fft
    tokens = []
    for _ in range(ints(1)[0]):
        (length,) = ints(1)
        tokens.append(data[pos : pos + length])
        pos += length
    tensors: dict[str, GgmlTensor] = {}
    while pos < len(data):
        n_dims, name_len, ttype = ints(3)
        shape = tuple(reversed(ints(n_dims)))
        name = data[pos : pos + name_len].decode("utf-8")
        pos += name_len
        tensors[name] = GgmlTensor(name, shape, ttype, pos)
        pos += int(np.prod(shape)) * (4 if ttype == 0 else 2)
    if pos != len(data):
        raise Ct2FormatError(f"{path}: the last tensor runs past the end of the file")
    return GgmlHeader(dims, ftype, mel, tokens, tensors)


def ggml_array(path: Path, tensor: GgmlTensor) -> np.ndarray:
    """One tensor of a ggml file, read-only, in its stored dtype and (numpy-order) shape."""
    dtype = np.dtype("<f4") if tensor.ttype == 0 else np.dtype("<f2")
    return np.memmap(path, dtype=dtype, mode="r", offset=tensor.offset, shape=tensor.shape)
