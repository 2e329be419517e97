"""Lightning data module: corpus -> datasets -> frame-budget batches, plus noisy test loaders.

Wiring notes for the trainer:

- Give the ``Trainer`` ``use_distributed_sampler=False``. The loaders use
  :class:`~avsr.data.sampler.FrameBudgetBatchSampler`, which shards across ranks by itself;
  Lightning's automatic ``DistributedSampler`` replacement would conflict with it.
- The loaders are :class:`AVDataLoader` s. They are stateful (``state_dict`` /
  ``load_state_dict``), so Lightning stores the sampler's epoch and position in checkpoints
  and a resumed run continues with the next unseen batch.
- A batch may hold 0 items when all of its items were skipped; the training step should
  return None for ``len(batch["ids"]) == 0``.
- :meth:`AVDataModule.skip_summary` gives the skip counts for the run summary.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytorch_lightning as pl
import torch

from avsr.data.corpora import Utterance
from avsr.data.dataset import AVDataset
from avsr.data.device_augment import AUGMENT_ON, RawVideo, augment_loader_batch, device_augments
from avsr.data.loader import AVDataLoader, utterance_lengths
from avsr.data.loading import SeededBatchSampler, worker_init
from avsr.data.noise import BabbleNoise, NoiseAugment, evaluation_mixer
from avsr.data.options import check_options
from avsr.data.parts import Composition, TrainPart, compose, named_parts
from avsr.data.sampler import FrameBudgetBatchSampler
from avsr.data.shards import shard_dataset, shard_index
from avsr.data.splits import TRAIN_DATA, labelled_indices, labelled_subset, training_pool
from avsr.data.table import UtteranceTable
from avsr.data.tokenizer import Tokenizer, ensure_tokenizer_model
from avsr.data.transforms import AudioTransform, VideoTransform

__all__ = ["AVDataModule", "Corpus"]

log = logging.getLogger(__name__)

_BABBLE_CANDIDATES = 20_000  # utterances of a composed training set offered to the babble


class Corpus(Protocol):
    """What the data module needs from a corpus reader (LRS3, LRS2, ...)."""

    def utterances(self, split: str) -> Sequence[Utterance]: ...  # pragma: no cover


class AVDataModule(pl.LightningDataModule):
    """Train/val/test loaders over one corpus, and deterministic noisy test loaders.

    Args:
        corpus: object with ``utterances(split)`` (e.g. ``avsr.data.corpora.LRS3``).
        tokenizer: a ready tokenizer object (``encode``, ``decode``, ``vocab_size``,
            ``blank_id``, ``sos_id``, ``eos_id``) used instead of ``tokenizer_path``, e.g. a
            released model's units (:class:`~avsr.data.units_tokenizer.UnitsTokenizer`);
            None (default) loads or trains avsr's own SentencePiece model.
        tokenizer_path: SentencePiece model; trained from the ``train_split`` transcripts and
            saved here when it does not exist.
        vocab_size: vocabulary size used when the tokenizer must be trained.
        train_split, val_split, test_split: split names of ``corpus``.
        train_sets: the training set as corpus parts (:class:`~avsr.data.parts.TrainPart`:
            corpus, split, weight, labelled, transcripts), a list or a dict name -> part (None
            drops an inherited part). The labelled parts are the labelled pool (then
            ``labelled_fraction`` draws its share), every part the pool of ``train_data="all"``
            and of the unlabelled loader; each part is drawn ``weight`` times per epoch. None
            (default): ``corpus`` split ``train_split``, as one labelled part. See
            :mod:`avsr.data.parts`.
        modalities: modalities to load (``audio``, ``video``).
        max_frames: training frame budget per batch (batch size × longest item).
        max_frames_eval: evaluation budget (default: ``max_frames``).
        max_batch_size: optional cap on items per batch.
        num_buckets: length buckets of the sampler.
        num_workers: DataLoader worker processes.
        train_video_transform, eval_video_transform, train_audio_transform,
            eval_audio_transform: transform objects; None builds the default
            :class:`VideoTransform` / :class:`AudioTransform` with ``train`` set accordingly.
        noise: training noise augmentation or None, e.g. ``NoiseAugment("babble", snrs=...)``:
            the ``"babble"`` placeholder is bound here to :meth:`babble` (training split).
        test_noise: extra noise types of the evaluation matrix, name -> noise source, e.g.
            MUSAN's test-split music (:func:`avsr.data.noise_sets.folder_noise`); a name here
            replaces the built-in ``babble``/``white`` of the same name.
        babble_num_speakers: talkers per babble draw (training babble and
            :meth:`test_dataloader_for`).
        cache: keep decoded media in memory (see :class:`AVDataset`).
        seed: sampler and noisy-test seed.
        max_bad_fraction: skip rate that stops the run.
        pin_memory: DataLoader ``pin_memory``.
        labelled_fraction: fraction of the training utterances whose transcripts are used (a
            low-resource split, e.g. 0.1); drawn once by ``labelled_seed``, independent of
            ``seed``.
        labelled_seed: seed of that draw.
        train_data: what the training loader gives: ``"labelled"`` (the labelled part),
            ``"all"`` (every training utterance, e.g. for self-supervised pre-training, which
            ignores transcripts) or ``"labelled+unlabelled"`` (a dict of two loaders,
            ``labelled`` and ``unlabelled``, each with its own sampler, for semi-supervised
            training; the unlabelled pool is every training utterance, loaded clean: evaluation
            transforms, no noise; its batches carry no tokens, and the transcripts, where the
            corpus has them, only as ``reference_text`` for diagnostics).
        unlabelled_max_frames: frame budget of the unlabelled sampler (default ``max_frames``).
        storage: ``"media"`` (decode the corpus's mp4/wav) or ``"shards"`` (pre-decoded media
            in ``shards_dir``, written by ``python -m avsr.prepare shards``; avsr.data.shards).
        shards_dir: the shard directory for ``storage="shards"``.
        augment_on: ``"cpu"`` (the transforms run per item in the loader) or ``"device"``
            (workers emit uint8 video and raw audio; the same augmentation, built from the
            transforms' settings, runs batched after the transfer in
            :meth:`on_after_batch_transfer`: avsr.data.device_augment).

    Raises:
        ValueError: a numeric or boolean option of the wrong type or range (names the key and
            the value), here rather than deep in the sampler once the model is built.
    """

    # the item type; a subclass over another corpus (LRW words) swaps it
    dataset_class: type[AVDataset] = AVDataset

    def __init__(
        self,
        *,
        corpus: Corpus,
        tokenizer_path: str | Path,
        tokenizer: Any | None = None,
        vocab_size: int = 1000,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        train_sets: Sequence[TrainPart | Mapping[str, Any]]
        | Mapping[str, TrainPart | Mapping[str, Any] | None] | None = None,
        modalities: Sequence[str] = ("audio", "video"),
        max_frames: int = 1600,
        max_frames_eval: int | None = None,
        max_batch_size: int | None = None,
        num_buckets: int = 20,
        num_workers: int = 0,
        train_video_transform: Any | None = None,
        eval_video_transform: Any | None = None,
        train_audio_transform: Any | None = None,
        eval_audio_transform: Any | None = None,
        noise: Any | None = None,
        babble_num_speakers: int = 30,
        test_noise: dict[str, Any] | None = None,
        cache: bool = False,
        seed: int = 0,
        max_bad_fraction: float = 0.05,
        pin_memory: bool = False,
        labelled_fraction: float = 1.0,
        labelled_seed: int = 0,
        train_data: str = "labelled",
        unlabelled_max_frames: int | None = None,
        storage: str = "media",
        shards_dir: str | Path | None = None,
        augment_on: str = "cpu",
    ) -> None:
        super().__init__()
        self.corpus = corpus
        self.tokenizer_path = Path(tokenizer_path)
        self.vocab_size = vocab_size
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        # parts are listed on first use (setup), not here: building the module stays cheap
        self.train_parts = named_parts(train_sets) if train_sets is not None else None
        self._composition: Composition | None = None
        self._pool_parts: dict[str, np.ndarray] = {}  # role -> part index of every item
        self.modalities = tuple(modalities)
        self.max_frames = max_frames
        self.max_frames_eval = max_frames_eval or max_frames
        self.max_batch_size = max_batch_size
        self.num_buckets = num_buckets
        self.num_workers = num_workers
        # `is None`, not `or`: a transform object must never be replaced because it is falsy
        self.video_transforms = {
            True: VideoTransform(train=True) if train_video_transform is None
            else train_video_transform,
            False: VideoTransform(train=False) if eval_video_transform is None
            else eval_video_transform,
        }
        self.audio_transforms = {
            True: AudioTransform(train=True) if train_audio_transform is None
            else train_audio_transform,
            False: AudioTransform(train=False) if eval_audio_transform is None
            else eval_audio_transform,
        }
        if augment_on not in AUGMENT_ON:
            raise ValueError(f"data.augment_on must be one of {AUGMENT_ON}, got {augment_on!r}")
        self.device_augment = None
        if augment_on == "device":  # the transforms' settings move to the batch hook
            self.device_augment = device_augments(self.video_transforms, self.audio_transforms)
            self.video_transforms = {True: RawVideo(), False: RawVideo()}
            self.audio_transforms = {True: None, False: None}
        self.noise = noise
        self.babble_num_speakers = babble_num_speakers
        self.test_noise = dict(test_noise or {})
        self.cache = cache
        self.seed = seed
        self.max_bad_fraction = max_bad_fraction
        self.pin_memory = pin_memory
        if train_data not in TRAIN_DATA:
            raise ValueError(f"train_data must be one of {TRAIN_DATA}, got {train_data!r}")
        self.labelled_fraction = labelled_fraction
        self.labelled_seed = labelled_seed
        self.train_data = train_data
        self.unlabelled_max_frames = unlabelled_max_frames or max_frames
        self.shards = shard_index(storage, shards_dir)  # None: decode the media files
        check_options(self)  # now, not in the sampler once the model is built
        self.tokenizer: Any = tokenizer  # None: load/train the SentencePiece model on demand
        self.datasets: dict[str, AVDataset] = {}
        self.samplers: dict[str, FrameBudgetBatchSampler] = {}
        self._babble: BabbleNoise | None = None

    # -- setup ------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Train the tokenizer when its model is absent (Lightning runs this on one process)."""
        if self.tokenizer is not None:
            return
        if self.train_parts is not None and any(p.labelled for _, p in self.train_parts):
            ensure_tokenizer_model(self.tokenizer_path, self.vocab_size,
                                   lambda: list(self.composition().labelled.texts),
                                   "the labelled training parts' transcripts")
            return
        # no labelled part (self-supervised pre-training on unlabelled parts): the corpus's
        # training split, as without train_sets; validation is labelled all the same
        ensure_tokenizer_model(self.tokenizer_path, self.vocab_size,
                               lambda: [u.text for u in self.corpus.utterances(self.splits["train"])],
                               f"{self.splits['train']} transcripts")

    def load_tokenizer(self, train_if_missing: bool = True) -> Tokenizer:
        """The tokenizer, trained first if its model is absent and ``train_if_missing``.

        Call it before building the model when the model needs ``vocab_size``. Evaluation
        passes ``train_if_missing=False``: a tokenizer trained on the evaluation corpus would
        give other token ids than the model's, and every WER would be wrong.

        Raises:
            FileNotFoundError: no tokenizer model and ``train_if_missing`` is False.
        """
        if self.tokenizer is None:
            if not train_if_missing and not self.tokenizer_path.is_file():
                raise FileNotFoundError(
                    f"tokenizer model {self.tokenizer_path} not found, and evaluation never "
                    "trains one: point data.tokenizer_path at the model the checkpoint was "
                    "trained with")
            self.prepare_data()  # no-op when the model exists; covers use outside a Trainer
            self.tokenizer = Tokenizer(self.tokenizer_path)
        return self.tokenizer

    def setup(self, stage: str | None = None) -> None:
        """Load the tokenizer and build the datasets the ``stage`` needs."""
        self.load_tokenizer()
        if isinstance(self.noise, NoiseAugment) and self.noise.needs_babble:
            self.noise.bind(self.babble())
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                  "predict": ("test",)}.get(stage or "", ("train", "val", "test"))
        if "train" in wanted and self.train_data == "labelled+unlabelled":
            wanted = (*wanted, "unlabelled")
        for role in wanted:
            if role not in self.datasets:
                self.datasets[role] = self._dataset(role)

    def composition(self) -> Composition:
        """The listed ``train_sets`` (listed once).

        Raises:
            RuntimeError: the module has no ``train_sets``.
        """
        if self.train_parts is None:
            raise RuntimeError("no data.train_sets: the training set is data.corpus split "
                               "data.train_split")
        if self._composition is None:
            self._composition = compose(self.train_parts, self.corpus, self.max_bad_fraction)
            c = self._composition
            log.info("training parts %s: %d utterances, %d labelled", dict(zip(
                c.names, np.bincount(c.whole_parts, minlength=len(c.names)).tolist())),
                len(c.whole), len(c.labelled))
        return self._composition

    def labelled_utterances(self) -> Sequence[Utterance]:
        """The training utterances whose transcripts are used (all when the fraction is 1)."""
        if self.train_parts is not None:
            return self._labelled_pool()[0]
        return labelled_subset(self.corpus.utterances(self.splits["train"]),
                               self.labelled_fraction, self.labelled_seed)

    def _labelled_pool(self) -> tuple[UtteranceTable, np.ndarray]:
        c = self.composition()
        if self.labelled_fraction >= 1.0:
            return c.labelled, c.labelled_parts
        keep = np.asarray(labelled_indices(c.labelled.ids, self.labelled_fraction,
                                           self.labelled_seed), dtype=np.int64)
        return c.labelled.take(keep), c.labelled_parts[keep]

    def _utterances(self, role: str) -> Sequence[Utterance]:
        pool = training_pool(role, self.train_data)
        if self.train_parts is not None and pool is not None:
            c = self.composition()
            utterances, parts = ((c.whole, c.whole_parts) if pool == "all"
                                 else self._labelled_pool())
            if not len(utterances):
                raise ValueError("data.train_sets has no labelled part: the labelled pool is "
                                 "empty (set labelled: true on a part, or train_data: all)")
            self._pool_parts[role] = parts
            return utterances
        if pool == "all":
            return self.corpus.utterances(self.splits["train"])
        if role == "train":
            return self.labelled_utterances()
        return self.corpus.utterances(self.splits[role])

    def _dataset(self, role: str, noise: Any | None = None) -> AVDataset:
        train = role == "train"
        utterances, cls = self._utterances(role), self.dataset_class
        if self.shards is not None:  # same items and transcripts, media read from shards
            utterances, cls = self.shards.resolve(utterances), shard_dataset(cls)
        dataset = cls(
            utterances,
            self.tokenizer,
            self.video_transforms[train],
            self.audio_transforms[train],
            modalities=self.modalities,
            noise=self.noise if train else noise,
            max_bad_fraction=self.max_bad_fraction,
            cache=self.cache,
            # the whole pool of a composition holds unlabelled parts: media without text
            **({"require_text": False} if self.train_parts is not None
               and training_pool(role, self.train_data) == "all" else {}),
            # the unlabelled loader's transcripts (hidden by labelled_fraction) only score
            # pseudo-labels: kept apart from texts and tokens, so no loss can read them
            **({"text_as_reference": True} if role == "unlabelled" else {}),
        )
        if self.cache and self.num_workers > 0:
            dataset.preload()  # decoded once here, shared copy-on-write by forked workers
        return dataset

    # -- loaders ----------------------------------------------------------------------------

    def _check_trainer(self) -> None:
        trainer = getattr(self, "trainer", None)
        connector = getattr(trainer, "_accelerator_connector", None)
        if (trainer is not None and getattr(trainer, "world_size", 1) > 1
                and getattr(connector, "use_distributed_sampler", False)):
            raise ValueError("AVDataModule shards batches itself: build the Trainer with "
                             "use_distributed_sampler=False")

    def _loader(self, role: str, dataset: AVDataset) -> AVDataLoader:
        train = role in ("train", "unlabelled")
        self._check_trainer()
        budget = {"train": self.max_frames, "unlabelled": self.unlabelled_max_frames}
        parts = self._pool_parts.get(role) if train else None
        sampler = FrameBudgetBatchSampler(
            utterance_lengths(dataset.utterances),
            budget.get(role, self.max_frames_eval),
            shuffle=train,
            seed=self.seed,
            num_buckets=self.num_buckets,
            max_batch_size=self.max_batch_size,
            groups=parts,
            group_weights=self.composition().weights if parts is not None else None,
        )
        self.samplers[role] = sampler
        return AVDataLoader(
            dataset,
            # workers: per-item augmentation seeds, the same for any worker count and on resume
            # (device augmentation draws from them too: batch["seeds"])
            batch_sampler=SeededBatchSampler(sampler, self.seed)
            if self.num_workers or self.device_augment else sampler,
            collate_fn=dataset.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            worker_init_fn=worker_init,
            # DataLoader draws its workers' base seed from this instead of the global RNG, so
            # starting an iterator (e.g. on resume) does not shift augmentation and dropout
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _get(self, role: str) -> AVDataset:
        if role not in self.datasets:
            self.setup({"train": "fit", "unlabelled": "fit", "val": "validate",
                        "test": "test"}[role])
        return self.datasets[role]

    def train_dataloader(self) -> AVDataLoader | dict[str, AVDataLoader]:
        if self.train_data == "labelled+unlabelled":
            return {"labelled": self._loader("train", self._get("train")),
                    "unlabelled": self._loader("unlabelled", self._get("unlabelled"))}
        return self._loader("train", self._get("train"))

    def val_dataloader(self) -> AVDataLoader:
        return self._loader("val", self._get("val"))

    def test_dataloader(self) -> AVDataLoader:
        return self._loader("test", self._get("test"))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """``augment_on=device``: augment the batch on its device (Lightning calls this after
        moving it, in training, validation and test)."""
        if self.device_augment is None:
            return batch
        trainer = getattr(self, "trainer", None)
        return augment_loader_batch(self.device_augment, batch,
                                    bool(trainer is not None and trainer.training))

    def babble(self) -> BabbleNoise:
        """Babble noise built from the TRAINING split only (never val/test speech)."""
        if self._babble is None:
            if self.train_parts is not None:
                train_utts: Sequence[Utterance] = self.composition().whole
                if len(train_utts) > _BABBLE_CANDIDATES:
                    # BabbleNoise keeps 256 talkers: evenly spaced candidates spare building
                    # a record per utterance of a million-item table
                    train_utts = train_utts.take(np.linspace(
                        0, len(train_utts) - 1, _BABBLE_CANDIDATES).astype(np.int64))
            else:
                train_utts = self.corpus.utterances(self.splits["train"])
            self._babble = BabbleNoise(train_utts, num_speakers=self.babble_num_speakers,
                                       seed=self.seed)
        return self._babble

    def test_dataloader_for(self, noise_type: str | None, snr: float | None) -> AVDataLoader:
        """A test loader whose audio carries ``noise_type`` noise at ``snr`` dB.

        The noise of each utterance is seeded by (seed, utterance id), so the noisy test set
        is identical in every run. ``noise_type=None`` or ``snr=None`` gives the clean set.

        Args:
            noise_type: a ``test_noise`` name, ``"babble"`` (from training utterances),
                ``"white"`` or None.
            snr: SNR in dB (0 is 0 dB) or None.
        """
        self.load_tokenizer()
        mixer = evaluation_mixer(noise_type, snr, self.test_noise, self.babble, self.seed)
        key = f"test/{noise_type}/{snr}"
        self.datasets[key] = self._dataset("test", noise=mixer)
        return self._loader("test", self.datasets[key])

    def skip_summary(self) -> dict[str, dict[str, Any]]:
        """Skip summaries per dataset built so far (for the run summary), and
        ``train_sets``: labelled utterances left out of a composition for want of a
        transcript (per part under ``parts``)."""
        summary = {name: ds.skipped for name, ds in self.datasets.items()}
        if self._composition is not None and self._composition.missing_text:
            summary["train_sets"] = self._composition.skip_summary(self.train_parts or [])
        return summary
