"""The homophene floor of the synthetic GRID test set (avsr.metrics.homophene).

The oracle sees the merged viseme-class sequence of the whole sentence (no word boundaries,
no durations, no stress) as espeak-ng pronounces it in the speaker's base voice (``en`` or
``en-us``: the variants change formants, not phonemes) and answers the most probable GRID
sentence that looks the same; the grammar's slots are uniform, so ties are broken uniformly.

    python benchmarks/homophene_floor.py --corpus data/synthetic/grid
    python benchmarks/homophene_floor.py --refs logs/synth_grid/eval/hyps/video_clean_beam.tsv \\
        --voices voices.json     # speaker id -> espeak voice, for a corpus no longer on disk
    python benchmarks/homophene_floor.py --open --train 300 3000 10000 --test 300
    python benchmarks/homophene_floor.py --corpus data/synthetic/open --domain open

Prints one JSON: the floor on the references and, per base voice, on the whole grammar (every
sentence equally likely: the population the test split samples), the homophene groups of each
slot, and the share of reference words whose in-context visemes match the lexicon.

``--open``: the ``open`` text domain (``synth_open``), from the text generator alone (the
visemes come from the text and the voice's base; the corpus's speakers would only pick the
base). Training sentences for the prior and test sentences not among them (protocol rule 2)
are drawn with seed ``--seed``, each kept only if the generator would keep it (one espeak word
event per word, :func:`spoken_as_written`); the oracle searches the viseme lattice of each
test sentence under a Kneser-Ney bigram counted from the first N training sentences, for
each N of ``--train`` (avsr.metrics.homophene_open). The lexicon is the generator's whole
vocabulary, every word said alone in the base voice, and the test sentence is seen through it
(as the GRID floor: merged classes, no boundaries, durations or stress); how many test
sentences espeak renders with exactly that class string in context is reported beside it
(words said otherwise inside a sentence, e.g. weak forms, make them differ).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avsr.data.synthetic.engine import get_engine  # noqa: E402
from avsr.data.synthetic.text import GRID_GRAMMAR, open_sentence, spoken_form  # noqa: E402
from avsr.data.synthetic.visemes import VISEMES, phoneme_visemes  # noqa: E402
from avsr.data.synthetic.words import vocabulary  # noqa: E402
from avsr.metrics.homophene import (grammar_candidates, homophene_floor,  # noqa: E402
                                    map_sentences, merge_repeats)
from avsr.metrics.homophene_open import BigramPrior, open_homophene_floor  # noqa: E402

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


def said_alone(words: list[str], voice: str, batch: int = 30) -> dict[str, tuple[int, ...]]:
    """Viseme classes of each word said on its own.

    Words go ``batch`` at a time separated by commas (a pause, no weak forms: 300 of 300
    words checked gave the same classes as one synthesis each); a batch whose word events do
    not line up with its words (a full stop after "A" is read "dot") is said word by word.
    """
    out = {}
    for i in range(0, len(words), batch):
        chunk = words[i:i + batch]
        text = ", ".join(spoken_form(w) for w in chunk)
        syn = get_engine().synthesize(text, voice=voice)
        classes: list[list[int]] = [[] for _ in chunk]
        for p in syn.phonemes:
            if 0 <= p.word < len(chunk):
                classes[p.word].extend(phoneme_visemes(p.symbol))
        if len(syn.words) != len(chunk) or not all(classes):
            classes = [list(word_visemes((w,), voice)[0]) for w in chunk]
        out.update((w, tuple(c)) for w, c in zip(chunk, classes))
    return out


def rendered_visemes(words: tuple[str, ...], voice: str) -> tuple[int, ...]:
    """Merged viseme classes of the whole sentence as espeak says it, pauses left out.

    Not split by word: in open-domain sentences espeak's word events can fall one word late
    ("THERE WAS" came back as THERE = /De@w0z/), so per-word attribution is unreliable there,
    while the sentence's phoneme string (what the renderer draws) is not affected.
    """
    syn = get_engine().synthesize(" ".join(spoken_form(w) for w in words), voice=voice)
    return merge_repeats(c for p in syn.phonemes if p.word >= 0
                         for c in phoneme_visemes(p.symbol))


def spoken_as_written(sentence) -> bool:
    """The generator's acceptance test: one timed espeak word event per transcript word.

    ``generate.synthesize_utterance`` redraws a sentence that fails it (every "THERE WAS ..."
    does: espeak reports "there was" as one word event), so the corpus's text is the open
    domain under this condition. Checked in the ``en`` voice: on 300 sentences ``en-us``
    gave the same word-event counts.
    """
    syn = get_engine().synthesize(sentence.espeak_text, voice="en")
    return (len(syn.words) == len(sentence.words)
            and all(w.end > w.start for w in syn.words))


def draw(rng: np.random.Generator, n: int, exclude: set = frozenset()
         ) -> tuple[list[tuple[str, ...]], int]:
    """``n`` open sentences as the generator accepts them, and how many were redrawn."""
    out, rejected = [], 0
    while len(out) < n:
        sentence = open_sentence(rng)
        if sentence.words in exclude:
            continue
        if spoken_as_written(sentence):
            out.append(sentence.words)
        else:
            rejected += 1
    return out, rejected


def open_floor(args: argparse.Namespace) -> dict:
    """The open-domain floor for each training size and base voice."""
    train, train_rejected = draw(np.random.default_rng([args.seed, 0]), max(args.train))
    test, test_rejected = draw(np.random.default_rng([args.seed, 1]), args.test, set(train))
    result: dict = {"domain": "open", "seed": args.seed, "test_sentences": len(test),
                    "test_words": sum(map(len, test)), "vocabulary": len(vocabulary()),
                    "redrawn_as_the_generator_does": {"train": train_rejected,
                                                      "test": test_rejected},
                    "prior": "interpolated Kneser-Ney bigram, D=0.75, add-1 continuation "
                             "unigram over the lexicon", "voices": {}}
    test_vocab = {w for s in test for w in s}
    for n in args.train:
        known = {w for s in train[:n] for w in s}
        result[f"test_words_unseen_in_{n}"] = sum(w not in known for s in test for w in s)
        result[f"test_types_unseen_in_{n}"] = len(test_vocab - known)
    for base in BASES:
        lexicon = said_alone(sorted(w.upper() for w in vocabulary()), base)
        looks = Counter(merge_repeats(v) for v in lexicon.values())
        seen_as = [merge_repeats(c for w in words for c in lexicon[w]) for words in test]
        same = sum(rendered_visemes(words, base) == look for words, look in zip(test, seen_as))
        entry: dict = {
            "words_with_a_lookalike": sum(looks[merge_repeats(v)] > 1 for v in lexicon.values()),
            "test_sentences_rendered_as_lexicon": f"{same}/{len(test)}"}
        for n in args.train:
            start = time.process_time()
            floor = open_homophene_floor(test, lexicon, BigramPrior(train[:n], lexicon))
            entry[f"train_{n}"] = {"floor_wer": round(floor.wer, 3),
                                   "expected_word_errors": round(floor.errors, 2),
                                   "ambiguous_references": floor.ambiguous,
                                   "cpu_s": round(time.process_time() - start, 1)}
        result["voices"][base] = entry
    for n in args.train:
        floors = [result["voices"][b][f"train_{n}"]["floor_wer"] for b in BASES]
        result[f"floor_wer_train_{n}"] = round(sum(floors) / len(floors), 3)
    return result


def corpus_open_floor(root: Path) -> dict:
    """The open-domain floor of a generated corpus: its own test split, voices and prior.

    The prior is counted from the corpus's training transcripts (``trainval`` minus the
    validation ids); every test utterance is read in its speaker's base voice.
    """
    meta = json.loads((root / "corpus.json").read_text())
    val = set((root / "val_ids.txt").read_text().split())
    train = [_transcript(t) for t in sorted((root / "trainval").rglob("*.txt"))
             if f"trainval/{t.parent.name}/{t.stem}" not in val]
    refs = references(argparse.Namespace(corpus=str(root)))
    result: dict = {"domain": "open", "corpus": str(root), "train_sentences": len(train),
                    "test_sentences": len(refs), "test_words": sum(len(w) for w, _ in refs),
                    "prior": "interpolated Kneser-Ney bigram of the training transcripts, "
                             "D=0.75, add-1 continuation unigram over the lexicon",
                    "corpus_seed": meta["config"].get("seed"), "voices": {}}
    known = {w for s in train for w in s}
    result["test_words_unseen_in_train"] = sum(w not in known for ws, _ in refs for w in ws)
    total = None
    for base in BASES:
        mine = [w for w, v in refs if _base(v) == base]
        if not mine:
            continue
        lexicon = said_alone(sorted(w.upper() for w in vocabulary()), base)
        floor = open_homophene_floor(mine, lexicon, BigramPrior(train, lexicon))
        total = floor if total is None else total + floor
        result["voices"][base] = {"references": floor.utterances,
                                  "floor_wer": round(floor.wer, 3)}
    result["floor_wer"] = round(total.wer, 3)
    result["expected_word_errors"] = round(total.errors, 2)
    result["ambiguous_references"] = total.ambiguous
    return result


def _transcript(txt: Path) -> tuple[str, ...]:
    return tuple(txt.read_text().splitlines()[0].removeprefix("Text:").split())


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
            refs.append((_transcript(txt), voices[txt.parent.name]))
        return refs
    voices = json.loads(Path(args.voices).read_text())
    from avsr.evaluate import read_hyps  # torch and Hydra only for this source

    return [(tuple(ref.split()), voices[utt.split("/")[1]])
            for utt, (ref, _) in read_hyps(args.refs).items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="synthetic corpus root (its test split; --domain)")
    src.add_argument("--refs", help="an evaluation hyps .tsv (columns id, ref)")
    src.add_argument("--open", action="store_true",
                     help="the open text domain, drawn from the text generator")
    parser.add_argument("--domain", choices=("grid", "open"), default="grid",
                        help="--corpus: the corpus's text domain (open: the prior is counted "
                        "from its training transcripts)")
    parser.add_argument("--voices", help="JSON speaker id -> espeak voice (with --refs)")
    parser.add_argument("--check", type=int, default=100,
                        help="references re-synthesised in context to check the lexicon")
    parser.add_argument("--train", type=int, nargs="+", default=[300, 3000],
                        help="--open: training sentences counted for the prior (each size)")
    parser.add_argument("--test", type=int, default=100, help="--open: test sentences")
    parser.add_argument("--seed", type=int, default=1234, help="--open: text seed")
    args = parser.parse_args()
    if args.open:
        print(json.dumps(open_floor(args), indent=1))
        return
    if args.corpus and args.domain == "open":
        print(json.dumps(corpus_open_floor(Path(args.corpus)), indent=1))
        return
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
