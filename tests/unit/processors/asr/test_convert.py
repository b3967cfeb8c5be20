"""The CTranslate2 reader and the ggml converter: exact sizes, names, shapes and split tensors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from wavegraph.processors.asr.ct2 import load_ct2, parse_ct2
from wavegraph.processors.asr.errors import Ct2FormatError
from wavegraph.processors.asr.ggml_convert import (
    ggml_array,
    hparams,
    load_mel_filters,
    read_ggml,
    vocabulary_tokens,
)
from wavegraph.processors.asr.models import MEL_FILTERS, MODELS, VerifiedModel, ensure_model, locate_source
from wavegraph.settings import Settings


def _ct2_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _ct2_bytes(version: int = 6) -> bytes:
    weight = np.arange(6, dtype="<f2").reshape(3, 2)
    out = struct.pack("<I", version) + _ct2_string("TinySpec") + struct.pack("<II", 1, 2)
    out += _ct2_string("layer/weight") + struct.pack("<B2IBI", 2, 3, 2, 4, weight.nbytes) + weight.tobytes()
    out += _ct2_string("layer/heads") + struct.pack("<BBI", 0, 2, 2) + struct.pack("<h", 6)
    return out + struct.pack("<I", 1) + _ct2_string("alias/weight") + _ct2_string("layer/weight")


def test_parse_ct2_reads_named_tensors_scalars_and_aliases() -> None:
    model = parse_ct2(_ct2_bytes())
    assert model.spec == "TinySpec" and model.revision == 1
    np.testing.assert_array_equal(model["alias/weight"], np.arange(6).reshape(3, 2))
    assert model["layer/weight"].dtype == np.float16
    assert model.scalar("layer/heads") == 6


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_ct2_bytes(version=5), "version 5"),
        (_ct2_bytes()[:60], "truncated"),
        (_ct2_bytes() + b"x", "unexpected"),
    ],
)
def test_parse_ct2_rejects_bad_files(data: bytes, message: str) -> None:
    with pytest.raises(Ct2FormatError, match=message):
        parse_ct2(data)


def test_vocabulary_stops_before_special_tokens_and_decodes_bytes() -> None:
    tokens = vocabulary_tokens(["!", "Ġthe", "Ã©", "", "<|endoftext|>", "<|startoftranscript|>"])
    assert tokens == [b"!", b" the", "é".encode(), b""]


def test_tiny_en_converts_to_the_official_layout(tiny_model: VerifiedModel) -> None:
    assert tiny_model.size == 77_704_698
    header = read_ggml(tiny_model.path)
    assert header.hparams == {
        "n_vocab": 51864,
        "n_audio_ctx": 1500,
        "n_audio_state": 384,
        "n_audio_head": 6,
        "n_audio_layer": 4,
        "n_text_ctx": 448,
        "n_text_state": 384,
        "n_text_head": 6,
        "n_text_layer": 4,
        "n_mels": 80,
    }
    assert header.ftype == 1
    assert len(header.tokens) == 50256 and header.tokens[0] == b"!" and header.tokens[262] == b" the"
    mel = locate_source(MEL_FILTERS, "tiny.en").path
    np.testing.assert_array_equal(header.mel_filters, load_mel_filters(mel, 80))

    tensors = header.tensors
    # encoder: positions + 2 convs, 15 per block, ln_post; decoder: positions + tokens, 24 per block, ln
    assert len(tensors) == (1 + 4 + 4 * 15 + 2) + (2 + 4 * 24 + 2)
    assert not [n for n in tensors if n.endswith("key.bias")]
    assert tensors["encoder.blocks.0.attn.query.weight"].shape == (384, 384)
    assert tensors["decoder.blocks.3.cross_attn.value.bias"].shape == (384,)
    assert tensors["encoder.conv1.weight"].shape == (384, 80, 3)
    assert (tensors["encoder.conv1.bias"].shape, tensors["encoder.conv1.bias"].ttype) == ((384, 1), 0)
    assert tensors["encoder.positional_embedding"].ttype == 0
    assert tensors["decoder.token_embedding.weight"].ttype == 1
    assert tensors["encoder.blocks.0.mlp_ln.weight"].ttype == 0


def test_fused_attention_is_split_in_q_k_v_order(tiny_model: VerifiedModel) -> None:
    spec = MODELS["tiny.en"]
    ct2 = load_ct2([locate_source(w, "tiny.en").path for w in spec.weights])
    header = read_ggml(tiny_model.path)
    fused = ct2["decoder/layer_2/self_attention/linear_0/weight"]
    for i, part in enumerate(("query", "key", "value")):
        got = ggml_array(tiny_model.path, header.tensors[f"decoder.blocks.2.attn.{part}.weight"])
        np.testing.assert_array_equal(got, fused[i * 384 : (i + 1) * 384])
    cross = ct2["decoder/layer_1/attention/linear_1/weight"]
    got = ggml_array(tiny_model.path, header.tensors["decoder.blocks.1.cross_attn.value.weight"])
    np.testing.assert_array_equal(got, cross[384:])
    key_bias = ct2["encoder/layer_0/self_attention/linear_0/bias"][384:768]
    assert not np.any(key_bias), "the source's key bias is zero, so dropping it loses nothing"
    assert hparams(ct2)["n_audio_layer"] == 4


def test_base_converts_to_the_official_size(settings: Settings) -> None:
    base = ensure_model(settings, "base")
    assert base.size == 147_951_465
    header = read_ggml(base.path)
    assert header.hparams["n_vocab"] == 51865 and header.hparams["n_audio_layer"] == 6
    assert len(header.tokens) == 50257 and header.tokens[-1] == b""


def test_read_ggml_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"not a model")
    with pytest.raises(Ct2FormatError, match="not a ggml file"):
        read_ggml(path)
