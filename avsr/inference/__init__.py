"""Inference on media a user brings and on exported programs: reading media and cropping the
mouth (``media``), the ``torch.export`` programs (``programs``, ``export``) and their loader
(``exported``)."""
