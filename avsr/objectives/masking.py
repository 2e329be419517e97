"""Span masks and the ways masked frames are filled, for masked-prediction pre-training.

- :func:`span_mask`: wav2vec 2.0-style time spans (Baevski et al., NeurIPS 2020), used by
  AV-HuBERT (Shi et al., ICLR 2022) and BRAVEn/USR (Haliassos et al., ICASSP 2024 /
  NeurIPS 2024). Spans here never overlap, so the masked fraction equals ``prob`` in
  expectation (wav2vec 2.0's overlapping spans mask noticeably less than its ``mask_prob``).
- :func:`stream_mask`: Zhang et al. 2022's contextual fusion masking: some items lose a whole
  modality, so one pre-trained model learns to serve A, V and AV.
- :func:`zero_frames`: one frame mask zeroes video frames and the matching audio samples
  (USR pre-training).
- :func:`substitute_frames`: AV-HuBERT's video masking: masked spans are filled with frames
  of another segment of the same clip (``same_seq``) or of another clip (``same_other_seq``).
- :func:`fill_embedding`: masked feature frames replaced by a learned vector.
"""

from __future__ import annotations

import torch

from avsr.models.utils import check_shape, make_pad_mask

__all__ = ["span_mask", "stream_mask", "zero_frames", "substitute_frames", "fill_embedding",
           "mask_runs", "valid_mask"]


def span_mask(
    lengths: torch.Tensor,
    max_len: int,
    prob: float,
    span: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random non-overlapping spans of ``span`` frames covering ``prob`` of each item.

    Each item of length L gets ``n = floor(prob · L / span + u)``, u ~ U[0, 1), spans (so
    E[n · span] = prob · L), at most ``L // span``, placed uniformly among the non-overlapping
    layouts (gaps drawn as sorted uniform offsets). Adjacent spans may touch.

    Args:
        lengths: (B,) valid frames.
        max_len: T, the padded length.
        prob: fraction of frames to mask, in [0, 1].
        span: frames per span (≥ 1).
        generator: random generator (deterministic masks in tests and validation).

    Returns:
        (B, T) bool, True at masked frames (never past a length).
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    if span < 1:
        raise ValueError(f"span must be >= 1, got {span}")
    check_shape("lengths", lengths, 1, "(B,)")
    mask = torch.zeros(lengths.shape[0], max_len, dtype=torch.bool)
    for b, length in enumerate(lengths.tolist()):
        length = min(int(length), max_len)
        if length < span or prob == 0.0:
            continue
        u = float(torch.rand((), generator=generator))
        n = min(int(prob * length / span + u), length // span)
        if n == 0:
            continue
        free = length - n * span  # frames left unmasked, shared out among n + 1 gaps
        offsets = torch.sort(torch.randint(0, free + 1, (n,), generator=generator)).values
        starts = offsets + torch.arange(n) * span
        idx = (starts.unsqueeze(1) + torch.arange(span)).flatten()
        mask[b, idx] = True
    return mask.to(lengths.device)


def stream_mask(
    batch: int,
    p_audio: float,
    p_video: float,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which items lose their whole audio or whole video stream (Zhang et al. 2022).

    One draw per item: audio with ``p_audio``, else video with ``p_video``, else neither
    (span masking only). Never both.

    Returns:
        whole_audio (B,) bool, whole_video (B,) bool.
    """
    if p_audio < 0 or p_video < 0 or p_audio + p_video > 1:
        raise ValueError(f"need p_audio, p_video >= 0 and p_audio + p_video <= 1, got "
                         f"{p_audio}, {p_video}")
    u = torch.rand(batch, generator=generator)
    audio = u < p_audio
    video = (u >= p_audio) & (u < p_audio + p_video)
    return audio.to(device), video.to(device)


def zero_frames(
    video: torch.Tensor | None,
    audio: torch.Tensor | None,
    mask: torch.Tensor,
    samples_per_frame: int = 640,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Zero masked video frames and the audio samples of the same frames.

    Args:
        video: (B, T, 1, H, W) or None.
        audio: (B, S) or None.
        mask: (B, T') bool frame mask (T' may differ from T; extra frames are ignored).
        samples_per_frame: audio samples per video frame (640 at 16 kHz and 25 fps).

    Returns:
        masked copies (the inputs are not modified).
    """
    check_shape("mask", mask, 2, "(B, T)")
    if video is not None:
        check_shape("video", video, 5, "(B, T, 1, H, W)")
        frames = min(video.shape[1], mask.shape[1])
        m = torch.zeros(video.shape[:2], dtype=torch.bool, device=video.device)
        m[:, :frames] = mask[:, :frames]
        video = video.masked_fill(m[:, :, None, None, None], 0.0)
    if audio is not None:
        check_shape("audio", audio, 2, "(B, S)")
        per_sample = mask.repeat_interleave(samples_per_frame, dim=1)  # (B, T' · 640)
        samples = min(audio.shape[1], per_sample.shape[1])
        m = torch.zeros_like(audio, dtype=torch.bool)
        m[:, :samples] = per_sample[:, :samples]
        audio = audio.masked_fill(m, 0.0)
    return video, audio


def mask_runs(mask: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Maximal runs of True per row: ``[[(start, end_exclusive), ...], ...]``."""
    runs = []
    for row in mask.cpu().tolist():
        r, start = [], None
        for t, m in enumerate(row + [False]):
            if m and start is None:
                start = t
            elif not m and start is not None:
                r.append((start, t))
                start = None
        runs.append(r)
    return runs


def substitute_frames(
    video: torch.Tensor,
    lengths: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "same_seq",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill every masked run with as many consecutive frames taken from elsewhere.

    AV-HuBERT's ``same_seq`` / ``same_other_seq`` video masking: the model cannot tell a
    masked frame from its look, only from the context, so it must not rely on a fill value.

    Args:
        video: (B, T, ...) frames (input video or front-end features).
        lengths: (B,) valid frames.
        mask: (B, T) bool.
        mode: ``"same_seq"`` (another segment of the same clip) or ``"same_other_seq"``
            (a segment of another clip of the batch; the same clip when B = 1).
        generator: random generator.

    Returns:
        A copy of ``video`` with the masked runs replaced.
    """
    if mode not in ("same_seq", "same_other_seq"):
        raise ValueError(f"mode must be 'same_seq' or 'same_other_seq', got {mode!r}")
    check_shape("mask", mask, 2, "(B, T)")
    out = video.clone()
    batch = video.shape[0]
    lens = [int(x) for x in lengths.tolist()]
    for b, runs in enumerate(mask_runs(mask)):
        for start, end in runs:
            width = end - start
            src = b
            if mode == "same_other_seq" and batch > 1:
                others = [o for o in range(batch) if o != b and lens[o] >= width]
                if others:
                    src = others[int(torch.randint(len(others), (), generator=generator))]
            room = lens[src] - width
            if room < 0:
                continue
            if src == b:
                # a segment that does not overlap the masked run when the clip allows it
                choices = [s for s in range(room + 1) if s + width <= start or s >= end]
                if not choices:
                    choices = list(range(room + 1))
                s = choices[int(torch.randint(len(choices), (), generator=generator))]
            else:
                s = int(torch.randint(room + 1, (), generator=generator))
            out[b, start:end] = video[src, s:s + width]
    return out


def fill_embedding(x: torch.Tensor, mask: torch.Tensor, embedding: torch.Tensor
                   ) -> torch.Tensor:
    """Replace masked frames of (B, T, D) ``x`` by the (D,) ``embedding`` (differentiable)."""
    check_shape("x", x, 3, "(B, T, D)")
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match x {tuple(x.shape)}")
    return torch.where(mask.unsqueeze(-1), embedding.to(x.dtype), x)


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) bool, True at valid frames."""
    return ~make_pad_mask(lengths, max_len)
