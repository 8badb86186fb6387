"""What one worker holds for its lifetime: settings, the upstream pool, the breakers, the metrics,
the response store.

Built at import, with the httpx client opened at ASGI lifespan startup and closed
at shutdown, so each worker owns its own connection pool.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from .breaker import Breakers, shared_table
from .exchange import Exchange, TerminalHook
from .logs import mask_key
from .metrics import Metrics
from .settings import Settings
from .store import Store, open_store
from .store.instrumented import instrumented
from .translate.context import ResponseContext
from .translate.request import TranslationPolicy
from .upstream import Upstream, create_client


@dataclass(slots=True)
class Runtime:
    settings: Settings
    breakers: Breakers
    metrics: Metrics
    policy: TranslationPolicy
    # None when RESPONSE_STORE_URL=none; opened lazily at its first operation, in the worker's loop.
    store: Store | None = None
    upstream: Upstream | None = field(default=None)
    _sampler: asyncio.Task[None] | None = field(default=None)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        breakers = Breakers(
            enabled=settings.breaker_enabled,
            threshold=settings.breaker_threshold,
            recovery_secs=settings.breaker_recovery_secs,
            probe_timeout_secs=settings.backend_timeout_secs,
            table=shared_table(settings.breaker_model_slots) if settings.breaker_enabled else None,
        )
        metrics = Metrics(model_labels=settings.breaker_model_slots)
        store = open_store(settings)
        return cls(
            settings=settings,
            breakers=breakers,
            metrics=metrics,
            store=None if store is None else instrumented(store, metrics),
            policy=TranslationPolicy(
                builtin_tools=settings.builtin_tools,  # type: ignore[arg-type]  # settings.load() checked it is one of the Literal's values
                max_tokens_field=settings.max_tokens_field,  # type: ignore[arg-type]  # checked by settings.load() too
                forward_verbosity=settings.forward_verbosity,
                forward_prompt_cache_key=settings.forward_prompt_cache_key,
                forward_prompt_cache_retention=settings.forward_prompt_cache_retention,
                forward_prompt_cache_options=settings.forward_prompt_cache_options,
                forward_service_tier=settings.forward_service_tier,
                reasoning_in_history=settings.reasoning_in_history,
            ),
        )

    async def startup(self) -> None:
        self.upstream = Upstream(create_client(self.settings), self.settings.backend_url)
        self._sampler = asyncio.create_task(self._sample_held())

    async def _sample_held(self, every_secs: float = 1.0) -> None:
        """Report what the worker holds, for /metrics (``Metrics.sample_held``)."""
        while True:
            upstream = self.upstream
            self.metrics.sample_held(
                exchanges=Exchange.live,
                upstream_responses=upstream.in_flight if upstream is not None else 0,
                tasks=len(asyncio.all_tasks()),
            )
            await asyncio.sleep(every_secs)

    async def shutdown(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        if self.upstream is not None:
            await self.upstream.aclose()
            self.upstream = None
        if self.store is not None:
            await self.store.aclose()

    def exchange(
        self,
        *,
        chat: dict[str, Any],
        ctx: ResponseContext,
        headers: dict[str, str],
        secret: str,
        disconnected: asyncio.Future[None],
        emit_events: bool,
        on_terminal: TerminalHook | None = None,
    ) -> Exchange:
        """A new ``Exchange`` over this worker's breakers, metrics and upstream pool.

        ``secret`` is the key sent upstream (masked wherever the backend echoes it).
        """
        assert self.upstream is not None, "lifespan startup did not run"
        return Exchange(
            chat=chat, ctx=ctx, headers=headers, breakers=self.breakers, metrics=self.metrics,
            upstream=self.upstream, settings=self.settings, secret=secret, masked_secret=mask_key(secret),
            disconnected=disconnected, emit_events=emit_events, on_terminal=on_terminal,
        )
