"""What each configuration file may hold, as pydantic models: a key the model does not name is an
error, a number is a number, a name is one the bot knows.

Only the shape of one file is checked here. What needs several files at once (a market group
named in a window exists, a message key exists in the default locale) is `bot.validation`'s job.
The models are strict: YAML's `yes` is not the text "yes", `18:00` unquoted is not a time.
"""

from __future__ import annotations

import re
import string
from datetime import date, datetime
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.localedata import exists as babel_knows
from babel.numbers import list_currencies
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

from bot.contracts import Button, Event, Intent, Priority, Reason, Resolution, Signal
from bot.regex_check import slow_pattern_problem


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# Names from bot.contracts, written as their plain strings in YAML.
IntentName = Annotated[Intent, Strict(False)]
ResolutionName = Annotated[Resolution, Strict(False)]
ReasonName = Annotated[Reason, Strict(False)]
PriorityName = Annotated[Priority, Strict(False)]
SignalName = Annotated[Signal, Strict(False)]
EventName = Annotated[Event, Strict(False)]
Channel = Literal["console", "telegram", "whatsapp"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Payer = Literal["shop", "customer"]
OrderStatus = Literal["placed", "shipped", "in_customs", "out_for_delivery", "delivered", "lost", "returned"]
RefundState = Literal["none", "pending", "issued"]
Incoterm = Literal["DDP", "DAP"]

NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveInt = Annotated[int, Field(ge=1)]
PositiveNumber = Annotated[float, Field(gt=0)]
NonNegativeNumber = Annotated[float, Field(ge=0)]


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("is empty")
    return text


Phrase = Annotated[str, AfterValidator(_not_blank)]  # an empty keyword would match every message


def _language(code: str) -> str:
    if not re.fullmatch(r"[a-z]{2}", code):
        raise ValueError(f"{code!r} is not a two-letter ISO 639-1 language code (e.g. fr)")
    if not babel_knows(code):
        raise ValueError(f"{code!r} is not a language code Babel knows")
    return code


LanguageCode = Annotated[str, AfterValidator(_language)]


def _country(code: str) -> str:
    if not re.fullmatch(r"[A-Z]{2}", code):
        raise ValueError(f"{code!r} is not a two-letter ISO 3166 country code in capitals (e.g. DE)")
    return code


CountryCode = Annotated[str, AfterValidator(_country)]


def _currency(code: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", code) or code not in list_currencies():
        raise ValueError(f"{code!r} is not an ISO 4217 currency code in capitals (e.g. EUR)")
    return code


CurrencyCode = Annotated[str, AfterValidator(_currency)]


def _high_value_key(key: str) -> str:
    return key if key == "default_usd" else _currency(key)


def _clock(text: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", text):
        raise ValueError(f"{text!r} is not a time of day as HH:MM")
    return text


Clock = Annotated[str, AfterValidator(_clock)]


def _pattern(text: str) -> str:
    try:
        re.compile(text, re.IGNORECASE)
    except re.error as error:
        raise ValueError(f"not a valid regular expression: {error}") from None
    problem = slow_pattern_problem(text)
    if problem:
        raise ValueError(problem)
    return text


OrderPattern = Annotated[str, AfterValidator(_pattern)]


# -- dialogues/policy.yml ----------------------------------------------------------------------

MarketTable = dict[str, NonNegativeInt]  # market group, country code or `default` -> days


class Windows(Model):  # one optional table per kind of bot.contracts.Window
    return_item: MarketTable | None = None
    exchange_item: MarketTable | None = None
    repair: MarketTable | None = None
    damaged_item: MarketTable | None = None
    wrong_item: MarketTable | None = None


class PhotoLimits(Model):
    min: NonNegativeInt = 1
    max: PositiveInt = 5

    @model_validator(mode="after")
    def _ordered(self) -> PhotoLimits:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max})")
        return self


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone (e.g. Asia/Shanghai, Europe/Berlin)") from None
    return name


class ServiceHoursModel(Model):
    timezone: Annotated[str, AfterValidator(_timezone)]
    days: Annotated[list[Day], Field(min_length=1)]
    open: Clock
    close: Clock

    @model_validator(mode="after")
    def _consistent(self) -> ServiceHoursModel:
        if len(set(self.days)) != len(self.days):
            raise ValueError("days: a day is listed twice")
        if self.open >= self.close:
            raise ValueError(f"open ({self.open}) must be before close ({self.close})")
        return self


class SlaRule(Model):
    channels: Annotated[list[Channel], Field(min_length=1)] | None = None
    regions: Annotated[list[str], Field(min_length=1)] | None = None  # market groups
    minutes: PositiveInt


class Verification(Model):
    max_failures: PositiveInt = 3  # per conversation and per order number
    max_sender_failures: PositiveInt = 5  # per user of a channel, across conversations
    lock_hours: PositiveInt = 24
    unlock_code_minutes: PositiveInt = 10  # a mailed one-time code works this long
    unlock_code_attempts: PositiveInt = 3  # wrong codes before it stops working
    unlock_codes: PositiveInt = 3  # codes mailed per order number in a lock period


class Evidence(Model):
    max_bytes: PositiveInt = 10 * 1024 * 1024
    max_pixels: PositiveInt = 40_000_000


class PolicyModel(Model):
    windows: Windows = Windows()
    markets: dict[str, list[CountryCode]] = {}
    return_shipping: dict[IntentName, Payer] = {}
    photos: dict[IntentName, PhotoLimits] = {}
    resolutions: dict[IntentName, Annotated[list[ResolutionName], Field(min_length=1)]] = {}
    return_address: dict[str, str] = {}
    refund_days: NonNegativeInt = 7
    high_value: dict[Annotated[str, AfterValidator(_high_value_key)], PositiveNumber] = {}
    fx_to_usd: dict[CurrencyCode, PositiveNumber] = {}
    service_hours: ServiceHoursModel
    sla_minutes: list[SlaRule] = []
    ticket_response_hours: PositiveInt = 24
    order_number_patterns: list[OrderPattern] = []
    verification: Verification = Verification()
    evidence: Evidence = Evidence()


# -- dialogues/escalation.yml ------------------------------------------------------------------


class When(Model):
    signal: SignalName | None = None
    event: EventName | None = None
    fallbacks_in_a_row: PositiveInt | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> When:
        named = [name for name in ("signal", "event", "fallbacks_in_a_row") if getattr(self, name) is not None]
        if len(named) != 1:
            raise ValueError("needs exactly one of signal, event, fallbacks_in_a_row")
        return self

    @property
    def condition(self) -> tuple[str, str | int]:
        name = next(n for n in ("signal", "event", "fallbacks_in_a_row") if getattr(self, n) is not None)
        return name, getattr(self, name)


class RuleModel(Model):
    reason: ReasonName
    when: When
    priority: PriorityName = Priority.NORMAL


class EscalationModel(Model):
    rules: list[RuleModel]  # required: a misspelt `rulez:` is not "no rules"


# -- locales/<code>/texts.yml and recognition.yml -----------------------------------------------

# Entries the default locale's fragment tables must have: the names of the contracts (another
# locale must have what the default locale has; bot.validation compares them).
FRAGMENT_ENTRIES: dict[str, tuple[str, ...]] = {
    "buttons": (*(str(b) for b in Button), *(str(r) for r in Resolution)),
    # `other`: said for a status, refund state or incoterm a shop's system sends that no entry names.
    "statuses": (*get_args(OrderStatus), "other"),
    "refunds": (*get_args(RefundState), "other"),
    "customs": (*get_args(Incoterm), "other"),
    "next_steps": (*(str(r) for r in Resolution), "review"),  # review: a case with no remedy chosen
    "shipping_payer": get_args(Payer),
    "payment_methods": ("other",),
    "generic": ("unknown",),  # a value nobody has filled in yet
}


def _template(text: str) -> str:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as error:
        raise ValueError(f"broken placeholder: {error} (write a literal brace as {{{{ or }}}})") from None
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"placeholder {{{name}}} is not a plain name like {{order_number}}")
    return text


Template = Annotated[str, AfterValidator(_template)]

Texts = dict[str, Template]


class TextsModel(Model):  # every part optional here: an overlay rewords single texts
    language: LanguageCode | None = None
    name: str | None = None
    messages: Texts = {}
    # the fragment tables of bot.catalog.FRAGMENT_TABLES
    buttons: Texts = {}
    statuses: Texts = {}
    refunds: Texts = {}
    customs: Texts = {}
    next_steps: Texts = {}
    shipping_payer: Texts = {}
    photo_reasons: Texts = {}
    payment_methods: Texts = {}
    generic: Texts = {}


class KeywordsModel(Model):
    # the lists of bot.contracts.Signal
    human: list[Phrase] = []
    legal: list[Phrase] = []
    abuse: list[Phrase] = []
    dispute: list[Phrase] = []
    done: list[Phrase] = []
    agree: list[Phrase] = []  # agreeing to what the bot put forward ("yes", "ok, that one")
    function_words: list[Phrase] = []  # words typical of the language, for language detection
    resolution: dict[ResolutionName, list[Phrase]] = {}  # a resolution named in words


class RecognitionModel(Model):
    intents: dict[IntentName, list[Phrase]] = {}
    keywords: KeywordsModel = KeywordsModel()


# -- the orders file (AFTERSALES_ORDERS) --------------------------------------------------------


def _iso_day(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value).date()
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO date like 2026-11-15") from None
    return value


IsoDay = Annotated[date, BeforeValidator(_iso_day)]


class RefundModel(Model):
    state: str = "none"  # none | pending | issued; another state reads as refunds.other
    amount: NonNegativeNumber | None = None
    issued_at: IsoDay | None = None
    method: str | None = None


class ItemModel(Model):
    sku: str
    name: str
    qty: PositiveInt = 1
    price: NonNegativeNumber


class OrderModel(Model):
    number: str  # quoted: YAML reads #100234 as a comment and 0123 as a number
    email: str = ""
    phone: str = ""
    postcode: str = ""
    market: CountryCode | None = None
    currency: CurrencyCode = "USD"
    total: NonNegativeNumber = 0
    placed_at: IsoDay | None = None
    shipped_at: IsoDay | None = None
    delivered_at: IsoDay | None = None
    status: str = "placed"  # see OrderStatus; another status (e.g. "in_transit") reads as statuses.other
    carrier: str = ""
    tracking: str = ""
    incoterm: str = "DAP"  # DDP | DAP; another term reads as customs.other
    payment_method: str = "card"
    refund: RefundModel = RefundModel()
    items: list[ItemModel] = []
