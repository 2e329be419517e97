"""Inference on media a user brings: reading it and cropping the mouth (``media``)."""
