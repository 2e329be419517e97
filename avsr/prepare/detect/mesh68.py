"""MediaPipe face mesh (468 points) -> iBUG 68-point landmarks: the index table.

The usual MediaPipe-to-dlib correspondence (point by point from the canonical face mesh
topology, ``mediapipe/modules/face_geometry/data/canonical_face_model_uv_visualization.png``).
"Right" is the subject's right, on the image's left, as in dlib's 68-point scheme. Each row
picks, for one iBUG point, the mesh vertex at the same anatomical place:

- jaw 0-16: the face-oval vertices from the right ear level over the chin (152) to the left.
  The mesh has no vertices on the ear-level jaw contour exactly where dlib puts 0/16, so
  these are the nearest; the crop does not use the jaw.
- brows 17-26: upper brow line, outer -> inner (right), inner -> outer (left).
- nose 27-35: bridge 168 / 197 / 5 -> tip 4 (27-30), then the nostril base right ->
  left with subnasale 2 as 33 (a stable point of the crop).
- eyes 36-47: corners (33 / 133 right, 362 / 263 left) and the upper / lower lid vertices
  at a third and two thirds of the eye width, in dlib's clockwise order.
- outer lips 48-59: corners 61 / 291, top 0, bottom 17, and the symmetric pairs between.
- inner lips 60-67: corners 78 / 308, top 13, bottom 14, and the pairs between.

Checked against dlib's 68-point predictor on the carphone clip (inter-ocular distance 31 px):
every brow, nose, eye and lip point lies within 2.1 px of dlib's on average (the mouth
centre within 0.9 px); only the jaw differs (up to 13 px), where the mesh's face oval runs
lower on the cheek than dlib's jaw line. The crop does not use the jaw.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MESH_TO_68"]

MESH_TO_68 = np.array([
    # jaw 0-16: right ear level -> chin 152 -> left ear level
    127, 234, 93, 132, 58, 172, 136, 150, 152, 379, 365, 397, 288, 361, 323, 454, 356,
    # right brow 17-21 (outer -> inner), left brow 22-26 (inner -> outer)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge 27-30 (top -> tip), nostril base 31-35 (right -> left, 33 = subnasale)
    168, 197, 5, 4, 98, 97, 2, 326, 327,
    # right eye 36-41: outer corner, upper lid x2, inner corner, lower lid x2
    33, 160, 158, 133, 153, 144,
    # left eye 42-47: inner corner, upper lid x2, outer corner, lower lid x2
    362, 385, 387, 263, 373, 380,
    # outer lips 48-59: right corner, upper lip -> top 0 -> left corner, lower lip -> 17
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    # inner lips 60-67: right corner, upper 82 / 13 / 312, left corner, lower 317 / 14 / 87
    78, 82, 13, 312, 308, 317, 14, 87,
], dtype=np.int64)

assert MESH_TO_68.shape == (68,) and len(set(MESH_TO_68.tolist())) == 68
