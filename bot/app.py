"""The one place that wires settings, store, services and the dialogue together."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

from bot.catalog import Catalog
from bot.config import Settings
from bot.dialogue import Dialogue
from bot.encoder import Encoder
from bot.evidence import EvidenceStore
from bot.formatting import language_names
from bot.intents import IntentRecognizer
from bot.language import LanguageDetector, catalog_lexicon
from bot.mailer import mailer_from
from bot.manager import Clock, DialogueManager, utc_now
from bot.order import DEFAULT_PATTERNS, OrderNumbers
from bot.order_sources import HttpOrders, OrderProvider, StaticOrders
from bot.render import Renderer
from bot.store import Store
from bot.validation import ConfigError, Configuration, load_configuration


@dataclass(frozen=True)
class Brain:
    """Everything loaded from files at start-up: flows, policy, catalogs, trained models."""

    dialogue: Dialogue
    catalog: Catalog
    renderer: Renderer


def load_brain(settings: Settings, configuration: Configuration | None = None) -> Brain:
    """Train the recognisers and build the dialogue from the checked configuration. Without one,
    every file is read and checked here first; raises ConfigError listing every problem."""
    if configuration is None:
        configuration = load_configuration(settings)
    elif configuration.problems:
        raise ConfigError(list(configuration.problems))
    catalog, policy, rules, flows = (
        configuration.catalog,
        configuration.policy,
        configuration.rules,
        configuration.flows,
    )
    assert catalog and policy and rules and flows is not None  # no problems: all were read
    lexicon = catalog_lexicon(
        {code: loc.keywords.get("function_words") or [] for code, loc in catalog.locales.items()},
        {code: [t for texts in loc.intents.values() for t in texts] for code, loc in catalog.locales.items()},
    )
    dialogue = Dialogue(
        flows=flows,
        detector=LanguageDetector(catalog.codes, lexicon),
        recognizer=IntentRecognizer(catalog, settings.cache_dir, Encoder.load() if settings.encoder else None),
        numbers=OrderNumbers(policy.order_number_patterns or DEFAULT_PATTERNS),
        policy=policy,
        rules=rules,
        max_input_chars=settings.max_input_chars,
        default_locale=settings.default_locale,
        language_names=language_names(sorted(catalog.codes, key=lambda code: code != settings.default_locale)),
    )
    # The models and catalogs live as long as the process: keep them out of the garbage
    # collector's full scans, which otherwise cost milliseconds of pause in the middle of turns.
    gc.freeze()
    return Brain(dialogue, catalog, Renderer(catalog, policy.service_hours))


class App:
    """A running bot: call `start()` before use and `stop()` after (or use `async with`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        brain: Brain | None = None,
        orders: OrderProvider | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.brain = brain or load_brain(settings)
        self._orders = orders
        self.clock = clock
        self.store: Store | None = None
        self.manager: DialogueManager | None = None

    async def start(self) -> DialogueManager:
        settings = self.settings
        self.store = await Store.open(settings.redis_url, settings.data_dir, ttl_seconds=settings.ttl_seconds)
        max_bytes, max_pixels = self.brain.dialogue.policy.evidence_limits
        self.manager = DialogueManager(
            dialogue=self.brain.dialogue,
            renderer=self.brain.renderer,
            store=self.store,
            orders=self._orders or default_orders(settings),
            evidence=EvidenceStore(Path(settings.data_dir) / "evidence", max_bytes=max_bytes, max_pixels=max_pixels),
            clock=self.clock,
            supervisors=frozenset(settings.supervisors),
            mailer=mailer_from(settings),
        )
        return self.manager

    async def stop(self) -> None:
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def __aenter__(self) -> DialogueManager:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def default_orders(settings: Settings) -> OrderProvider:
    """The shop's order API, else its orders file, else the sample orders that ship with the bot."""
    if settings.orders_url:
        return HttpOrders(settings.orders_url, auth_header=settings.orders_auth, timeout=settings.orders_timeout)
    path = settings.orders_file or settings.dialogues_dir / "sample_orders.yml"
    return StaticOrders.from_file(path) if path.exists() else StaticOrders()


def uses_sample_orders(settings: Settings) -> bool:
    """True when no shop orders are configured (neither an API nor a file), so `default_orders`
    falls back to the sample orders in the dialogues folder."""
    return not settings.orders_url and settings.orders_file is None
