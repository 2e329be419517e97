"""Token input and output of the autoregressive models (the attention decoder and the LM)."""

from __future__ import annotations

import math

import torch
from torch import nn

from avsr.models.positional import SinusoidalPositionalEncoding

__all__ = ["TokenSequenceModel"]


class TokenSequenceModel(nn.Module):
    """Base of the token models: embedding (scaled by √D) plus sinusoidal positions, dropout;
    final LayerNorm and output projection, optionally tied to the embedding.

    Attribute names are fairseq's (``embed_tokens``, ``embed_positions``, ``layer_norm``,
    ``output_projection``), so the state-dict keys are those of the models that use it.
    A subclass calls :meth:`build_input` first, then builds its layers, then
    :meth:`build_output`: parameters are created (and random-initialised) in that order.
    """

    vocab_size: int
    d_model: int

    def build_input(self, vocab_size: int, d_model: int, dropout: float,
                    scale_embedding: bool = True, positions: str = "interleaved",
                    first_position: int = 0) -> None:
        """Create ``embed_tokens`` (normal, std D^-½), ``embed_positions`` and ``dropout``.

        ``scale_embedding`` multiplies the embedding by √D; ``positions`` and
        ``first_position`` are the sinusoid table's layout and first position
        (:class:`~avsr.models.positional.SinusoidalPositionalEncoding`; AV-HuBERT's fairseq
        decoder: no scaling, ``"fairseq"``, 2).
        """
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.embed_tokens = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed_tokens.weight, mean=0.0, std=d_model**-0.5)
        self.embed_positions = SinusoidalPositionalEncoding(
            d_model, scale=math.sqrt(d_model) if scale_embedding else 1.0, layout=positions,
            first_position=first_position)
        self.dropout = nn.Dropout(dropout)

    def build_output(self, tie_embeddings: bool, layer_norm_eps: float = 1e-5) -> None:
        """Create ``layer_norm`` and ``output_projection`` (no bias when tied)."""
        self.layer_norm = nn.LayerNorm(self.d_model, eps=layer_norm_eps)
        self.output_projection = nn.Linear(self.d_model, self.vocab_size,
                                           bias=not tie_embeddings)
        if tie_embeddings:
            self.output_projection.weight = self.embed_tokens.weight

    def embed_inputs(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """(B, L) token ids at positions offset.. -> (B, L, D) layer inputs."""
        return self.dropout(self.embed_positions(self.embed_tokens(tokens), offset))

    def output_states(self, x: torch.Tensor) -> torch.Tensor:
        """Last layer's output (B, L, D) -> the states the output layer reads (B, L, D)."""
        return self.layer_norm(x)
