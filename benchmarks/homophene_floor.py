"""The homophene floor of the synthetic GRID test set (avsr.metrics.homophene).

The oracle sees the merged viseme-class sequence of the whole sentence (no word boundaries,
no durations, no stress) as espeak-ng pronounces it in the speaker's base voice (``en`` or
``en-us``: the variants change formants, not phonemes) and answers the most probable GRID
sentence that looks the same; the grammar's slots are uniform, so ties are broken uniformly.

    python benchmarks/homophene_floor.py --corpus data/synthetic/grid
    python benchmarks/homophene_floor.py --refs logs/synth_grid/eval/hyps/video_clean_beam.tsv \\
        --voices voices.json     # speaker id -> espeak voice, for a corpus no longer on disk

Prints one JSON: the floor on the references and, per base voice, on the whole grammar (every
sentence equally likely: the population the test split samples), the homophene groups of each
slot, and the share of reference words whose in-context visemes match the lexicon.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avsr.data.synthetic.engine import get_engine  # noqa: E402
from avsr.data.synthetic.text import GRID_GRAMMAR, spoken_form  # noqa: E402
from avsr.data.synthetic.visemes import VISEMES, phoneme_visemes  # noqa: E402
from avsr.metrics.homophene import (grammar_candidates, homophene_floor,  # noqa: E402
                                    map_sentences, merge_repeats)

BASES = ("en", "en-us")
# the grammar in transcript form (upper case), every slot uniform as text.grid_sentence draws it
SLOTS = {name: tuple(w.upper() for w in words) for name, words in GRID_GRAMMAR.items()}
CARRIER = ("bin", "blue", "at", "F", "two", "now")  # the other slots while one word is probed


def _base(voice: str) -> str:
    return voice.partition("+")[0]


def word_visemes(words: tuple[str, ...], voice: str, rate: int = 175, pitch: int = 50
                 ) -> list[tuple[int, ...]]:
    """Viseme classes of each word as espeak says the sentence (pauses belong to no word)."""
    text = " ".join(spoken_form(w.upper()) for w in words)
    syn = get_engine().synthesize(text, voice=voice, rate=rate, pitch=pitch)
    out: list[list[int]] = [[] for _ in words]
    for p in syn.phonemes:
        if 0 <= p.word < len(words):
            out[p.word].extend(phoneme_visemes(p.symbol))
    return [tuple(v) for v in out]


def grid_lexicon(base: str) -> dict[str, tuple[int, ...]]:
    """Every GRID word -> its viseme classes, said in its slot of a carrier sentence."""
    lexicon = {}
    for slot, words in enumerate(GRID_GRAMMAR.values()):
        for w in words:
            sentence = list(CARRIER)
            sentence[slot] = w
            lexicon[w.upper()] = word_visemes(tuple(sentence), base)[slot]
    return lexicon


def observer(lexicon: dict[str, tuple[int, ...]]):
    """Sentence -> merged viseme-class sequence (what a perfect eye on the lips sees)."""
    def observe(words: tuple[str, ...]) -> tuple[int, ...]:
        return merge_repeats(c for w in words for c in lexicon[w])
    return observe


def references(args: argparse.Namespace) -> list[tuple[tuple[str, ...], str]]:
    """(words, espeak voice) of every reference utterance."""
    if args.corpus:
        root = Path(args.corpus)
        meta = json.loads((root / "corpus.json").read_text())
        voices = {s["id"]: s["voice"]["name"] for spk in meta["speakers"].values() for s in spk}
        refs = []
        for txt in sorted((root / "test").rglob("*.txt")):
            text = txt.read_text().splitlines()[0].removeprefix("Text:").split()
            refs.append((tuple(text), voices[txt.parent.name]))
        return refs
    voices = json.loads(Path(args.voices).read_text())
    with open(args.refs, newline="") as f:
        return [(tuple(r["ref"].split()), voices[r["id"].split("/")[1]])
                for r in csv.DictReader(f, delimiter="\t")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="synthetic GRID corpus root (its test split)")
    src.add_argument("--refs", help="an evaluation hyps .tsv (columns id, ref)")
    parser.add_argument("--voices", help="JSON speaker id -> espeak voice (with --refs)")
    parser.add_argument("--check", type=int, default=100,
                        help="references re-synthesised in context to check the lexicon")
    args = parser.parse_args()
    refs = references(args)
    result: dict = {"references": len(refs), "viseme_classes": list(VISEMES), "voices": {}}
    total = None
    for base in BASES:
        lexicon = grid_lexicon(base)
        observe = observer(lexicon)
        groups = map_sentences(grammar_candidates(SLOTS), observe)
        mine = [w for w, v in refs if _base(v) == base]
        floor = homophene_floor(mine, groups, observe)
        total = floor if total is None else total + floor
        grammar = homophene_floor([w for w, _ in grammar_candidates(SLOTS)], groups,
                                  observe)
        slots = {}
        for name, words in SLOTS.items():
            by_look: dict[tuple, list[str]] = {}
            for w in words:
                by_look.setdefault(lexicon[w], []).append(w)
            slots[name] = [g for g in by_look.values() if len(g) > 1]
        checked = [(w, v) for w, v in refs if _base(v) == base][: args.check]
        same = sum(a == lexicon[w] for words, v in checked
                   for w, a in zip(words, word_visemes(words, v)))
        result["voices"][base] = {
            "references": floor.utterances, "floor_wer": round(floor.wer, 3),
            "grammar_floor_wer": round(grammar.wer, 3), "homophene_groups": slots,
            "lexicon_match": f"{same}/{sum(len(w) for w, _ in checked)} words"}
    result["floor_wer"] = round(total.wer, 3)
    result["expected_word_errors"] = round(total.errors, 2)
    result["ambiguous_references"] = total.ambiguous
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
