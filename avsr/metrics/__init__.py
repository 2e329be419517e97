from avsr.metrics.homophene import HomopheneFloor, homophene_floor
from avsr.metrics.rank import rankme
from avsr.metrics.wer import ErrorCounter, word_errors, wer

__all__ = ["ErrorCounter", "HomopheneFloor", "homophene_floor", "rankme", "word_errors", "wer"]
