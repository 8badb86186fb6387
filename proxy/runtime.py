"""What one worker holds for its lifetime: settings, the upstream pool, the breaker.

Built at import, with the httpx client opened at ASGI lifespan startup and closed
at shutdown, so each worker owns its own connection pool.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .breaker import CircuitBreaker, shared_state
from .settings import Settings
from .translate.request import TranslationPolicy
from .upstream import Upstream, create_client


@dataclass(slots=True)
class Runtime:
    settings: Settings
    breaker: CircuitBreaker
    policy: TranslationPolicy
    upstream: Upstream | None = field(default=None)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        return cls(
            settings=settings,
            breaker=CircuitBreaker(
                enabled=settings.breaker_enabled,
                threshold=settings.breaker_threshold,
                recovery_secs=settings.breaker_recovery_secs,
                probe_timeout_secs=settings.backend_timeout_secs,
                state=shared_state() if settings.breaker_enabled else None,
            ),
            policy=TranslationPolicy(
                builtin_tools=settings.builtin_tools,  # type: ignore[arg-type]
                max_tokens_field=settings.max_tokens_field,  # type: ignore[arg-type]
                forward_verbosity=settings.forward_verbosity,
                forward_prompt_cache_key=settings.forward_prompt_cache_key,
                forward_service_tier=settings.forward_service_tier,
                reasoning_in_history=settings.reasoning_in_history,
            ),
        )

    async def startup(self) -> None:
        self.upstream = Upstream(create_client(self.settings), self.settings.backend_url)

    async def shutdown(self) -> None:
        if self.upstream is not None:
            await self.upstream.aclose()
            self.upstream = None
