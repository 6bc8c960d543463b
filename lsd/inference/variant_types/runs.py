"""What one inference needs to run variants of the other types through the one fallback loop.

Engine.infer hands `VariantRuns.before` and `VariantRuns.call` to lsd.inference.routing.route:

- `before(step)` runs outside the provider's timeout, once per variant: a best_of_n_sampling / mixture_of_n
  variant runs its candidates here (concurrently, each through `route` with its own retries and fallbacks, every
  call recorded in the inference's attempts, all bounded by `timeout_s`) and builds its evaluator's / fuser's
  request; a variant with no candidate answering is skipped (the loop goes on to the next variant). A dicl
  variant embeds the input (an embedding inference of its own, through the Embedder) and looks up its nearest
  stored examples; a chain_of_thought variant wraps the output schema.
- `call(step, provider, ctx)` sends that request to the provider `route` chose.
- `answer(variant, response)` reads the answer: the evaluator's choice among the candidates, the fuser's answer,
  the thinking split off, with the usage and cost of every call the inference made.

lsd.inference.streaming uses the same `before`; a dicl variant's call then streams, the others' calls are plain and
their answers are replayed as a stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from lsd.config.model import FunctionConfig, VariantConfig
from lsd.errors import AllAttemptsFailed, ProviderTimeout
from lsd.inference.embeddings import EmbeddingRequest
from lsd.inference.recording import Attempt, input_to_json
from lsd.inference.routing import ABANDONED, NON_STREAMING, route
from lsd.inference.variant_types import best_of_n, chain_of_thought, dicl, mixture
from lsd.inference.variant_types.candidates import Candidate
from lsd.providers.base import CallContext, Provider
from lsd.store import dicl as examples
from lsd.types import ProviderRequest, ProviderResponse, Usage

if TYPE_CHECKING:
    from lsd.inference.run import ChatStep, Engine, Prepared
    from lsd.inference.tools import ToolParams


CUT = "cut"  # a candidate still running at timeout_s


def has_other_types(function: FunctionConfig) -> bool:
    """Whether any variant of `function` is of a type other than chat_completion."""
    return any(v.type != "chat_completion" for v in function.variants.values())


@dataclass
class VariantRuns:
    engine: Engine
    p: Prepared
    tools: ToolParams | None
    attempts: list[Attempt]
    ctx: CallContext
    _candidates: dict[str, list[Candidate]] = field(default_factory=dict)
    _requests: dict[str, ProviderRequest] = field(default_factory=dict)

    async def before(self, step: ChatStep) -> bool:
        """Prepare the step's variant (once); False when it cannot run (no candidate answered)."""
        variant = step.variant
        if variant.type == "chat_completion" or variant.name in self._requests:
            return True
        if variant.candidates is not None:
            found = self._candidates.get(variant.name)
            if found is None:
                found = self._candidates[variant.name] = await self._run_candidates(variant)
            if not found:
                return False
            build = best_of_n.evaluator_request if variant.type == "best_of_n_sampling" else mixture.fuser_request
            self._requests[variant.name] = build(step.request, found)
        elif variant.dicl is not None:
            self._requests[variant.name] = await self._with_examples(variant, step.request)
        elif variant.type == "chain_of_thought":
            self._requests[variant.name] = chain_of_thought.request_with_thinking(step.request)
        return True

    async def call(self, step: ChatStep, provider: Provider, ctx: CallContext) -> ProviderResponse:
        """A provider call of a variant of another type (`before` prepared its request); chat_completion
        variants' calls are plain."""
        return await provider.infer(self._requests.get(step.variant.name, step.request), ctx)

    def request(self, step: ChatStep) -> ProviderRequest:
        """The request the step's provider was sent."""
        return self._requests.get(step.variant.name, step.request)

    def answer(self, variant: VariantConfig, response: ProviderResponse, *, recorded: bool = True) -> ProviderResponse:
        """The inference's answer from the successful call of `variant`; `recorded`: that call is already in the
        attempts (a stream records it when it ends)."""
        if variant.type == "chain_of_thought":
            return replace(response, content=chain_of_thought.unwrapped(response.content))
        if variant.candidates is None:
            return response
        usage, cost = self._used(() if recorded else (response,))
        if variant.type == "best_of_n_sampling":
            response = best_of_n.chosen(response, self._candidates[variant.name]).response
        return replace(response, usage=usage, cost=cost)

    def _used(self, more: Sequence[ProviderResponse]) -> tuple[Usage, float | None]:
        """The usage of every successful call so far (candidates and evaluator/fuser) and of `more`, and their cost
        (None when one of them has none)."""
        answered = [(a.usage, a.cost) for a in self.attempts if a.error is None] + [(r.usage, r.cost) for r in more]
        usage = Usage()
        for used, _ in answered:
            usage = usage + used
        costs = [cost for _, cost in answered]
        return usage, None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    async def _run_candidates(self, variant: VariantConfig) -> list[Candidate]:
        """Every candidate at once, bounded by the variant's timeout_s; those that failed or ran out of time are
        left out (their calls are in the attempts). A caller mistake (a template failing) is raised after all
        have ended."""
        assert variant.candidates is not None
        deadline = asyncio.get_running_loop().time() + variant.candidates.timeout_s
        names = variant.candidates.candidates
        results = await asyncio.gather(*(self._candidate(name, deadline) for name in names), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if any(r is CUT for r in results):
            self._say_cut(variant.candidates.timeout_s)
        return [r for r in results if isinstance(r, Candidate)]

    async def _candidate(self, name: str, deadline: float) -> Candidate | str | None:
        """The candidate's answer; None when it failed, CUT when timeout_s cut it."""
        variant = self.p.function.variants[name]
        steps = self.engine.variant_steps(self.p, variant, self.tools)
        try:
            async with asyncio.timeout_at(deadline):
                routed = await route(steps, NON_STREAMING, self._plain, self.ctx, self.attempts, before=self.before)
        except AllAttemptsFailed:
            return None
        except TimeoutError:
            return CUT
        self.attempts.append(Attempt.succeeded(routed.names, routed.started_ms, routed.t0, routed.value))
        return Candidate(name, self.answer(variant, routed.value))

    def _say_cut(self, timeout_s: float) -> None:
        """The calls timeout_s cut were recorded by route as abandoned (all it knows is that it was cancelled): say
        why. Only candidates' calls can be abandoned while the request goes on."""
        for i, attempt in enumerate(self.attempts):
            if attempt.error is not None and attempt.error.message == ABANDONED:
                cut = ProviderTimeout(
                    f"candidate cut by timeout_s ({timeout_s:g} s)", provider=attempt.provider_name, kind="timeout"
                )
                self.attempts[i] = replace(attempt, error=cut)

    async def _plain(self, step: ChatStep, provider: Provider, ctx: CallContext) -> ProviderResponse:
        return await self.call(step, provider, ctx)

    async def _with_examples(self, variant: VariantConfig, request: ProviderRequest) -> ProviderRequest:
        """The dicl request with the k nearest stored examples (none without a database or an embedder)."""
        config = variant.dicl
        assert config is not None
        engine, r = self.engine, self.p.request
        if engine.database is None or engine.embedder is None or config.k == 0:
            return request
        embedded = await engine.embedder.embed(
            EmbeddingRequest(
                model_name=config.embedding_model,
                inputs=(dicl.input_text(input_to_json(r.input)),),
                credentials=r.credentials,
                dryrun=r.dryrun,
                tags=r.tags,
                api_key_public_id=r.api_key_public_id,
            )
        )
        found: Sequence[examples.Neighbour] = await examples.nearest(
            engine.database, self.p.function.name, variant.name, embedded.embeddings[0], config.k, config.max_distance
        )
        return dicl.with_examples(request, found)
