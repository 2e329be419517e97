"""Audio and video front-ends: raw inputs to one feature vector per 25 Hz frame."""

from avsr.models.frontends.audio_resnet import AudioResNet
from avsr.models.frontends.resnet import BasicBlock, BasicBlock1d, BasicBlock2d, ResNet
from avsr.models.frontends.video_resnet import VideoResNet

__all__ = ["AudioResNet", "VideoResNet", "ResNet", "BasicBlock", "BasicBlock1d", "BasicBlock2d"]
