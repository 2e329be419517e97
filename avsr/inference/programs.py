"""The ``nn.Module`` wrappers that ``torch.export`` traces: encoder of one modality, CTC head,
decoder initialisation (cross-attention keys/values) and one cached decoder step on a (G, W)
grid of hypotheses. Shapes: see :mod:`avsr.export`."""

from __future__ import annotations

import torch
from torch import nn

from avsr.modalities import check_modality
from avsr.models.decoder import TransformerDecoder

__all__ = ["EncoderProgram", "CTCProgram", "DecoderInitProgram", "DecoderStepProgram"]

class EncoderProgram(nn.Module):
    """``model.encode`` for one modality with positional tensor inputs only."""

    def __init__(self, model: nn.Module, modality: str) -> None:
        super().__init__()
        self.model = model
        self.modality = check_modality(modality)

    def forward(self, x: torch.Tensor, x_lengths: torch.Tensor, video: torch.Tensor | None = None,
                video_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """audio: ``(audio, audio_lengths)``; video: ``(video, video_lengths)``;
        audio-visual: ``(audio, audio_lengths, video, video_lengths)``."""
        if self.modality == "audio":
            audio, audio_lengths, video, video_lengths = x, x_lengths, None, None
        elif self.modality == "video":
            audio, audio_lengths, video, video_lengths = None, None, x, x_lengths
        else:
            audio, audio_lengths = x, x_lengths
        return self.model.encode_modality(audio, audio_lengths, video, video_lengths,
                                          self.modality)


class CTCProgram(nn.Module):
    """The CTC head: (B, T, D) -> (B, T, V) log-probabilities."""

    def __init__(self, ctc: nn.Module) -> None:
        super().__init__()
        self.ctc = ctc

    def forward(self, enc: torch.Tensor) -> torch.Tensor:
        return self.ctc(enc)


class DecoderInitProgram(nn.Module):
    """``TransformerDecoder.init_state`` as tensors: cross keys/values (L, B, H, T, D / H)."""

    def __init__(self, decoder: TransformerDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, memory: torch.Tensor, memory_lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cross_k, cross_v, mask = self.decoder._memory(memory, memory_lengths)
        return torch.stack(cross_k), torch.stack(cross_v), mask


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
            ) -> torch.Tensor:
    """softmax(q kᵀ / √d) v with the softmax in float32, as ``avsr.models.attention``
    computes it for few queries; q (..., L, d), k/v (..., T, d), mask bool broadcastable to
    (..., L, T), True where allowed."""
    scores = torch.matmul(q, k.transpose(-2, -1)).float() * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(scores.softmax(dim=-1).to(v.dtype), v)


class DecoderStepProgram(nn.Module):
    """One cached step of ``TransformerDecoder`` on a (G, W) grid of hypotheses.

    The computation of ``TransformerDecoder.step`` (pre-LN layers, self-attention over the
    cached keys/values plus the new token's, the W hypotheses of an utterance attending
    together to its one memory) kept in the (G, W, ...) layout throughout: no reshape mixes G
    and W, so both stay dynamic (W = 1 included), and the keys/values are passed in and
    returned instead of living in a cache object.
    """

    def __init__(self, decoder: TransformerDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, tokens: torch.Tensor, self_kv: torch.Tensor, cross_k: torch.Tensor,
                cross_v: torch.Tensor, cross_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        dec = self.decoder
        pos = dec.embed_positions
        x = dec.embed_tokens(tokens)  # (G, W, D)
        if pos.scale != 1.0:
            x = x * pos.scale
        x = x + pos.pe.narrow(0, self_kv.shape[4], 1).to(x.dtype)
        new_kv = []
        for i, layer in enumerate(dec.layers):
            attn = layer.self_attn
            heads = (attn.num_heads, attn.head_dim)
            weight = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
            bias = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
            qkv = nn.functional.linear(layer.self_attn_layer_norm(x), weight, bias)
            q, k, v = (t.unflatten(-1, heads) for t in qkv.chunk(3, dim=-1))  # (G, W, H, Dh)
            k = torch.cat([self_kv[2 * i], k.unsqueeze(-2)], dim=-2)  # (G, W, H, t + 1, Dh)
            v = torch.cat([self_kv[2 * i + 1], v.unsqueeze(-2)], dim=-2)
            new_kv += [k, v]
            # one query: k qᵀ, softmax over keys, as avsr.models.attention (the same rounding)
            scores = torch.matmul(k, q.unsqueeze(-1)).float() * q.shape[-1] ** -0.5
            out = torch.matmul(scores.softmax(dim=-2).to(v.dtype).transpose(-2, -1), v)
            out = out.squeeze(-2)  # (G, W, H, Dh)
            x = x + attn.out_proj(out.flatten(-2))
            cross = layer.encoder_attn
            q = cross.q_proj(layer.encoder_attn_layer_norm(x)).unflatten(-1, heads)
            out = _attend(q.transpose(1, 2), cross_k[i], cross_v[i], cross_mask)  # (G, H, W, Dh)
            x = x + cross.out_proj(out.transpose(1, 2).flatten(-2))
            x = layer._ffn(x)
        logits = dec.output_projection(dec.layer_norm(x))  # (G, W, V)
        return logits, torch.stack(new_kv)  # (2L, G, W, H, t + 1, Dh)


# ---------------------------------------------------------------------------- exporting
