"""k-means targets: MFCC + deltas at 100 Hz, one label file per utterance."""

from __future__ import annotations

import torch
import torchaudio

from avsr.data.corpora import LRS3
from avsr.data.io import load_audio
from avsr.ssl.features import mfcc_features, mfcc_frames
from avsr.ssl.kmeans import ensure_labels
from avsr.ssl.labels import IGNORE, ClusterLabels, read_labels


def test_mfcc_features_are_kaldi_mfcc_with_deltas():
    wave = torch.randn(16000)
    feats = mfcc_features(wave)
    assert feats.shape == (mfcc_frames(16000), 39) == (98, 39)  # 100 Hz, snip_edges
    ref = torchaudio.compliance.kaldi.mfcc(wave[None], sample_frequency=16000, use_energy=False)
    torch.testing.assert_close(feats[:, :13], ref)
    d1 = torchaudio.functional.compute_deltas(ref.t()[None])[0].t()
    torch.testing.assert_close(feats[:, 13:26], d1)


def test_mfcc_kmeans_labels_rate_and_count(tiny_synth_root, tmp_path):
    out = tmp_path / "km"
    meta = ensure_labels(str(tiny_synth_root), str(out), feature="mfcc", num_clusters=10,
                         fit_fraction=0.25)
    assert meta["label_rate"] == 100 and meta["num_clusters"] == 10
    corpus = LRS3(tiny_synth_root)
    assert meta["utterances"] == {"train": len(corpus.utterances("train")),
                                  "val": len(corpus.utterances("val"))}
    for u in corpus.utterances("val"):
        labels = read_labels(out, u.id)
        assert len(labels) == mfcc_frames(load_audio(u.audio_path).numel())
        assert all(0 <= x < 10 for x in labels)
    # aligned to the model's 25 Hz frames: every 4th label (the one at each frame's centre)
    u = corpus.utterances("val")[0]
    labels = torch.tensor(read_labels(out, u.id))
    frames = len(labels) // 4
    lab = ClusterLabels(out).batch([u.id], frames + 3, torch.tensor([frames + 1]))
    assert lab[0, :frames].tolist() == labels[torch.arange(frames) * 4 + 2].tolist()
    assert (lab[0, frames + 1:] == IGNORE).all()
    assert ensure_labels(str(tiny_synth_root), str(out)) == meta  # present: not redone
