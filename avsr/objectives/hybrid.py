"""Hybrid CTC/attention loss (Watanabe et al., "Hybrid CTC/Attention Architecture for
End-to-End Speech Recognition", IEEE JSTSP 2017), with ESPnet's normalisation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avsr.models.utils import check_shape, make_pad_mask

__all__ = ["add_sos_eos", "label_smoothing_kl", "HybridCTCAttentionLoss"]


def add_sos_eos(
    tokens: torch.Tensor,
    token_lengths: torch.Tensor,
    sos_id: int,
    eos_id: int,
    pad_id: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forcing decoder inputs and targets from padded token sequences.

    Args:
        tokens: (B, L) token ids, padded past ``token_lengths`` (with anything).
        token_lengths: (B,).
        sos_id: start symbol prepended to the inputs.
        eos_id: end symbol appended to the targets.
        pad_id: value written at padded positions.

    Returns:
        decoder inputs ``[sos, y1 … yn]`` (B, L + 1), targets ``[y1 … yn, eos]`` (B, L + 1),
        both padded with ``pad_id``, and their lengths ``token_lengths + 1`` (B,).
    """
    check_shape("tokens", tokens, 2, "(B, L)")
    batch, length = tokens.shape
    pad = make_pad_mask(token_lengths, length)
    body = tokens.masked_fill(pad, pad_id)
    sos = body.new_full((batch, 1), sos_id)
    ys_in = torch.cat([sos, body], dim=1)
    ys_out = torch.cat([body, body.new_full((batch, 1), pad_id)], dim=1)
    ys_out = ys_out.scatter(1, token_lengths.long().unsqueeze(1), eos_id)
    return ys_in, ys_out, token_lengths + 1


def label_smoothing_kl(
    logits: torch.Tensor, targets: torch.Tensor, smoothing: float
) -> torch.Tensor:
    """Per-token KL(q ‖ softmax(logits)) with ESPnet's smoothed target q.

    q puts ``1 - smoothing`` on the target and spreads ``smoothing`` uniformly over the
    other V − 1 classes (ESPnet ``LabelSmoothingLoss``; PyTorch's ``label_smoothing`` spreads
    it over all V instead). With ``smoothing = 0`` this is the cross-entropy.

    Args:
        logits: (N, V).
        targets: (N,) class ids.
        smoothing: ε in [0, 1).

    Returns:
        (N,) float32 losses.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    target_logp = logp.gather(1, targets.unsqueeze(1)).squeeze(1)
    if smoothing == 0.0:
        return -target_logp
    vocab = logits.shape[-1]
    conf, off = 1.0 - smoothing, smoothing / (vocab - 1)
    entropy_term = conf * math.log(conf) + smoothing * math.log(off)  # Σ q log q
    cross = conf * target_logp + off * (logp.sum(-1) - target_logp)  # Σ q log p
    return entropy_term - cross


class HybridCTCAttentionLoss(nn.Module):
    """``ctc_weight · CTC + (1 − ctc_weight) · attention`` with accuracy, as ESPnet computes it.

    Normalisation (ESPnet's, used by auto_avsr and USR): both terms are summed over the batch
    and divided by the batch size B, i.e. per-utterance sums averaged over utterances (CTC:
    ``ctc_loss(reduction="sum") / B``; attention: summed token KL / B). With
    ``normalize_length=True`` the attention term is divided by the number of target tokens
    instead. CTC runs in float32 with ``zero_infinity=True`` (impossible alignments count 0).

    Args:
        ctc_weight: weight of CTC in [0, 1] (0.1 in auto_avsr / USR).
        label_smoothing: ε of the attention loss (0.1 in auto_avsr / USR).
        blank_id: CTC blank (also the padding id of ``tokens``). ``None``: the tokenizer's,
            set by :meth:`bind_tokenizer` (the training stages do it).
        sos_id: start symbol of decoder inputs; ``None``: the tokenizer's.
        eos_id: end symbol appended to decoder targets; ``None``: the tokenizer's.
        normalize_length: divide the attention term by the token count instead of B.
    """

    def __init__(
        self,
        ctc_weight: float = 0.1,
        label_smoothing: float = 0.1,
        blank_id: int | None = None,
        sos_id: int | None = None,
        eos_id: int | None = None,
        normalize_length: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.ctc_weight = ctc_weight
        self.label_smoothing = label_smoothing
        self._ids = {"blank_id": blank_id, "sos_id": sos_id, "eos_id": eos_id}
        self.normalize_length = normalize_length

    def bind_tokenizer(self, tokenizer: Any) -> None:
        """Take the special ids from ``tokenizer``; an id the config set must agree with it.

        The ids differ between tokenizers (avsr's SentencePiece: sos = eos = 2; the released
        auto_avsr / USR units: sos = eos = the last id), and a wrong one teacher-forces every
        step with the wrong symbol without raising anything, so a contradiction stops the run.

        Raises:
            ValueError: an explicitly set id differs from the tokenizer's; names both.
        """
        for name, mine in self._ids.items():
            theirs = int(getattr(tokenizer, name))
            if mine is not None and int(mine) != theirs:
                raise ValueError(
                    f"loss.{name}={mine} contradicts {name}={theirs} of the tokenizer "
                    f"{tokenizer!r}; special ids come from the tokenizer: drop loss.{name} "
                    "from the config")
            self._ids[name] = theirs

    def _id(self, name: str) -> int:
        value = self._ids[name]
        if value is None:
            raise ValueError(f"HybridCTCAttentionLoss.{name} is unset: pass it, or call "
                             "bind_tokenizer(tokenizer) (the training stages do)")
        return int(value)

    @property
    def blank_id(self) -> int:
        return self._id("blank_id")

    @property
    def sos_id(self) -> int:
        return self._id("sos_id")

    @property
    def eos_id(self) -> int:
        return self._id("eos_id")

    def decoder_inputs(
        self, tokens: torch.Tensor, token_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder inputs ``[sos, y1 … yn]`` (B, L + 1) and their lengths (B,)."""
        ys_in, _, lengths = add_sos_eos(tokens, token_lengths, self.sos_id, self.eos_id,
                                        self.blank_id)
        return ys_in, lengths

    def ctc_loss(
        self,
        log_probs: torch.Tensor,
        lengths: torch.Tensor,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """CTC summed over the batch / B. log_probs (B, T, V), lengths (B,), tokens (B, L)."""
        check_shape("log_probs", log_probs, 3, "(B, T, V)")
        loss = F.ctc_loss(
            log_probs.transpose(0, 1).float(),  # (T, B, V)
            tokens,
            lengths,
            token_lengths,
            blank=self.blank_id,
            reduction="sum",
            zero_infinity=True,
        )
        return loss / log_probs.shape[0]

    def attention_loss(
        self, logits: torch.Tensor, tokens: torch.Tensor, token_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Label-smoothed attention loss and token accuracy.

        Args:
            logits: (B, L + 1, V) teacher-forced decoder logits for ``[sos, y1 … yn]``.
            tokens: (B, L') targets without sos/eos (L' ≥ max length), token_lengths (B,).

        Returns:
            loss (scalar) and accuracy (scalar, fraction of correct valid target tokens).
        """
        check_shape("logits", logits, 3, "(B, L, V)")
        _, ys_out, out_lengths = add_sos_eos(tokens, token_lengths, self.sos_id, self.eos_id,
                                             self.blank_id)
        steps = logits.shape[1]
        if ys_out.shape[1] < steps:
            ys_out = F.pad(ys_out, (0, steps - ys_out.shape[1]), value=self.blank_id)
        ys_out = ys_out[:, :steps]
        valid = ~make_pad_mask(out_lengths, steps)  # (B, L + 1)
        flat_logits = logits[valid]  # (N, V)
        flat_targets = ys_out[valid]
        per_token = label_smoothing_kl(flat_logits, flat_targets, self.label_smoothing)
        denom = flat_targets.numel() if self.normalize_length else logits.shape[0]
        loss = per_token.sum() / max(denom, 1)
        with torch.no_grad():
            acc = (flat_logits.argmax(-1) == flat_targets).float().mean()
        return loss, acc

    def forward(
        self,
        ctc_log_probs: torch.Tensor | None,
        ctc_lengths: torch.Tensor | None,
        decoder_logits: torch.Tensor | None,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Compute the hybrid loss.

        Args:
            ctc_log_probs: (B, T, V) CTC log-probabilities (``None`` if ``ctc_weight == 0``).
            ctc_lengths: (B,) encoder lengths.
            decoder_logits: (B, L + 1, V) logits for the inputs of :meth:`decoder_inputs`
                (``None`` if ``ctc_weight == 1``).
            tokens: (B, L) targets padded with blank, no sos/eos.
            token_lengths: (B,).

        Returns:
            dict with ``loss``, ``loss_ctc``, ``loss_att``, ``acc`` (scalars; a term whose
            weight is 0 is not computed and reported as 0; ``acc`` is NaN without it).
        """
        check_shape("tokens", tokens, 2, "(B, L)")
        zero = tokens.new_zeros((), dtype=torch.float32)
        loss_ctc, loss_att, acc = zero, zero, zero + float("nan")
        if self.ctc_weight > 0:
            if ctc_log_probs is None or ctc_lengths is None:
                raise ValueError("ctc_weight > 0 needs ctc_log_probs and ctc_lengths")
            loss_ctc = self.ctc_loss(ctc_log_probs, ctc_lengths, tokens, token_lengths)
        if self.ctc_weight < 1:
            if decoder_logits is None:
                raise ValueError("ctc_weight < 1 needs decoder_logits")
            loss_att, acc = self.attention_loss(decoder_logits, tokens, token_lengths)
        loss = self.ctc_weight * loss_ctc + (1.0 - self.ctc_weight) * loss_att
        return {"loss": loss, "loss_ctc": loss_ctc, "loss_att": loss_att, "acc": acc}
