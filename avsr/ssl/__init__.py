"""Self-supervised targets: feature dumps, k-means fitting and per-utterance label files."""

from avsr.ssl.labels import ClusterLabels, read_labels, write_labels

__all__ = ["ClusterLabels", "read_labels", "write_labels"]
