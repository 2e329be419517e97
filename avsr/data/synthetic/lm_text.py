"""Extra language-model text for a synthetic corpus: more sentences of its domain, no audio.

The papers' shallow-fusion LMs read far more text than their labelled video has transcripts;
this gives a synthetic corpus the same: sentences from the corpus' own text generator (its
``domain``), with every validation, test and babble transcript of the corpus left out, so no
held-out sentence is ever LM training text. One transcript line per sentence, for
``avsr.train_lm text_files=[...]``:

    python -m avsr.data.synthetic.lm_text --corpus data/synthetic/open --sentences 100000 \\
        --out data/synthetic/open/lm_text.txt

Writes ``<out>`` and ``<out>.json`` (seed, counts, how many drawn sentences were held-out ones
and left out).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from .text import sample_sentence

__all__ = ["held_out_transcripts", "lm_sentences", "main"]


def held_out_transcripts(corpus: str | Path) -> set[str]:
    """Every transcript line of the corpus' val, test and babble splits.

    Raises:
        FileNotFoundError: ``corpus`` has no ``corpus.json`` or no test split.
    """
    from avsr.data.corpora import LRS3, read_transcript

    root = Path(corpus)
    if not (root / "corpus.json").is_file():
        raise FileNotFoundError(f"{root / 'corpus.json'} is missing: not a synthetic corpus")
    lrs3 = LRS3(root)
    texts = {u.text for split in ("val", "test") for u in lrs3.utterances(split)}
    if not any(True for _ in (root / "test").rglob("*.txt")):
        raise FileNotFoundError(f"{root / 'test'} holds no transcripts")
    texts |= {read_transcript(p)[0] for p in (root / "babble").rglob("*.txt")}
    return texts


def lm_sentences(domain: str, count: int, seed: int, exclude: set[str]
                 ) -> tuple[list[str], int]:
    """``count`` transcript lines of ``domain`` drawn with ``seed``, none in ``exclude``.

    Returns:
        (sentences, how many drawn sentences were in ``exclude`` and left out)
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    # a stream of its own: the same seed as the corpus never replays its training sentences
    rng = np.random.default_rng([seed, 0x4C4D])
    out: list[str] = []
    left_out = 0
    while len(out) < count:
        text = sample_sentence(rng, domain).text
        if text in exclude:
            left_out += 1
            continue
        out.append(text)
    return out, left_out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m avsr.data.synthetic.lm_text",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True, help="synthetic corpus root (its domain and "
                                                   "held-out transcripts)")
    p.add_argument("--sentences", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="text file to write")
    args = p.parse_args(argv)
    config = json.loads((Path(args.corpus) / "corpus.json").read_text())["config"]
    exclude = held_out_transcripts(args.corpus)
    sentences, left_out = lm_sentences(config["domain"], args.sentences, args.seed, exclude)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(sentences) + "\n")
    tmp.replace(out)
    meta = {"corpus": str(args.corpus), "domain": config["domain"], "seed": args.seed,
            "sentences": len(sentences), "distinct": len(set(sentences)),
            "held_out_transcripts": len(exclude), "held_out_drawn_and_left_out": left_out}
    Path(str(out) + ".json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta))
    return meta


if __name__ == "__main__":
    main()
