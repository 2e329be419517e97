"""USR semi-supervised training: greedy pseudo-labels from an EMA teacher (Haliassos et al.,
"Unified Speech Recognition", NeurIPS 2024; REFERENCE.md §2.1 (b)).

Every step: the EMA teacher of the whole model (eval mode) encodes the clean audio-visual
unlabelled batch, labels it frame-wise (CTC argmax) and token-wise (greedy attention decoding
with the K/V cache, ≤ T/5 steps), and masks labels whose probability is below ``threshold``.
The student sees the same batch with zero time masks and learns those labels for audio, video
and audio-visual input through separate per-modality heads (frame-wise cross-entropy for the
CTC labels, teacher-forced cross-entropy for the attention labels). The labelled batch (from
its own sampler) gives the ordinary hybrid loss of a composed
:class:`~avsr.objectives.supervised.SupervisedObjective`, which also scores validation. The
loss is ``Σ_m w_m [γ_m · L_unlab,m + (1 − γ_m) · L_lab,m]``; after the step the teacher
follows the student with momentum rising from 0.999 to 1 on a cosine schedule.

Both losses are on ESPnet's scale (summed per utterance, averaged over the batch), so that γ
weighs like against like. With ``unlabelled_start_step`` the stage first trains on the
labelled batch alone (γ = 0, no teacher decoding) while the teacher follows the student, and
the pseudo-labels count only once that teacher has learnt something (cf. slimIPL's supervised
warm-up, Likhomanenko et al. 2021); ``unlabelled_rampup_steps`` then raises γ linearly. One
learning-rate schedule spans the whole stage.

Diagnostics: where the unlabelled utterances have transcripts that training does not use
(a corpus split by ``labelled_fraction``), the data module hands them over as the unlabelled
batch's ``reference_text``. The losses never see that field (they get the batch without it);
it only scores the labels the teacher already made for the step: ``pseudo_wer_<m>`` (the
greedy attention labels) and ``pseudo_wer_ctc_<m>`` (the collapsed frame labels), every label
counted whether or not it passes the threshold, ``<m>`` the stream the teacher labels from.
``pseudo_ctc_kept`` and ``pseudo_att_kept`` are the shares of labels that pass it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from avsr.metrics.wer import ErrorCounter
from avsr.modalities import MODALITIES
from avsr.models.ema import EMATeacher, cosine_momentum
from avsr.objectives.base import Objective
from avsr.objectives.hybrid import HybridCTCAttentionLoss
from avsr.objectives.masking import span_mask, zero_frames
from avsr.objectives.pseudo_labels import (
    NORMALIZE, AttentionPseudoLabels, CTCPseudoLabels, attention_label_ids,
    attention_pseudo_labels, ctc_label_ids, ctc_pseudo_labels, masked_cross_entropy,
)
from avsr.objectives.supervised import SupervisedObjective
from avsr.utils.distributed import world_size, zero_gradient_loss

__all__ = ["SemiSupervisedObjective", "TEACHER_MODALITY", "REFERENCE_KEY"]

#: the stream the teacher labels from (USR: the clean audio-visual input)
TEACHER_MODALITY = "audiovisual"
#: the unlabelled batch's transcripts that only score pseudo-labels, never train
REFERENCE_KEY = "reference_text"


def _copy_linear(head: nn.Linear, source: nn.Linear) -> None:
    """Copy ``source``'s weight (and bias; zero when it has none, e.g. tied embeddings)."""
    if head.weight.shape != source.weight.shape:
        raise ValueError(f"pseudo-label head {tuple(head.weight.shape)} cannot start from an "
                         f"output layer of shape {tuple(source.weight.shape)}")
    head.weight.copy_(source.weight)
    if source.bias is not None:
        head.bias.copy_(source.bias)
    else:
        head.bias.zero_()


class SemiSupervisedObjective(Objective):
    """USR's semi-supervised loss over a ``{"labelled": batch, "unlabelled": batch}`` pair.

    Args:
        loss: hybrid loss of the labelled part (its ``ctc_weight`` also weighs the
            pseudo-label CTC term).
        modalities: streams trained every step.
        modality_weights: ``w_m``.
        unlabelled_weights: ``γ_m`` (USR Base low-resource: V 0.8, A/AV 0.5).
        threshold: pseudo-label confidence threshold (0.8).
        max_len_ratio: greedy decoding steps per encoder frame (USR: 1/5).
        momentum_start, momentum_end: EMA momentum cosine schedule.
        student_mask_prob, student_mask_span: zero time masks on the student's unlabelled
            input (video frames and the same audio samples).
        heads_from_model: start each per-modality pseudo-label head as a copy of the model's
            own output layer (CTC ``ctc_lo``, decoder ``output_projection``) instead of at
            random, at the step the pseudo-labels start. USR starts them at random because its
            decoder starts fresh; after a supervised warm-up the copies already read the
            trained states, so the pseudo-label loss does not first push random-head gradients
            into the encoder.
        unlabelled_start_step: optimiser steps trained on the labelled batch alone first.
        unlabelled_rampup_steps: steps over which γ then rises linearly to its value.
        pseudo_label_normalize: ``"batch"`` (pseudo-label cross-entropies summed per utterance
            and averaged over the batch, the labelled loss's scale) or ``"tokens"`` (a mean per
            kept token or frame: 10-100× smaller than the labelled loss per utterance).
    """

    def __init__(
        self,
        *,
        loss: HybridCTCAttentionLoss,
        modalities: Sequence[str] = MODALITIES,
        modality_weights: Mapping[str, float] | None = None,
        unlabelled_weights: Mapping[str, float] | None = None,
        threshold: float = 0.8,
        max_len_ratio: float = 0.2,
        momentum_start: float = 0.999,
        momentum_end: float = 1.0,
        student_mask_prob: float = 0.0,
        student_mask_span: int = 5,
        heads_from_model: bool = False,
        unlabelled_start_step: int = 0,
        unlabelled_rampup_steps: int = 0,
        pseudo_label_normalize: str = "batch",
    ) -> None:
        super().__init__()
        if unlabelled_start_step < 0 or unlabelled_rampup_steps < 0:
            raise ValueError(f"unlabelled_start_step and unlabelled_rampup_steps must be >= 0, "
                             f"got {unlabelled_start_step} and {unlabelled_rampup_steps}")
        if pseudo_label_normalize not in NORMALIZE:  # at construction, not after the warm-up
            raise ValueError(f"pseudo_label_normalize must be one of {NORMALIZE}, got "
                             f"{pseudo_label_normalize!r}")
        # composed: the labelled loss and the validation scores are the supervised objective's
        self.labelled = SupervisedObjective(loss=loss, modalities=modalities,
                                            modality_weights=modality_weights)
        self.modalities = self.labelled.modalities
        gammas = dict(unlabelled_weights or {})
        self.unlabelled_weights = {m: float(gammas.get(m, 0.5)) for m in self.modalities}
        self.threshold = threshold
        self.max_len_ratio = max_len_ratio
        self.momentum_range = (momentum_start, momentum_end)
        self.student_mask = (student_mask_prob, student_mask_span)
        self.heads_from_model = heads_from_model
        self.unlabelled_start_step = unlabelled_start_step
        self.unlabelled_rampup_steps = unlabelled_rampup_steps
        self.pseudo_label_normalize = pseudo_label_normalize
        self.teacher: EMATeacher | None = None
        self.tokenizer: Any = None  # decodes pseudo-labels for their WER
        self._scale = 0.0

    @property
    def loss(self) -> HybridCTCAttentionLoss:
        return self.labelled.loss

    def bind_tokenizer(self, tokenizer: Any) -> None:
        self.labelled.bind_tokenizer(tokenizer)
        self.tokenizer = tokenizer

    def bind(self, model: nn.Module) -> None:
        """Copy the teacher (after the run's ``init``) and build the pseudo-label heads."""
        if self.teacher is not None:
            return
        if getattr(model, "decoder", None) is None or getattr(model, "ctc", None) is None:
            raise ValueError("semi-supervised training needs a model with a decoder and a CTC "
                             "head (the teacher labels with both)")
        self.teacher = EMATeacher(model)
        vocab = model.ctc.ctc_lo.out_features
        self.ctc_heads = nn.ModuleDict({m: nn.Linear(model.encoder.d_model, vocab)
                                        for m in self.modalities})
        self.att_heads = nn.ModuleDict({m: nn.Linear(model.decoder.d_model, vocab)
                                        for m in self.modalities})
        if self.heads_from_model and self.unlabelled_start_step == 0:
            self._copy_heads(model)

    @torch.no_grad()
    def _copy_heads(self, model: nn.Module) -> None:
        for m in self.modalities:
            _copy_linear(self.ctc_heads[m], model.ctc.ctc_lo)
            _copy_linear(self.att_heads[m], model.decoder.output_projection)

    def unlabelled_scale(self, step: int) -> float:
        """Factor on every γ_m at optimiser step ``step``: 0 before the start, then a linear
        ramp to 1 over ``unlabelled_rampup_steps``."""
        if step < self.unlabelled_start_step:
            return 0.0
        if self.unlabelled_rampup_steps == 0:
            return 1.0
        return min(1.0, (step - self.unlabelled_start_step + 1) / self.unlabelled_rampup_steps)

    def start_step(self, model: nn.Module, step: int) -> None:
        self._scale = self.unlabelled_scale(step)
        if (self.heads_from_model and self.unlabelled_start_step > 0
                and step == self.unlabelled_start_step):
            self._copy_heads(model)  # the output layers the warm-up trained

    # ------------------------------------------------------------------ pseudo-labels
    @torch.no_grad()
    def pseudo_label(self, batch: Mapping[str, Any]):
        """Teacher labels of a clean audio-visual batch: (CTC labels, attention labels)."""
        if self.teacher is None:
            raise RuntimeError("bind(model) first")
        teacher = self.teacher.model
        enc, lengths = teacher.encode_modality(batch["audio"], batch["audio_lengths"],
                                               batch["video"], batch["video_lengths"],
                                               TEACHER_MODALITY)
        ctc = ctc_pseudo_labels(teacher.ctc(enc), lengths, self.threshold)
        att = attention_pseudo_labels(teacher.decoder, enc, lengths, self.loss.sos_id,
                                      self.loss.eos_id, self.threshold, self.max_len_ratio,
                                      self.loss.blank_id)
        return ctc, att

    def pseudo_label_wer(self, ctc: CTCPseudoLabels, att: AttentionPseudoLabels,
                         references: Sequence[str] | None) -> dict[str, torch.Tensor]:
        """WER of the teacher's labels of a batch against its hidden transcripts.

        Args:
            ctc, att: the teacher's labels (:meth:`pseudo_label`), B utterances.
            references: the B transcripts (``reference_text``); utterances with an empty one
                (an unlabelled corpus part) are left out.

        Returns:
            ``pseudo_wer_<m>`` (attention labels) and ``pseudo_wer_ctc_<m>`` (frame labels),
            corpus-level over the batch; empty without a tokenizer or a reference word.
        """
        if self.tokenizer is None or not references:
            return {}
        if len(references) != att.tokens.shape[0]:
            raise ValueError(f"{len(references)} reference transcripts for a batch of "
                             f"{att.tokens.shape[0]} pseudo-labelled utterances")
        scored = [i for i, r in enumerate(references) if r.split()]
        if not scored:
            return {}
        refs = [references[i] for i in scored]
        logs = {}
        for name, ids in (("pseudo_wer", attention_label_ids(att, self.loss.eos_id)),
                          ("pseudo_wer_ctc", ctc_label_ids(ctc, self.loss.blank_id))):
            counter = ErrorCounter()
            counter.update(refs, [self.tokenizer.decode(ids[i]) for i in scored])
            logs[f"{name}_{TEACHER_MODALITY}"] = torch.tensor(counter.edits / counter.words)
        return logs

    def unlabelled_losses(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Per-stream pseudo-label losses, ``_stats`` of how many labels were kept and
        ``_labels``, the teacher's (CTC, attention) labels."""
        ctc, att = self.pseudo_label(batch)
        audio, video = batch["audio"], batch["video"]
        prob, span = self.student_mask
        if prob > 0:
            mask = span_mask(batch["video_lengths"], video.shape[1], prob, span).to(video.device)
            video, audio = zero_frames(video, audio, mask)
        sos = att.tokens.new_full((att.tokens.shape[0], 1), self.loss.sos_id)
        dec_in = torch.cat([sos, att.tokens[:, :-1]], dim=1)  # teacher forcing on the labels
        out = model(audio, batch["audio_lengths"], video, batch["video_lengths"], dec_in,
                    att.lengths, modalities=self.modalities, return_decoder_states=True)
        parts, w, norm = {}, self.loss.ctc_weight, self.pseudo_label_normalize
        for m, o in out.items():
            frames = min(o.enc.shape[1], ctc.targets.shape[1])
            ctc_t = ctc.targets.index_select(0, o.index)[:, :frames]
            loss_ctc = masked_cross_entropy(self.ctc_heads[m](o.enc[:, :frames]), ctc_t, norm)
            att_t = att.targets.index_select(0, o.index)
            loss_att = masked_cross_entropy(self.att_heads[m](o.decoder_states), att_t, norm)
            parts[m] = {"loss": w * loss_ctc + (1 - w) * loss_att, "loss_ctc": loss_ctc,
                        "loss_att": loss_att}
        parts["_stats"] = {
            "ctc_kept": (ctc.targets != -100).sum() / batch["video_lengths"].sum().clamp(min=1),
            "att_kept": (att.targets != -100).sum() / att.lengths.sum().clamp(min=1),
            "att_len": att.lengths.float().mean(),
        }
        parts["_labels"] = (ctc, att)
        return parts

    # ------------------------------------------------------------------ the protocol
    def forward(self, model: nn.Module, batch: Mapping[str, Any],
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        labelled, unlabelled = batch["labelled"], batch["unlabelled"]
        device = next(model.parameters()).device
        total = torch.zeros((), device=device)
        logs: dict[str, torch.Tensor] = {}
        scale = self._scale
        lab_parts = self.labelled.stream_losses(model, labelled)[0] if labelled["ids"] else {}
        # the hidden transcripts score the teacher's labels below; the losses get the batch
        # without them
        media = {k: v for k, v in unlabelled.items() if k != REFERENCE_KEY}
        # before the start the teacher's labels would weigh 0: skip decoding them
        unl_parts = (self.unlabelled_losses(model, media)
                     if unlabelled["ids"] and scale > 0 else {})
        stats = unl_parts.pop("_stats", {})
        labels = unl_parts.pop("_labels", None)
        if not lab_parts and not unl_parts:
            return {"loss": None}  # nothing to learn from: the task skips the step
        for m in self.modalities:
            g = self.unlabelled_weights[m] * scale
            term = torch.zeros((), device=device)
            if m in lab_parts:
                term = term + (1 - g) * lab_parts[m]["loss"]
                logs[f"loss_lab_{m}"] = lab_parts[m]["loss"].detach()
            if m in unl_parts:
                term = term + g * unl_parts[m]["loss"]
                for k, v in unl_parts[m].items():
                    logs[f"{k}_unlab_{m}"] = v.detach()
            total = total + self.labelled.modality_weights[m] * term
        if not unl_parts and world_size() > 1:
            # DDP waits for every parameter's gradient: the pseudo-label heads get zeros
            total = total + zero_gradient_loss(self.ctc_heads) + zero_gradient_loss(self.att_heads)
        logs.update({f"pseudo_{k}": v.detach().float() for k, v in stats.items()})
        if labels is not None:
            logs.update(self.pseudo_label_wer(*labels, unlabelled.get(REFERENCE_KEY)))
        logs["unlabelled_scale"] = torch.tensor(scale)
        return {**logs, "loss": total}

    def evaluate(self, model: nn.Module, batch: Mapping[str, Any],
                 generator: torch.Generator | None = None):
        return self.labelled.evaluate(model, batch, generator)

    def update_teacher(self, model: nn.Module, step: int, total_steps: int) -> float:
        momentum = cosine_momentum(step, total_steps, *self.momentum_range)
        if self.teacher is None:
            raise RuntimeError("bind(model) first")
        self.teacher.update(model, momentum)
        return momentum

    def batch_size(self, batch: Mapping[str, Any]) -> int:
        return max(1, len(batch["unlabelled"]["ids"]))

    def is_empty(self, batch: Mapping[str, Any]) -> bool:
        return not batch["labelled"]["ids"] and not batch["unlabelled"]["ids"]
