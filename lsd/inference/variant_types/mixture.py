"""mixture_of_n: the fuser sees the conversation and every candidate, and writes one answer from them."""

from __future__ import annotations

from collections.abc import Sequence

from lsd.inference.variant_types.candidates import Candidate, problem, with_candidates
from lsd.types import ProviderRequest

_ASK = (
    "Write one response to the conversation that combines the best of the candidate responses above: keep what "
    "is correct and useful in each, drop what is wrong, and answer in the form the conversation asks for. Do not "
    "mention the candidates."
)


def fuser_request(request: ProviderRequest, candidates: Sequence[Candidate]) -> ProviderRequest:
    """The fuser's call: its own rendering of the input (tools and output schema kept: it answers for the
    function), a system text that makes it a synthesiser, the candidates listed."""
    system = (
        "You are given several candidate responses to the following problem and write the single best response "
        "from them:" + problem(request.system) + "The conversation follows; its last message lists the candidates."
    )
    return with_candidates(request, system, candidates, _ASK)
