"""Scoring: what a B′ is worth — directional and ground-truth metrics, the reliability score, the
pairwise judges and their protocol, rankings, the human study, statistics and cost."""
