"""Corpus preparation: raw LRS2 / LRS3 / VoxCeleb2 videos -> avsr's stored form.

``python -m avsr.prepare crop ...`` turns raw videos plus 68-point landmark files (or landmarks
detected on the way, :mod:`avsr.prepare.detect`) into 96 x 96 gray mouth crops at 25 fps with 16 kHz mono wavs in the official layout (splitting long
pretrain utterances); ``python -m avsr.prepare manifests ...`` writes the AV-HuBERT and
auto_avsr manifests of the 30h / 433h / 1759h subsets. See ``--help``.
"""

from avsr.prepare.crop import crop_mouths, similarity_transform
from avsr.prepare.landmarks import (
    interpolate_landmarks,
    mean_face,
    read_landmarks,
    smooth_landmarks,
)
from avsr.prepare.manifests import SUBSETS, write_manifests
from avsr.prepare.pipeline import PrepareOptions, prepare_clip, prepare_corpus
from avsr.prepare.segments import split_long
from avsr.prepare.sources import list_clips

__all__ = [
    "crop_mouths", "similarity_transform", "interpolate_landmarks", "mean_face",
    "read_landmarks", "smooth_landmarks", "SUBSETS", "write_manifests", "PrepareOptions",
    "prepare_clip", "prepare_corpus", "split_long", "list_clips",
]
