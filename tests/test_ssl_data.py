"""Low-resource split and the two training samplers of semi-supervised training."""

from __future__ import annotations

import pytest

from avsr.data.corpora import LRS3
from avsr.data.datamodule import AVDataModule


def _dm(root, tmp_path, **kw) -> AVDataModule:
    return AVDataModule(corpus=LRS3(root), tokenizer_path=tmp_path / "spm.model", vocab_size=40,
                        max_frames=300, **kw)


def test_labelled_subset_is_fixed_by_its_own_seed(tiny_synth_root, tmp_path):
    a = _dm(tiny_synth_root, tmp_path, labelled_fraction=0.25, seed=1).labelled_utterances()
    b = _dm(tiny_synth_root, tmp_path, labelled_fraction=0.25, seed=2).labelled_utterances()
    c = _dm(tiny_synth_root, tmp_path, labelled_fraction=0.25, labelled_seed=5
            ).labelled_utterances()
    assert len(a) == 6 and [u.id for u in a] == [u.id for u in b]  # training seed: no effect
    assert [u.id for u in a] != [u.id for u in c]
    with pytest.raises(ValueError, match="labelled_fraction"):
        _dm(tiny_synth_root, tmp_path, labelled_fraction=0.0)


def test_two_samplers_with_their_own_budgets(tiny_synth_root, tmp_path):
    dm = _dm(tiny_synth_root, tmp_path, labelled_fraction=0.25, train_data="labelled+unlabelled",
             unlabelled_max_frames=120)
    dm.setup("fit")
    loaders = dm.train_dataloader()
    assert set(loaders) == {"labelled", "unlabelled"}
    assert len(dm.datasets["train"]) == 6 and len(dm.datasets["unlabelled"]) == 24
    assert dm.samplers["train"].max_frames == 300 and dm.samplers["unlabelled"].max_frames == 120
    assert dm.datasets["unlabelled"].noise is None
    assert not dm.datasets["unlabelled"].video_transform.train_mode  # clean input (teacher)
    all_dm = _dm(tiny_synth_root, tmp_path, labelled_fraction=0.25, train_data="all")
    all_dm.setup("fit")
    assert len(all_dm.datasets["train"]) == 24
