"""The annotation advisor: which unlabeled cases to label next (``semiseg advise``, issue 15)."""

from semiseg.advisor.advise import SubjectAdvice, advise, member_networks, read_advice
from semiseg.advisor.selection import SIGNALS, STRATEGIES, diverse_order, rank_by_score

__all__ = ["SIGNALS", "STRATEGIES", "SubjectAdvice", "advise", "diverse_order", "member_networks", "rank_by_score", "read_advice"]
