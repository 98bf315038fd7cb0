"""Tokenizers built in memory, with no files and no downloads.

* :func:`build_clip_tokenizer`: a byte-level BPE ``CLIPTokenizer`` whose vocabulary holds the 256 byte characters
  (bare and with the end-of-word marker ``</w>``) so any text tokenizes, plus whole-word tokens for ``words``
  reached through a chain of merges.
* :func:`build_t5_tokenizer`: a unigram ``T5TokenizerFast`` (``<pad>``=0, ``</s>``=1, ``<unk>``=2) with word pieces
  for ``words`` and single characters as a fallback, lower-casing its input.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["build_clip_tokenizer", "build_t5_tokenizer", "byte_characters"]


def byte_characters() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for the bytes 0..255 (GPT-2's mapping)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def build_clip_tokenizer(words: Iterable[str] = (), model_max_length: int = 77):
    """A ``CLIPTokenizer`` over bytes plus whole-word tokens for ``words`` (lower-case ASCII words)."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}

    def add(tok: str) -> None:
        if tok not in vocab:
            vocab[tok] = len(vocab)

    for ch in byte_characters():
        add(ch)
    for ch in byte_characters():
        add(ch + "</w>")
    merges: list[tuple[str, str]] = []

    def chain(pieces: list[str]) -> None:
        left = pieces[0]
        for right in pieces[1:]:
            if (left, right) not in merges:
                merges.append((left, right))
            add(left + right)
            left = left + right

    words = sorted({w.lower() for w in words if len(w) > 1})
    for word in words:
        chain(list(word[:-1]) + [word[-1] + "</w>"])
    specials = ("<|startoftext|>", "<|endoftext|>")
    # Merges of one word can split another ("re" of "red" inside "squares"): append merges joining whatever
    # pieces remain; later merges only act once earlier ones are exhausted, so words already whole stay whole.
    for _ in range(8):
        tok = CLIPTokenizer(vocab={**vocab, **{sp: len(vocab) + i for i, sp in enumerate(specials)}},
                            merges=merges)
        split = [pieces for pieces in (tok.tokenize(w) for w in words) if len(pieces) > 1]
        if not split:
            break
        for pieces in split:
            chain(pieces)
    tok.model_max_length = model_max_length
    return tok


def build_t5_tokenizer(words: Iterable[str] = (), model_max_length: int = 512):
    """A unigram ``T5TokenizerFast`` with pieces ``▁word`` for ``words`` and characters as a fallback."""
    from tokenizers import normalizers
    from transformers import T5TokenizerFast

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    seen = {p for p, _ in pieces}

    def add(piece: str, score: float) -> None:
        if piece not in seen:
            seen.add(piece)
            pieces.append((piece, score))

    for word in sorted({w.lower() for w in words}):
        add("▁" + word, -1.0)
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-()":
        add("▁" + ch, -8.0)
        add(ch, -10.0)
    add("▁", -5.0)
    tok = T5TokenizerFast(vocab=pieces, extra_ids=0)
    backend = tok.backend_tokenizer
    backend.normalizer = normalizers.Sequence([normalizers.Lowercase(), backend.normalizer]) \
        if backend.normalizer is not None else normalizers.Lowercase()
    tok.model_max_length = model_max_length
    return tok
