"""Reading weights and run checkpoints without running code from them.

- :func:`read_checkpoint`: ``torch.load(weights_only=True)``; foreign pickles (fairseq) only
  through the restricted unpickler when the caller asks for it (``foreign=True``).
- :func:`check_stored_config`: a config read from a file may only build avsr's model and data
  classes and the torch modules they use.
- :func:`load_run`: model, config and tokenizer vocabulary of a training checkpoint, for
  evaluation, transcription, export, feature extraction and averaging;
  :func:`load_lm_checkpoint`: the LM of shallow fusion.
- :class:`WeightSource`, :func:`apply_init`: a run's ``init`` list, the one way a run starts
  from saved weights (avsr runs, exports, the papers' released checkpoints).
"""

from avsr.checkpoints.config import UnsafeConfigError, check_stored_config, instantiate_stored
from avsr.checkpoints.reader import UnsafeCheckpointError, read_checkpoint
from avsr.checkpoints.run import LoadedRun, load_lm_checkpoint, load_run
from avsr.checkpoints.weights import WeightSource, apply_init, load_weights

__all__ = ["read_checkpoint", "UnsafeCheckpointError", "check_stored_config",
           "instantiate_stored", "UnsafeConfigError", "load_run", "LoadedRun",
           "load_lm_checkpoint", "WeightSource", "apply_init", "load_weights"]
