"""One reader for every weights file: safe by default.

PyTorch's ``weights_only=True`` unpickler rebuilds tensors and plain containers only, so a
file that carries a pickled callable (``os.system``, ``eval``, a class whose ``__reduce__``
runs code) is refused before anything runs. Foreign checkpoints that pickle their own classes
(fairseq's ``cfg`` and ``task_state``, ``argparse.Namespace``) are read, when the caller asks
for it, by :mod:`avsr.convert.unpickler`, which stands in inert records for every class.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["UnsafeCheckpointError", "read_checkpoint"]


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds Python objects that could run code when loaded."""


def read_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu",
                    foreign: bool = False, what: str = "checkpoint") -> Any:
    """Load ``path`` without executing anything stored in it.

    Args:
        path: a ``torch.save`` file (Lightning checkpoint, state dict, avsr export, LM).
        map_location: where tensors go.
        foreign: read pickled foreign classes as inert stubs (checkpoint importers only);
            otherwise such a file is refused.
        what: what the file is, for messages (``"init checkpoint"``, ``"lm_ckpt"``, ...).

    Returns:
        The loaded object.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file holds objects other than tensors and plain containers
            (names the file and the refused global).
        ValueError: the file is not a readable torch file (truncated, another format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if foreign:
            from avsr.convert import unpickler

            return torch.load(path, map_location=map_location, weights_only=False,
                              pickle_module=unpickler)
        detail = next((line.strip() for line in str(err).splitlines()
                       if "GLOBAL" in line or "Unsupported" in line), str(err).splitlines()[0])
        raise UnsafeCheckpointError(
            f"{what} {path}: refused, it stores Python objects that could run code when "
            f"loaded ({detail}). avsr checkpoints hold tensors and plain containers only; "
            "import a foreign checkpoint with `python -m avsr.convert`") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{what} {path}: not a readable torch file (truncated or another "
                         f"format): {str(err).splitlines()[0]}") from err
