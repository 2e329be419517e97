"""Pre-LN Transformer decoder with a true key/value cache for incremental decoding."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from avsr.models.attention import MultiHeadAttention, key_padding_attn_mask
from avsr.models.kv_cache import KVCache
from avsr.models.token_model import TokenSequenceModel
from avsr.models.utils import check_shape, make_activation

__all__ = ["DecoderState", "TransformerDecoderLayer", "TransformerDecoder"]


@dataclass
class DecoderState:
    """Incremental decoding state of :class:`TransformerDecoder` for N running sequences.

    Attributes:
        cache: self-attention keys/values of the ``offset`` tokens fed so far (``None`` before
            the first step); read them per layer through ``self_k`` / ``self_v``.
        cross_k, cross_v: per layer, cross-attention keys/values (N, H, T, D / H) of the
            memory, computed once by ``init_state``; or (G, H, T, D / H) with N = G · W when
            each run of W consecutive sequences shares one memory (beam search).
        cross_mask: bool (N or G, 1, 1, T), True at valid memory frames.
        offset: number of tokens fed so far (position of the next token).
        max_len: expected longest sequence (sizes the cache storage once), or ``None``.
    """

    cache: KVCache | None = None
    cross_k: list[torch.Tensor] = field(default_factory=list)
    cross_v: list[torch.Tensor] = field(default_factory=list)
    cross_mask: torch.Tensor | None = None
    offset: int = 0
    max_len: int | None = None

    @property
    def self_k(self) -> list[torch.Tensor]:
        """Per layer, the cached self-attention keys (N, H, offset, D / H)."""
        cache, n = self.cache, len(self.cross_k)
        return [] if cache is None else [cache.keys(i, self.offset) for i in range(n)]

    @property
    def self_v(self) -> list[torch.Tensor]:
        """Per layer, the cached self-attention values (N, H, offset, D / H)."""
        cache, n = self.cache, len(self.cross_k)
        return [] if cache is None else [cache.values(i, self.offset) for i in range(n)]

    def select(self, index: torch.Tensor, memory_index: torch.Tensor | None) -> DecoderState:
        """Rows ``index`` (N',) of the self-attention cache and rows ``memory_index`` of the
        projected memory (``None``: keep it as it is, e.g. shared per utterance)."""

        def pick(ts: list[torch.Tensor]) -> list[torch.Tensor]:
            return ts if memory_index is None else [t.index_select(0, memory_index) for t in ts]

        assert self.cross_mask is not None
        return DecoderState(
            cache=None if self.cache is None else self.cache.select(index, self.offset),
            cross_k=pick(self.cross_k), cross_v=pick(self.cross_v),
            cross_mask=self.cross_mask if memory_index is None
            else self.cross_mask.index_select(0, memory_index),
            offset=self.offset, max_len=self.max_len,
        )


class TransformerDecoderLayer(nn.Module):
    """Pre-LN decoder layer: causal self-attention, cross-attention to memory, FFN.

    Names follow fairseq (``self_attn``, ``self_attn_layer_norm``, ``encoder_attn``,
    ``encoder_attn_layer_norm``, ``fc1``, ``fc2``, ``final_layer_norm``).

    Args:
        d_model: model dimension D.
        num_heads: attention heads.
        ffn_dim: feed-forward hidden size.
        dropout: dropout on attention probabilities, FFN hidden units and residual branches.
        activation: FFN activation.
        layer_norm_eps: LayerNorm epsilon (ESPnet, hence auto_avsr / USR: 1e-12).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.encoder_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.fc1 = nn.Linear(d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d_model)
        self.activation = make_activation(activation)
        self.final_layer_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.activation(self.fc1(self.final_layer_norm(x))))
        return x + self.dropout(self.fc2(y))

    def forward(
        self,
        x: torch.Tensor,
        cross_k: torch.Tensor,
        cross_v: torch.Tensor,
        cross_mask: torch.Tensor,
        self_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        rows: torch.Tensor | None = None,
        self_qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the layer on L new tokens.

        Args:
            x: (B, L, D) inputs of the new tokens.
            cross_k, cross_v: (B, H, T, D / H) projected memory.
            cross_mask: bool (B, 1, 1, T), True at valid memory frames.
            self_kv: incremental decoding (L == 1): key/value buffers (B, H, t + 1, D / H)
                holding the t earlier tokens; the new token's key/value is written in place
                at position t. ``None`` when x holds the whole prefix (teacher forcing).
            rows: with ``self_kv``, x holds only these (B',) sequences of the B in the cache
                and the memory; the others' position t is left unwritten.
            self_qkv: the self-attention projections of ``self_attn_layer_norm(x)``, each
                (B', H, L, D / H), when the caller already has them.

        Returns:
            (B, L, D) outputs and the self-attention keys/values including the new tokens.
        """
        attn = self.self_attn
        q, k, v = self_qkv if self_qkv is not None else attn.project_qkv(
            self.self_attn_layer_norm(x))
        if self_kv is not None:
            if x.shape[1] != 1:
                raise ValueError(f"a cached step takes one token per sequence, got x of shape "
                                 f"{tuple(x.shape)}")
            if rows is None:
                self_kv[0][:, :, -1:] = k
                self_kv[1][:, :, -1:] = v
            else:
                self_kv[0][:, :, -1].index_copy_(0, rows, k.squeeze(2))
                self_kv[1][:, :, -1].index_copy_(0, rows, v.squeeze(2))
            k, v = self_kv
        elif rows is not None:
            raise ValueError("rows needs a key/value cache (self_kv)")

        def expand(t: torch.Tensor) -> torch.Tensor:
            # the attentions run on every cached sequence (they share memories by position);
            # the other rows of their queries are zeros and their outputs are dropped
            return t if rows is None else t.new_zeros((k.shape[0],) + t.shape[1:]).index_copy_(
                0, rows, t)

        def pick(t: torch.Tensor) -> torch.Tensor:
            return t if rows is None else t.index_select(0, rows)

        # with a cache the new token may see every cached one; L == 1 needs no mask
        causal = self_kv is None and x.shape[1] > 1
        x = x + self.dropout(pick(attn.attend(expand(q), k, v, is_causal=causal)))
        q = self.encoder_attn.project_q(self.encoder_attn_layer_norm(x))
        x = x + self.dropout(pick(self._cross_attend(expand(q), cross_k, cross_v, cross_mask)))
        return self._ffn(x), (k, v)

    def _cross_attend(self, q: torch.Tensor, cross_k: torch.Tensor, cross_v: torch.Tensor,
                      cross_mask: torch.Tensor) -> torch.Tensor:
        rows, groups = q.shape[0], cross_k.shape[0]
        if rows == groups:
            return self.encoder_attn.attend(q, cross_k, cross_v, cross_mask)
        if q.shape[2] != 1 or rows % groups:
            raise ValueError(f"{rows} one-token queries cannot share {groups} memories "
                             f"(queries {tuple(q.shape)})")
        # beam search: W = rows / groups consecutive hypotheses share one utterance's memory;
        # their one-token queries attend together, so the memory is never copied W times
        q = q.squeeze(2).unflatten(0, (groups, rows // groups)).transpose(1, 2)  # (G, H, W, Dh)
        if self.training:
            return self.encoder_attn.attend(q, cross_k, cross_v, cross_mask).flatten(0, 1)[:, None]
        # as attend's matmul softmax, with the scale on q and the mask added in place: the
        # (G, H, W, T) scores are the large tensor here, touched once less each
        scores = torch.matmul(q * q.shape[-1] ** -0.5, cross_k.transpose(-2, -1)).float()
        scores += torch.zeros_like(cross_mask, dtype=scores.dtype).masked_fill_(
            ~cross_mask, float("-inf"))
        out = torch.matmul(scores.softmax(dim=-1).to(cross_v.dtype), cross_v)  # (G, H, W, Dh)
        out = self.encoder_attn.out_proj(out.transpose(1, 2).flatten(2))  # (G, W, D)
        return out.flatten(0, 1).unsqueeze(1)


class TransformerDecoder(TokenSequenceModel):
    """Attention decoder of the hybrid CTC/attention model (Watanabe et al., "Hybrid
    CTC/Attention Architecture for End-to-End Speech Recognition", IEEE JSTSP 2017).

    Token embedding (scaled by √D) plus sinusoidal positions, pre-LN layers, final LayerNorm,
    output projection to the vocabulary (fairseq names: ``embed_tokens``, ``layers``,
    ``layer_norm``, ``output_projection``).

    Incremental decoding keeps a true per-layer key/value cache: ``init_state`` projects the
    memory for cross-attention once; each ``step`` projects only the newest token. The state is
    reordered along its batch axis by ``reorder_state`` (beam search: expand or pick parents).

    Args:
        vocab_size: output vocabulary V (includes blank/sos/eos).
        d_model: model dimension D.
        num_layers: decoder layers.
        num_heads: attention heads.
        ffn_dim: feed-forward hidden size.
        dropout: dropout.
        activation: FFN activation.
        tie_embeddings: share the output projection with the token embedding.
        layer_norm_eps: LayerNorm epsilon (ESPnet, hence auto_avsr / USR: 1e-12).
        scale_embedding, positions, first_position: token embedding scaling by √D and the
            sinusoid table (:meth:`TokenSequenceModel.build_input`); AV-HuBERT's fairseq
            decoder: ``False``, ``"fairseq"``, 2.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        activation: str = "relu",
        tie_embeddings: bool = False,
        layer_norm_eps: float = 1e-5,
        scale_embedding: bool = True,
        positions: str = "interleaved",
        first_position: int = 0,
    ) -> None:
        super().__init__()
        self.build_input(vocab_size, d_model, dropout, scale_embedding, positions,
                         first_position)
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(d_model, num_heads, ffn_dim, dropout, activation,
                                    layer_norm_eps)
            for _ in range(num_layers)
        )
        self.build_output(tie_embeddings, layer_norm_eps)

    def _memory(
        self, memory: torch.Tensor, memory_lengths: torch.Tensor | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        check_shape("memory", memory, 3, "(B, T, D)")
        if memory.shape[-1] != self.d_model:
            raise ValueError(f"memory must be (B, T, {self.d_model}), got {tuple(memory.shape)}")
        batch, frames = memory.shape[:2]
        if memory_lengths is None:
            memory_lengths = torch.full((batch,), frames, dtype=torch.long, device=memory.device)
        mask = key_padding_attn_mask(memory_lengths, frames)
        kv = [layer.encoder_attn.project_kv(memory) for layer in self.layers]
        return [k for k, _ in kv], [v for _, v in kv], mask

    def forward(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor | None,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor | None,
        return_states: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits.

        Args:
            tokens: (B, L) decoder inputs, starting with sos. Positions past
                ``token_lengths`` are padding; causal attention keeps them out of valid
                positions, so their logits are meaningless and the lengths are not needed.
            token_lengths: (B,) valid tokens (accepted for the ``(x, lengths)`` convention).
            memory: (B, T, D) encoder output.
            memory_lengths: (B,) valid frames; ``None`` means all T.
            return_states: also return the states (B, L, D) the output layer reads (the
                final LayerNorm's output).

        Returns:
            logits (B, L, V) [, states (B, L, D)].
        """
        check_shape("tokens", tokens, 2, "(B, L)")
        if tokens.shape[0] != memory.shape[0]:
            raise ValueError(
                f"tokens {tuple(tokens.shape)} and memory {tuple(memory.shape)} differ in B"
            )
        cross_k, cross_v, mask = self._memory(memory, memory_lengths)
        x = self.embed_inputs(tokens)
        for layer, k, v in zip(self.layers, cross_k, cross_v):
            x, _ = layer(x, k, v, mask)
        states = self.output_states(x)
        logits = self.output_projection(states)
        return (logits, states) if return_states else logits

    def init_state(
        self, memory: torch.Tensor, memory_lengths: torch.Tensor | None = None,
        max_len: int | None = None,
    ) -> DecoderState:
        """Start incremental decoding: project the memory for every layer's cross-attention.

        Args:
            memory: (B, T, D) encoder output.
            memory_lengths: (B,) valid frames; ``None`` means all T.
            max_len: expected number of ``step`` calls at most (sos included); sizes the
                key/value storage once. Only a hint: longer sequences still work.

        Returns:
            A :class:`DecoderState` with empty self-attention caches.
        """
        cross_k, cross_v, mask = self._memory(memory, memory_lengths)
        return DecoderState(cross_k=cross_k, cross_v=cross_v, cross_mask=mask, offset=0,
                            max_len=max_len)

    def _cache_dtype(self, device: torch.device) -> torch.dtype:
        # the keys/values come out of a Linear: autocast's dtype when it is on
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return self.embed_tokens.weight.dtype

    def step(
        self, tokens_last: torch.Tensor, state: DecoderState, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, DecoderState]:
        """Feed one token per sequence; the first step feeds sos.

        Args:
            tokens_last: (B,) the newest token of each sequence.
            state: state from ``init_state`` or the previous ``step``.
            rows: optional (B',) indices of the sequences to compute (beam search skips
                hypotheses that ended); the others get logits 0 and no valid cache entry
                for this token, so they must not be stepped again.

        Returns:
            logits (B, V) for the next token, and the new state (the input state is not
            modified).
        """
        check_shape("tokens_last", tokens_last, 1, "(B,)")
        assert state.cross_mask is not None
        batch = tokens_last.shape[0]
        if rows is not None:
            tokens_last = tokens_last.index_select(0, rows)
        x = self.embed_positions(self.embed_tokens(tokens_last).unsqueeze(1), state.offset)
        x = self.dropout(x)
        offset = state.offset
        if state.cache is None:
            first = self.layers[0].self_attn
            like = x.new_empty(0, dtype=self._cache_dtype(x.device))
            cache = KVCache.empty(len(self.layers), batch, first.num_heads, first.head_dim,
                                  like, state.max_len)
        else:
            cache = state.cache
        # writable position `offset`; the input state's positions before it stay untouched
        cache = cache.advance(offset)
        first_qkv = self._first_layer_qkv(tokens_last, offset)
        for i, layer in enumerate(self.layers):
            buffers = (cache.keys(i, offset + 1), cache.values(i, offset + 1))
            x, _ = layer(x, state.cross_k[i], state.cross_v[i], state.cross_mask, buffers, rows,
                         first_qkv if i == 0 else None)
        logits = self.output_projection(self.layer_norm(x)).squeeze(1)
        if rows is not None:
            logits = logits.new_zeros(batch, logits.shape[1]).index_copy_(0, rows, logits)
        new_state = DecoderState(
            cache=cache,
            cross_k=state.cross_k,
            cross_v=state.cross_v,
            cross_mask=state.cross_mask,
            offset=offset + 1,
            max_len=state.max_len,
        )
        return logits, new_state

    def _first_layer_qkv(self, tokens: torch.Tensor, offset: int
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """First-layer self-attention projections of a step, computed per vocabulary entry.

        The first layer's input at position ``offset`` depends on the token alone, so when the
        step feeds many more sequences than there are tokens (beam search: N = B · W rows),
        projecting every vocabulary entry once and gathering is cheaper than projecting every
        row: at V = 128 and 1,280 rows it removes 3/14 of the first layer's matrix products.
        ``None`` when it would not pay, or in training (dropout acts on the input).
        """
        if self.training or tokens.shape[0] < 2 * self.vocab_size:
            return None
        layer = self.layers[0]
        vocab = torch.arange(self.vocab_size, device=tokens.device)
        x = self.embed_positions(self.embed_tokens(vocab).unsqueeze(1), offset)
        table = layer.self_attn.project_qkv(layer.self_attn_layer_norm(x))
        return tuple(t.index_select(0, tokens) for t in table)  # type: ignore[return-value]

    @staticmethod
    def reorder_state(state: DecoderState, index: torch.Tensor) -> DecoderState:
        """Select/repeat sequences of a state along its batch axis.

        Args:
            state: the state (N sequences).
            index: (N',) long indices into the N sequences (e.g. beam parents, or
                ``arange(B).repeat_interleave(W)`` to expand B utterances to B·W beams).

        Returns:
            A new state of N' sequences.
        """

        return state.select(index, index)
