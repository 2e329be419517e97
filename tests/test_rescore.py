"""Teacher-forced rescoring (avsr.decoding.rescore) gives the beam search's own scores."""

from __future__ import annotations

import pytest
import torch

from avsr.decoding import BeamSearch
from avsr.decoding.rescore import fused_score, score_sequences
from avsr.models import TransformerDecoder
from avsr.models.lm import TransformerLM

SOS = EOS = 11
BLANK = 0


def _setup(batch=6, frames=9, vocab=12):
    torch.manual_seed(0)
    decoder = TransformerDecoder(vocab, 16, num_layers=2, num_heads=2, ffn_dim=32).eval()
    with torch.no_grad():  # end sentences at varied lengths
        decoder.output_projection.bias[EOS] += 1.0
    lm = TransformerLM(vocab, d_model=16, num_layers=1, num_heads=2, ffn_dim=32).eval()
    g = torch.Generator().manual_seed(1)
    memory = torch.randn(batch, frames, 16, generator=g)
    ctc = torch.log_softmax(torch.randn(batch, frames, vocab, generator=g) * 2, dim=-1)
    lengths = torch.tensor([9, 3, 7, 1, 8, 5][:batch])
    return decoder, lm, memory, ctc, lengths


def test_every_hypothesis_of_the_beam_rescores_to_its_own_parts_and_total() -> None:
    decoder, lm, memory, ctc, lengths = _setup()
    # an absolute length limit the sentences never reach: a hypothesis cut at the limit ends
    # without eos's scores (ESPnet's rule), a complete sentence's rescoring includes them
    search = BeamSearch(beam_size=4, ctc_weight=0.3, lm_weight=0.4, penalty=0.2, nbest=4,
                        maxlenratio=-30)
    nbest = search(decoder, memory, lengths, ctc, SOS, EOS, BLANK, lm=lm)
    checked = 0
    for rank in range(4):
        rows = [b for b in range(len(nbest)) if len(nbest[b]) > rank]
        hyps = [nbest[b][rank] for b in rows]
        idx = torch.tensor(rows)
        got = score_sequences(decoder, memory[idx], lengths[idx], ctc[idx],
                              [h.tokens for h in hyps], sos_id=SOS, eos_id=EOS,
                              blank_id=BLANK, lm=lm)
        total = fused_score(got, ctc_weight=0.3, lm_weight=0.4, penalty=0.2)
        for i, h in enumerate(hyps):
            for part in ("decoder", "ctc", "lm", "length_bonus"):
                # CTC: the prefix scorer's value at eos against PyTorch's CTC forward pass
                assert float(got[part][i]) == pytest.approx(h.scores[part], abs=1e-3), part
            assert float(total[i]) == pytest.approx(h.score, abs=1e-3)
            checked += 1
    assert checked >= 12


def test_unalignable_sequence_has_minus_infinite_ctc_and_empty_is_all_blank() -> None:
    decoder, lm, memory, ctc, lengths = _setup()
    seqs = [[3, 3, 3, 3] if b == 3 else [] for b in range(6)]  # utterance 3 has one frame
    got = score_sequences(decoder, memory, lengths, ctc, seqs, sos_id=SOS, eos_id=EOS,
                          blank_id=BLANK)
    assert got["ctc"][3] == float("-inf")
    blank_path = ctc[0, :9, BLANK].sum()
    assert float(got["ctc"][0]) == pytest.approx(float(blank_path), abs=1e-4)
    assert "lm" not in got and got["length_bonus"].tolist()[:4] == [1.0, 1.0, 1.0, 5.0]


def test_wrong_number_of_sequences_is_a_clear_error() -> None:
    decoder, _, memory, ctc, lengths = _setup()
    with pytest.raises(ValueError, match="one per utterance"):
        score_sequences(decoder, memory, lengths, ctc, [[1]], sos_id=SOS, eos_id=EOS)
