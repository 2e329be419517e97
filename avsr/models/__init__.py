"""Model parts (plain ``nn.Module``s) and the unified CTC/attention model."""

from avsr.models.avsr_model import MODALITIES, AVSRModel, ModalityOutput
from avsr.models.conformer import ConformerEncoder
from avsr.models.ctc import CTCHead
from avsr.models.decoder import DecoderState, TransformerDecoder
from avsr.models.encoder import TransformerEncoder
from avsr.models.frontends import AudioResNet, VideoResNet
from avsr.models.fusion import ConcatFusion
from avsr.models.utils import make_pad_mask

__all__ = [
    "AVSRModel",
    "ModalityOutput",
    "MODALITIES",
    "AudioResNet",
    "VideoResNet",
    "ConcatFusion",
    "TransformerEncoder",
    "ConformerEncoder",
    "TransformerDecoder",
    "DecoderState",
    "CTCHead",
    "make_pad_mask",
]
