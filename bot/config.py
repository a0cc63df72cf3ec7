"""Settings, read once from the environment (a shop can also pass them explicitly)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

from bot.validation import ENVIRONMENT, Problem

_PACKAGE_DATA = Path(__file__).parent / "_data"  # where a wheel puts dialogues/ and locales/
_SOURCE_TREE = Path(__file__).parent.parent  # a checkout or an editable install


def shipped_folder(name: str) -> Path:
    """The `dialogues` or `locales` folder that ships with the package."""
    installed = _PACKAGE_DATA / name
    return installed if installed.is_dir() else _SOURCE_TREE / name


def _default_cache() -> Path | None:
    try:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    except RuntimeError:  # no home directory (some containers): train at every start instead
        return None
    return Path(base) / "aftersales"


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None  # None: start the embedded Valkey
    data_dir: Path = Path(".aftersales")
    dialogues_dir: Path = field(default_factory=lambda: shipped_folder("dialogues"))
    locales_dir: Path = field(default_factory=lambda: shipped_folder("locales"))
    overlay_dir: Path | None = None  # a shop's changes to single texts and policy values
    orders_file: Path | None = None
    cache_dir: Path | None = field(default_factory=lambda: _default_cache())  # trained models; None: no cache
    orders_url: str | None = None  # a shop order API, e.g. https://shop.example/api/orders/{number}
    orders_auth: str | None = None  # a header for it, e.g. "Authorization: Bearer ..."
    orders_timeout: float = 2.5  # seconds for a whole lookup; then the check is "not possible right now"
    ttl_seconds: int = 30 * 24 * 3600
    max_input_chars: int = 2000
    default_locale: str = "en"
    shop_name: str = "our shop"
    telegram_bot_token: str | None = None
    telegram_webhook_secret: str | None = None
    telegram_api_base: str | None = None
    telegram_webhook_url: str | None = None
    whatsapp_access_token: str | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_app_secret: str | None = None
    whatsapp_verify_token: str | None = None
    whatsapp_api_base: str | None = None
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_base: str | None = None
    slack_agent_channel: str | None = None
    slack_agent_ids: tuple[str, ...] = ()
    slack_note_prefix: str = "note:"  # a thread reply starting with it stays among the agents
    slack_escalation_mention: str | None = None  # who an overdue card calls, e.g. "<!subteam^S123>"
    slack_pace_seconds: float = 1.0  # between the bot's posts to the agents' channel (Slack: about 1/s)
    supervisors: tuple[str, ...] = ()  # agents who may take over a conversation someone else claimed
    smtp_url: str | None = field(default=None, repr=False)  # mails unlock codes; holds a password
    mail_from: str | None = None  # the From of those mails, e.g. "Shop <service@shop.example>"
    encoder: bool = True  # sentence embeddings beside the n-grams for intents (15-50 ms a message)
    # What from_env could not read (a word where a number belongs); reported with the rest of the
    # configuration's problems by bot.validation, not raised here.
    problems: tuple[Problem, ...] = field(default=(), compare=False, repr=False)

    @property
    def wants_slack(self) -> bool:
        """Some SLACK_* variable that configures the agents' Slack console is set."""
        return bool(
            self.slack_bot_token
            or self.slack_signing_secret
            or self.slack_app_token
            or self.slack_agent_channel
            or self.slack_agent_ids
        )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Build settings from environment variables; unset ones keep their defaults."""
        env = dict(os.environ if env is None else env)

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        problems: list[Problem] = []

        def number(name: str, default: float, kind: type[int] | type[float] = int) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                problems.append(Problem(ENVIRONMENT, None, f"{name} must be {what}, got {raw!r}"))
                return default
            if not (value > 0 and math.isfinite(value)):
                problems.append(Problem(ENVIRONMENT, None, f"{name} must be more than 0, got {raw!r}"))
                return default
            return value

        def switch(name: str, default: bool) -> bool:
            raw = get(name)
            if raw is None:
                return default
            if raw.lower() in ("on", "true", "1", "yes"):
                return True
            if raw.lower() in ("off", "false", "0", "no"):
                return False
            problems.append(Problem(ENVIRONMENT, None, f"{name} must be on or off, got {raw!r}"))
            return default

        defaults = cls()
        return cls(
            redis_url=get("REDIS_URL"),
            data_dir=Path(get("AFTERSALES_DATA") or defaults.data_dir),
            dialogues_dir=Path(get("AFTERSALES_DIALOGUES") or defaults.dialogues_dir),
            locales_dir=Path(get("AFTERSALES_LOCALES") or defaults.locales_dir),
            overlay_dir=Path(o) if (o := get("AFTERSALES_OVERLAY")) else None,
            orders_file=Path(p) if (p := get("AFTERSALES_ORDERS")) else None,
            cache_dir=Path(c) if (c := get("AFTERSALES_CACHE")) else defaults.cache_dir,
            orders_url=get("AFTERSALES_ORDERS_URL"),
            orders_auth=get("AFTERSALES_ORDERS_AUTH"),
            orders_timeout=number("AFTERSALES_ORDERS_TIMEOUT", defaults.orders_timeout, float),
            ttl_seconds=int(number("AFTERSALES_TTL_DAYS", defaults.ttl_seconds // 86400)) * 24 * 3600,
            max_input_chars=int(number("AFTERSALES_MAX_INPUT_CHARS", defaults.max_input_chars)),
            default_locale=get("AFTERSALES_DEFAULT_LOCALE") or defaults.default_locale,
            shop_name=get("AFTERSALES_SHOP_NAME") or defaults.shop_name,
            telegram_bot_token=get("TELEGRAM_BOT_TOKEN"),
            telegram_webhook_secret=get("TELEGRAM_WEBHOOK_SECRET"),
            telegram_api_base=get("TELEGRAM_API_BASE"),
            telegram_webhook_url=get("TELEGRAM_WEBHOOK_URL"),
            whatsapp_access_token=get("WHATSAPP_ACCESS_TOKEN"),
            whatsapp_phone_number_id=get("WHATSAPP_PHONE_NUMBER_ID"),
            whatsapp_app_secret=get("WHATSAPP_APP_SECRET"),
            whatsapp_verify_token=get("WHATSAPP_VERIFY_TOKEN"),
            whatsapp_api_base=get("WHATSAPP_API_BASE"),
            slack_bot_token=get("SLACK_BOT_TOKEN"),
            slack_signing_secret=get("SLACK_SIGNING_SECRET"),
            slack_app_token=get("SLACK_APP_TOKEN"),
            slack_api_base=get("SLACK_API_BASE"),
            slack_agent_channel=get("SLACK_AGENT_CHANNEL"),
            slack_agent_ids=tuple(i.strip() for i in (get("SLACK_AGENT_IDS") or "").split(",") if i.strip()),
            slack_note_prefix=get("SLACK_NOTE_PREFIX") or defaults.slack_note_prefix,
            slack_escalation_mention=get("SLACK_ESCALATION_MENTION"),
            slack_pace_seconds=number("SLACK_PACE_SECONDS", defaults.slack_pace_seconds, float),
            supervisors=tuple(i.strip() for i in (get("AFTERSALES_SUPERVISORS") or "").split(",") if i.strip()),
            smtp_url=get("SMTP_URL"),
            mail_from=get("AFTERSALES_MAIL_FROM"),
            encoder=switch("AFTERSALES_ENCODER", defaults.encoder),
            problems=tuple(problems + _mail_problems(get("SMTP_URL"), get("AFTERSALES_MAIL_FROM"))),
        )


def _mail_problems(smtp_url: str | None, mail_from: str | None) -> list[Problem]:
    """SMTP_URL and AFTERSALES_MAIL_FROM go together; the URL's password is never repeated."""
    problems = []
    if smtp_url:
        from bot.mailer import SmtpServer  # only a bot that mails needs aiosmtplib loaded

        try:
            SmtpServer.from_url(smtp_url)
        except ValueError as error:
            problems.append(Problem(ENVIRONMENT, None, str(error)))
        if not mail_from:
            message = "AFTERSALES_MAIL_FROM is needed with SMTP_URL (the sender of unlock codes)"
            problems.append(Problem(ENVIRONMENT, None, message))
    if mail_from and "@" not in parseaddr(mail_from)[1]:
        problems.append(Problem(ENVIRONMENT, None, f"AFTERSALES_MAIL_FROM is not an address: {mail_from!r}"))
    return problems
