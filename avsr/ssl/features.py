"""Features clustered into AV-HuBERT targets (Shi et al., ICLR 2022; REFERENCE.md §2.3).

- iteration 1: 13 MFCCs + Δ + ΔΔ (39-d) at 100 Hz from the audio (torchaudio's Kaldi-compatible
  MFCC, 25 ms windows every 10 ms, as HuBERT's ``dump_mfcc_feature.py``);
- later iterations: one encoder block's output of a trained avsr model at 25 Hz.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torchaudio

from avsr.data.corpora import Utterance
from avsr.data.io import load_audio

__all__ = ["mfcc_features", "mfcc_frames", "MFCC_RATE", "utterance_mfcc", "layer_features"]

MFCC_RATE = 100
ENCODER_SIDE = ("audio_frontend", "video_frontend", "fusion", "encoder")
_WIN, _HOP = 400, 160  # 25 ms / 10 ms at 16 kHz


def mfcc_frames(num_samples: int) -> int:
    """MFCC frames of a waveform (Kaldi ``snip_edges``): 1 + (S − 400) // 160, 0 if shorter."""
    return 0 if num_samples < _WIN else 1 + (num_samples - _WIN) // _HOP


def mfcc_features(wave: torch.Tensor, sample_rate: int = 16000) -> torch.Tensor:
    """(S,) waveform -> (T, 39) MFCC + Δ + ΔΔ at 100 Hz."""
    if wave.dim() != 1:
        raise ValueError(f"wave must be (S,), got {tuple(wave.shape)}")
    if wave.numel() < _WIN:
        return wave.new_zeros(0, 39)
    mfcc = torchaudio.compliance.kaldi.mfcc(wave.unsqueeze(0).float(),
                                           sample_frequency=sample_rate,
                                           use_energy=False)  # (T, 13)
    feats = mfcc.t().unsqueeze(0)  # (1, 13, T): deltas run along the last axis
    d1 = torchaudio.functional.compute_deltas(feats)
    d2 = torchaudio.functional.compute_deltas(d1)
    return torch.cat([feats, d1, d2], dim=1)[0].t().contiguous()  # (T, 39)


def utterance_mfcc(utt: Utterance) -> torch.Tensor:
    if utt.audio_path is None:
        raise ValueError(f"{utt.id}: no audio for MFCC features")
    return mfcc_features(load_audio(utt.audio_path))


@torch.no_grad()
def layer_features(ckpt_path: str | Path, utterances: Sequence[Utterance], layer: int,
                   modality: str = "audiovisual", source: str = "model",
                   batch_size: int = 8) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(id, (T, D))`` outputs of encoder block ``layer`` (1-based) at 25 Hz.

    The model is rebuilt from the checkpoint's stored config (``source``: ``model`` or
    ``objective.teacher.model``); inputs get the run's evaluation transforms (centre crop, no
    noise), so features do not depend on augmentation draws.
    """
    from avsr.checkpoints import instantiate_stored, load_run
    from avsr.data.dataset import AVDataset

    # the encoder side only: an EMA teacher of pre-training holds no decoder
    run = load_run(ckpt_path, source=source, parts=ENCODER_SIDE)
    model, cfg = run.model, run.config
    dataset = AVDataset(list(utterances), None,
                        instantiate_stored(cfg.data.eval_video_transform, f"{ckpt_path}: data"),
                        instantiate_stored(cfg.data.eval_audio_transform, f"{ckpt_path}: data"),
                        modalities=("audio", "video"))
    for start in range(0, len(dataset), batch_size):
        batch = dataset.collate([dataset[i] for i in range(start,
                                                          min(start + batch_size, len(dataset)))])
        if not batch["ids"]:
            continue
        _, lengths, blocks = model.encode_modality(batch["audio"], batch["audio_lengths"],
                                                   batch["video"], batch["video_lengths"],
                                                   modality, return_hidden=True)
        if not 1 <= layer <= len(blocks):
            raise ValueError(f"layer must be in 1..{len(blocks)}, got {layer}")
        feats = blocks[layer - 1]
        for b, utt_id in enumerate(batch["ids"]):
            yield utt_id, feats[b, : int(lengths[b])].float()
