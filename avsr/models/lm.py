"""Causal Transformer language model over the SentencePiece units, for shallow fusion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from avsr.models.encoder import TransformerEncoderLayer
from avsr.models.token_model import TokenSequenceModel
from avsr.models.utils import check_shape, make_pad_mask

__all__ = ["LMState", "TransformerLM", "lm_batch"]


def lm_batch(sentences: Sequence[Sequence[int]], sos_id: int, eos_id: int,
             target_pad: int = -100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forcing batch of B token sequences, for the LM and the attention decoder alike.

    Args:
        sentences: B sequences of token ids (without sos/eos).
        sos_id, eos_id: the start and end symbols.
        target_pad: targets past each length (-100: ignored by ``F.cross_entropy``; a real id
            where the targets are gathered from log-probabilities instead).

    Returns:
        Inputs ``sos + y`` (B, L + 1) padded with 0, targets ``y + eos`` (B, L + 1) padded
        with ``target_pad``, and lengths (B,) = len(y) + 1.
    """
    lengths = torch.tensor([len(s) + 1 for s in sentences], dtype=torch.long)
    inputs = torch.zeros(len(sentences), int(lengths.max()), dtype=torch.long)
    targets = torch.full_like(inputs, target_pad)
    for b, s in enumerate(sentences):
        inputs[b, : len(s) + 1] = torch.tensor([sos_id, *s], dtype=torch.long)
        targets[b, : len(s) + 1] = torch.tensor([*s, eos_id], dtype=torch.long)
    return inputs, targets, lengths


@dataclass
class LMState:
    """Incremental state of N sequences: per layer self-attention keys/values (N, H, t, D/H)."""

    k: list[torch.Tensor] = field(default_factory=list)
    v: list[torch.Tensor] = field(default_factory=list)
    offset: int = 0


class TransformerLM(TokenSequenceModel):
    """Decoder-only pre-LN Transformer LM (the LM of ESPnet/VSR-ML shallow fusion, smaller).

    Reads ``sos`` + tokens and predicts tokens + ``eos`` over the same vocabulary as the
    recogniser (blank/unk included, so ids need no mapping). Layers are the encoder's pre-LN
    layers under a causal mask; ``init_state`` / ``step`` / ``reorder_state`` decode
    incrementally with a key/value cache, like :class:`avsr.models.TransformerDecoder`.

    Args:
        vocab_size: vocabulary V.
        d_model: model dimension D.
        num_layers: layers.
        num_heads: attention heads.
        ffn_dim: feed-forward hidden size.
        dropout: dropout.
        activation: FFN activation.
        tie_embeddings: share the output projection with the token embedding.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        activation: str = "gelu",
        tie_embeddings: bool = True,
    ) -> None:
        super().__init__()
        self.build_input(vocab_size, d_model, dropout)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, num_heads, ffn_dim, dropout, activation)
            for _ in range(num_layers)
        )
        self.build_output(tie_embeddings)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced next-token logits.

        Args:
            tokens: (B, L) inputs starting with sos.
            lengths: (B,) valid tokens; padding never reaches valid positions (causal mask).

        Returns:
            logits (B, L, V).
        """
        check_shape("tokens", tokens, 2, "(B, L)")
        steps = tokens.shape[1]
        causal = torch.ones(steps, steps, dtype=torch.bool, device=tokens.device).tril()
        mask = causal[None, None]  # (1, 1, L, L), True where attention is allowed
        if lengths is not None:
            mask = mask & ~make_pad_mask(lengths, steps)[:, None, None, :]
            mask = mask | torch.eye(steps, dtype=torch.bool, device=tokens.device)  # no NaN rows
        x = self.embed_inputs(tokens)
        for layer in self.layers:
            x = layer(x, mask)
        return self.output_projection(self.output_states(x))

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> LMState:
        """An empty cache for ``batch_size`` sequences (feed sos first)."""
        return LMState()

    def step(self, tokens_last: torch.Tensor, state: LMState) -> tuple[torch.Tensor, LMState]:
        """Feed one token per sequence.

        Args:
            tokens_last: (N,) newest token of each sequence.
            state: from ``init_state`` or the previous ``step`` (not modified).

        Returns:
            logits (N, V) for the next token and the new state.
        """
        check_shape("tokens_last", tokens_last, 1, "(N,)")
        x = self.embed_inputs(tokens_last.unsqueeze(1), state.offset)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            # the encoder layer's body with a key/value cache instead of a causal mask
            attn = layer.self_attn
            q, k, v = attn.project_qkv(layer.self_attn_layer_norm(x))
            if state.offset > 0:
                k = torch.cat([state.k[i], k], dim=2)
                v = torch.cat([state.v[i], v], dim=2)
            x = x + layer.dropout(attn.attend(q, k, v))
            y = layer.dropout(layer.activation(layer.fc1(layer.final_layer_norm(x))))
            x = x + layer.dropout(layer.fc2(y))
            new_k.append(k)
            new_v.append(v)
        logits = self.output_projection(self.layer_norm(x)).squeeze(1)
        return logits, LMState(new_k, new_v, state.offset + 1)

    @staticmethod
    def reorder_state(state: LMState, index: torch.Tensor) -> LMState:
        """Select/repeat sequences (N',) of the cache (beam parents)."""
        return LMState([k.index_select(0, index) for k in state.k],
                       [v.index_select(0, index) for v in state.v], state.offset)
