"""Auditory front-end: wav2vec 2.0 / HuBERT (torchaudio's modules), brought to 25 Hz."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import torch
import torchaudio
from torch import nn
from torchaudio.models.wav2vec2.components import GradMultiply

from avsr.models.frontends.audio_resnet import SAMPLES_PER_FRAME, whole_frames
from avsr.models.utils import make_pad_mask

__all__ = ["Wav2Vec2Frontend", "RATES"]

RATES = ("conv", "avg", "none")
_W2V_STRIDE = 320  # 20 ms: product of the feature encoder's strides (5·2·2·2·2·2·2)


def _masked_group_norm(norm: nn.GroupNorm, x: torch.Tensor, lengths: torch.Tensor
                       ) -> torch.Tensor:
    """``norm`` (over channel groups and time) with statistics from valid frames only.

    x: (B, C, T); lengths (B,). wav2vec 2.0 Base normalises the first convolution's output
    over time: unmasked, padding would change every valid frame.
    """
    batch, channels, frames = x.shape
    g = norm.num_groups
    valid = (~make_pad_mask(lengths, frames)).to(x.dtype)[:, None, None, :]  # (B, 1, 1, T)
    xg = x.view(batch, g, channels // g, frames)
    count = (valid.sum(dim=-1, keepdim=True) * (channels // g)).clamp(min=1.0)
    mean = (xg * valid).sum(dim=(2, 3), keepdim=True) / count
    var = (((xg - mean) ** 2) * valid).sum(dim=(2, 3), keepdim=True) / count
    y = ((xg - mean) / torch.sqrt(var + norm.eps)).view(batch, channels, frames)
    if norm.affine:
        y = y * norm.weight[:, None] + norm.bias[:, None]
    return y


class Wav2Vec2Frontend(nn.Module):
    """wav2vec 2.0 convolutional feature encoder + transformer with a convolutional positional
    embedding, then a 50 → 25 Hz rate adapter.

    Baevski et al., "wav2vec 2.0", NeurIPS 2020 (HuBERT, Hsu et al. 2021, shares the layout);
    the audio front-end of Pan et al., ACL 2022 (wav2vec 2.0 Large LV-60k, last layer, then a
    stride-2 Conv1d to 25 Hz). ``feature_extractor`` and ``encoder`` are the modules
    :func:`torchaudio.models.wav2vec2_model` builds (keyword arguments = its own), so
    torchaudio's wav2vec2 / HuBERT state_dicts (and, through torchaudio's importers, fairseq and
    Hugging Face checkpoints) load with :meth:`load_wav2vec2_state_dict`.

    Differences from calling the torchaudio model: each item is cut to whole 640-sample
    frames; ``"group_norm"`` statistics ignore padding, so a padded batch row equals the item
    alone (in eval mode); the rate adapter (``downsample``) pads the 2T - 1 wav2vec 2.0 frames of
    T video frames with one zero frame and halves the rate (``"conv"``: Conv1d kernel
    ``downsample_kernel``, stride 2, to ``output_dim``; ``"avg"``: average pairs; ``"none"``:
    keep 50 Hz).

    Training options: ``freeze_steps`` runs the whole wav2vec 2.0 model without gradients for
    the first N training forwards (fairseq's ``freeze_finetune_updates``; Pan et al. freeze
    for 40 epochs); ``feature_grad_scale`` scales the gradient reaching the convolutional
    feature encoder (fairseq's ``feature_grad_mult``: 0.1 in wav2vec 2.0 pre-training, 0 =
    frozen CNN as in Pan et al.).

    Args:
        extractor_mode ... encoder_layer_drop: as :func:`torchaudio.models.wav2vec2_model`
            (defaults: wav2vec 2.0 Base).
        rate: ``"conv"``, ``"avg"`` or ``"none"`` (50 Hz output).
        output_dim: output size of the ``"conv"`` adapter (default ``encoder_embed_dim``).
        downsample_kernel: kernel of the ``"conv"`` adapter.
        freeze_steps: training forwards without wav2vec 2.0 gradients.
        feature_grad_scale: gradient multiplier of the convolutional feature encoder.

    Shapes:
        - audio (B, S) 16 kHz, lengths (B,) samples.
        - output (B, S // 640, D) at 25 Hz (``rate="none"``: (B, T50, D) at 50 Hz), zero past
          each length; lengths (B,).
    """

    def __init__(
        self,
        *,
        extractor_mode: str = "group_norm",
        extractor_conv_layer_config: Sequence[Sequence[int]] | None = None,
        extractor_conv_bias: bool = False,
        encoder_embed_dim: int = 768,
        encoder_projection_dropout: float = 0.1,
        encoder_pos_conv_kernel: int = 128,
        encoder_pos_conv_groups: int = 16,
        encoder_num_layers: int = 12,
        encoder_num_heads: int = 12,
        encoder_attention_dropout: float = 0.1,
        encoder_ff_interm_features: int = 3072,
        encoder_ff_interm_dropout: float = 0.0,
        encoder_dropout: float = 0.1,
        encoder_layer_norm_first: bool = False,
        encoder_layer_drop: float = 0.05,
        rate: str = "conv",
        output_dim: int | None = None,
        downsample_kernel: int = 2,
        freeze_steps: int = 0,
        feature_grad_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if rate not in RATES:
            raise ValueError(f"unknown rate {rate!r}; expected one of {RATES}")
        conv_config = None
        if extractor_conv_layer_config is not None:
            conv_config = [tuple(int(v) for v in layer) for layer in extractor_conv_layer_config]
        model = torchaudio.models.wav2vec2_model(
            extractor_mode=extractor_mode,
            extractor_conv_layer_config=conv_config,
            extractor_conv_bias=extractor_conv_bias,
            encoder_embed_dim=encoder_embed_dim,
            encoder_projection_dropout=encoder_projection_dropout,
            encoder_pos_conv_kernel=encoder_pos_conv_kernel,
            encoder_pos_conv_groups=encoder_pos_conv_groups,
            encoder_num_layers=encoder_num_layers,
            encoder_num_heads=encoder_num_heads,
            encoder_attention_dropout=encoder_attention_dropout,
            encoder_ff_interm_features=encoder_ff_interm_features,
            encoder_ff_interm_dropout=encoder_ff_interm_dropout,
            encoder_dropout=encoder_dropout,
            encoder_layer_norm_first=encoder_layer_norm_first,
            encoder_layer_drop=encoder_layer_drop,
            aux_num_out=None,
        )
        self.feature_extractor = model.feature_extractor
        self.encoder = model.encoder
        stride = 1
        for block in self.feature_extractor.conv_layers:
            stride *= block.stride
        if rate != "none" and stride != _W2V_STRIDE:
            raise ValueError(f"rate {rate!r} needs a feature-encoder stride of {_W2V_STRIDE} "
                             f"samples (50 Hz), got {stride}")
        self.rate = rate
        self.freeze_steps = freeze_steps
        self.feature_grad_scale = feature_grad_scale
        self.downsample: nn.Module | None = None
        self.output_dim = encoder_embed_dim
        if rate == "conv":
            self.output_dim = encoder_embed_dim if output_dim is None else output_dim
            self.downsample = nn.Conv1d(encoder_embed_dim, self.output_dim, downsample_kernel,
                                        stride=2, padding=(downsample_kernel - 1) // 2)
        elif rate == "avg":
            self.downsample = nn.AvgPool1d(2, 2)
        # training forwards seen, for freeze_steps (saved with the model, so resuming keeps it)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def load_wav2vec2_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
        """Load a torchaudio ``Wav2Vec2Model`` / HuBERT state_dict (``feature_extractor.*``,
        ``encoder.*``; ``aux.*`` and other heads are ignored). Returns the ignored keys."""
        keep = ("feature_extractor.", "encoder.")
        ours = {k: v for k, v in state_dict.items() if k.startswith(keep)}
        own = self.state_dict()
        missing = [k for k in own if k.startswith(keep) and k not in ours]
        if missing:
            raise KeyError(f"state_dict lacks {len(missing)} wav2vec 2.0 keys, e.g. {missing[:3]}")
        nn.Module.load_state_dict(self, {**own, **ours}, strict=True)
        return sorted(k for k in state_dict if not k.startswith(keep))

    def _features(self, audio: torch.Tensor, lengths: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        # torchaudio's FeatureExtractor.forward, with padding-free group-norm statistics
        x = audio.unsqueeze(1)  # (B, 1, S)
        for block in self.feature_extractor.conv_layers:
            x = block.conv(x)
            lengths = (torch.div(lengths - block.kernel_size, block.stride, rounding_mode="floor")
                       + 1).clamp(min=0)
            if isinstance(block.layer_norm, nn.GroupNorm):
                x = _masked_group_norm(block.layer_norm, x, lengths)
            elif block.layer_norm is not None:
                x = block.layer_norm(x)
            x = nn.functional.gelu(x)
        return x.transpose(1, 2), lengths  # (B, T50, C)

    def _wav2vec2(self, audio: torch.Tensor, lengths: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        cnn_grad = self.feature_grad_scale > 0 and torch.is_grad_enabled()
        with contextlib.nullcontext() if cnn_grad else torch.no_grad():
            x, lengths = self._features(audio, lengths)
        if cnn_grad and self.feature_grad_scale != 1.0:
            x = GradMultiply.apply(x, self.feature_grad_scale)
        return self.encoder(x, lengths), lengths

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode waveforms; see the class docstring for shapes."""
        audio, frames, out_lengths = whole_frames(audio, lengths)
        frozen = self.training and int(self.num_updates) < self.freeze_steps
        if self.training:
            self.num_updates += 1
        with torch.no_grad() if frozen else contextlib.nullcontext():
            x, w2v_lengths = self._wav2vec2(audio, out_lengths * SAMPLES_PER_FRAME)
        if self.downsample is None:
            pad = make_pad_mask(w2v_lengths, x.shape[1])
            return x.masked_fill(pad.unsqueeze(-1), 0.0), w2v_lengths
        # (B, T50, C) with T50 = 2T - 1 -> zero past each item's frames, width 2T, stride 2
        x = x[:, : 2 * frames].masked_fill(make_pad_mask(w2v_lengths, min(x.shape[1], 2 * frames))
                                           .unsqueeze(-1), 0.0)
        x = nn.functional.pad(x, (0, 0, 0, 2 * frames - x.shape[1]))
        x = self.downsample(x.transpose(1, 2)).transpose(1, 2)  # (B, T, D)
        pad = make_pad_mask(out_lengths, frames)
        return x.masked_fill(pad.unsqueeze(-1), 0.0), out_lengths
