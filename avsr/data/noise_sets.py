"""Noise from a folder of wav files (MUSAN or any other), by category and by split.

MUSAN's layout is ``<root>/{music,noise,speech}/<source>/<file>.wav``; any folder of wavs with
one sub-folder per category works. Categories (AV-HuBERT's robust AVSR noise types, Shi et
al., Interspeech 2022):

- ``music``, ``noise`` (natural noise), ``speech``: one random segment of one file per draw;
- ``babble``: the sum of ``num_speakers`` segments of ``speech`` files (AV-HuBERT mixes 30
  MUSAN speakers), each at unit power.

Every file belongs to exactly one split, ``train``, ``valid`` or ``test`` (80/10/10 by
default, as AV-HuBERT splits MUSAN speakers; at least one group in each of valid and test),
decided by a seeded hash order of the group keys, the same in every process and run, so a
test recording never feeds training noise (given the same folder and seed). The group key is
the file's path relative to the category folder without suffix, or, with ``group_regex``, the
regex's first group (e.g. ``r"(.*-\\d+)-\\d+"`` keeps the 10 s chunks of one recording,
AV-HuBERT's ``<recording>-<i>.wav``, together).

The sources plug into :class:`~avsr.data.noise.NoiseAugment` (training, ``split="train"``)
and into :meth:`~avsr.data.datamodule.AVDataModule.test_dataloader_for` through the data
module's ``test_noise`` (evaluation, ``split="test"``); configs: ``configs/data/noise/``.

:func:`synthetic_babble` is the test babble of the synthetic corpus: its ``babble/`` split,
spoken by speakers of no other split (the training babble is the data module's, from training
utterances), so the model is never tested against interferers it trained on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from avsr.data.noise import BabbleNoise, NoiseSource, stable_seed

__all__ = ["CATEGORIES", "SPLITS", "noise_files", "folder_noise", "synthetic_babble",
           "SyntheticBabble", "NoiseChoice"]

CATEGORIES = ("music", "noise", "speech", "babble")
SPLITS = ("train", "valid", "test")


def _assign(keys: set[str], seed: int, fractions: Sequence[float]) -> dict[str, str]:
    # groups in a seeded hash order (not the listing order); the last shares go to test and
    # valid, at least one group each when there are three or more
    order = sorted(keys, key=lambda k: (stable_seed("noise-split", seed, k), k))
    n = len(order)
    n_test = max(1, round(fractions[2] * n)) if n >= 3 and fractions[2] > 0 else 0
    n_valid = max(1, round(fractions[1] * n)) if n >= 3 and fractions[1] > 0 else 0
    n_train = n - n_test - n_valid
    return {k: ("train" if i < n_train else "valid" if i < n_train + n_valid else "test")
            for i, k in enumerate(order)}


def noise_files(
    root: str | Path,
    category: str,
    split: str | None = "train",
    *,
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    group_regex: str | None = None,
) -> list[Path]:
    """The wav files of ``<root>/<category>`` in ``split`` (None: all), sorted.

    Args:
        root: noise folder (e.g. ``musan``).
        category: sub-folder (``music``, ``noise``, ``speech``; ``babble`` reads ``speech``).
        split: ``train``, ``valid``, ``test`` or None.
        seed: seed of the split (keep it fixed across training and evaluation).
        fractions: train / valid / test shares.
        group_regex: files whose keys share the regex's first group share a split.

    Raises:
        FileNotFoundError: no such category folder, or no wav in the split.
        ValueError: unknown split, or fractions that do not sum to 1.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be 3 shares summing to 1, got {fractions}")
    folder = Path(root) / ("speech" if category == "babble" else category)
    if not folder.is_dir():
        raise FileNotFoundError(f"noise category folder not found: {folder}")
    pattern = re.compile(group_regex) if group_regex else None
    keyed = []
    for path in sorted(folder.rglob("*.wav")):
        key = path.relative_to(folder).with_suffix("").as_posix()
        if pattern is not None and (m := pattern.fullmatch(key)):
            key = m.group(1)
        keyed.append((key, path))
    splits = _assign({k for k, _ in keyed}, seed, fractions)
    files = [p for k, p in keyed if split is None or splits[k] == split]
    if not files:
        raise FileNotFoundError(f"no wav file of {folder} falls in split {split!r}")
    return files


def folder_noise(
    root: str | Path,
    category: str,
    split: str = "train",
    *,
    num_speakers: int | None = None,
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    group_regex: str | None = None,
    pool_size: int = 256,
) -> BabbleNoise:
    """A noise source over the ``split`` files of one category.

    Args:
        root, category, split, seed, fractions, group_regex: as :func:`noise_files`.
        num_speakers: segments summed per draw; default 30 for ``babble`` (AV-HuBERT), else 1.
        pool_size: most files decoded and kept in memory (chosen once from ``seed``).

    Returns:
        A :class:`~avsr.data.noise.BabbleNoise` over the files (with one speaker it draws one
        unit-power segment of one file), usable wherever a noise source is.
    """
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")
    files = noise_files(root, category, split, seed=seed, fractions=fractions,
                        group_regex=group_regex)
    n = num_speakers if num_speakers is not None else (30 if category == "babble" else 1)
    return BabbleNoise(files, num_speakers=n, seed=seed, pool_size=pool_size)


def synthetic_babble(root: str | Path, *, num_speakers: int = 30, seed: int = 0,
                     pool_size: int = 256) -> BabbleNoise:
    """Babble from the ``babble/`` split of a synthetic corpus, checked against its speakers.

    Args:
        root: synthetic corpus root (with ``corpus.json``).
        num_speakers: segments summed per draw.
        seed, pool_size: as :class:`~avsr.data.noise.BabbleNoise`.

    Raises:
        FileNotFoundError: no ``corpus.json``, or a corpus without a babble split (made by
            generator version 1: regenerate it).
        ValueError: a babble speaker is a speaker of another split or within the per-utterance
            jitter of a training speaker, or a ``.wav`` under ``babble/`` belongs to no babble
            speaker.
    """
    from avsr.data.synthetic.speakers import Voice, voice_distance

    root = Path(root)
    meta_path = root / "corpus.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"synthetic babble: no {meta_path} (not a complete corpus)")
    meta = json.loads(meta_path.read_text())
    speakers = meta.get("speakers", {})
    babble = {s["id"]: Voice(**s["voice"]) for s in speakers.get("babble", [])}
    files = sorted((root / "babble").glob("*/*.wav"))
    if not babble or not files:
        version = meta.get("config", {}).get("generator_version")
        raise FileNotFoundError(
            f"synthetic babble: {root} has no babble/ split (generator_version {version}); "
            "regenerate the corpus (delete it) so that test babble comes from speakers never "
            "used in training")
    others = {s["id"] for split in ("train", "val", "test") for s in speakers.get(split, [])}
    train = [Voice(**s["voice"]) for s in speakers.get("train", [])]
    close = [(i, round(voice_distance(v, t), 3)) for i, v in babble.items() for t in train
             if voice_distance(v, t) <= 1.0]
    if set(babble) & others or close:
        raise ValueError(f"synthetic babble of {meta_path}: speakers shared with other splits "
                         f"{sorted(set(babble) & others)}, within the jitter of training "
                         f"speakers {close}")
    stray = [f for f in files if f.parent.name not in babble]
    if stray:
        raise ValueError(f"synthetic babble: {stray[0]} is not by a babble speaker of "
                         f"{meta_path} ({len(stray)} such files)")
    return BabbleNoise(files, num_speakers=num_speakers, seed=seed, pool_size=pool_size)


class SyntheticBabble:
    """:func:`synthetic_babble` built (and checked) at the first draw, so that a config can
    name it before the corpus is generated (the data module is built first).

    Args:
        root, num_speakers, seed, pool_size: as :func:`synthetic_babble`.
    """

    def __init__(self, root: str | Path, *, num_speakers: int = 30, seed: int = 0,
                 pool_size: int = 256) -> None:
        self.root = Path(root)
        self.kwargs = {"num_speakers": num_speakers, "seed": seed, "pool_size": pool_size}
        self._noise: BabbleNoise | None = None

    def __repr__(self) -> str:
        return f"SyntheticBabble({str(self.root)!r}, {self.kwargs})"

    @property
    def noise(self) -> BabbleNoise:
        """The checked babble source (built on first use)."""
        if self._noise is None:
            self._noise = synthetic_babble(self.root, **self.kwargs)
        return self._noise

    def sample(self, num_samples: int, generator: torch.Generator | None = None,
               exclude: str | None = None) -> Tensor:
        """Draw (num_samples,) babble (see :meth:`~avsr.data.noise.BabbleNoise.sample`)."""
        return self.noise.sample(num_samples, generator, exclude)


class NoiseChoice:
    """Draw from one of several sources, picked at random per draw (e.g. every MUSAN
    category in training augmentation).

    Args:
        sources: sources, or a mapping name -> source.
        weights: relative probability of each source (default: equal).
    """

    def __init__(self, sources: Sequence[NoiseSource] | Mapping[str, NoiseSource],
                 weights: Sequence[float] | None = None) -> None:
        items = list(sources.values()) if isinstance(sources, Mapping) else list(sources)
        if not items:
            raise ValueError("NoiseChoice needs at least one source")
        w = torch.tensor([1.0] * len(items) if weights is None else list(weights),
                         dtype=torch.float64)
        if w.numel() != len(items) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(f"weights {list(w.tolist())} do not fit {len(items)} sources")
        self.sources = items
        self.names = list(sources) if isinstance(sources, Mapping) else None
        self.weights = w / w.sum()

    def __repr__(self) -> str:
        return f"NoiseChoice({self.names or self.sources}, weights={self.weights.tolist()})"

    def sample(self, num_samples: int, generator: torch.Generator | None = None,
               exclude: str | None = None) -> Tensor:
        """Pick a source with ``generator`` and draw (num_samples,) noise from it."""
        i = int(torch.multinomial(self.weights, 1, generator=generator))
        return self.sources[i].sample(num_samples, generator, exclude)
