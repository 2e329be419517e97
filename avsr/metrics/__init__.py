from avsr.metrics.wer import ErrorCounter, word_errors, wer

__all__ = ["ErrorCounter", "word_errors", "wer"]
