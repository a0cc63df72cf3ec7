"""Configuration problems, reported like a compiler: every one, each with its file and line.

`check_configuration(settings)` reads every file the bot is configured by — dialogues/policy.yml,
escalation.yml and flows.yml, each language's texts.yml and recognition.yml, a shop's overlay
folder, the orders file — plus the settings from the environment, and lists every problem
instead of stopping at the first. `load_configuration` does the same and hands back the checked
catalog, policy and escalation rules (or raises ConfigError), so a start-up reads each file once.

The shape of each file is `bot.schema`'s (pydantic); what needs several files or sections at once
(a market group named in a window exists, a message key exists in the default locale) is here.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Union, cast, get_args, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from bot.catalog import FRAGMENT_TABLES, REQUIRED_KEYS, Catalog, Locale, placeholders
from bot.contracts import RESOLUTIONS, SIGNALS, Window
from bot.escalation import EscalationRules
from bot.policy import Policy
from bot.schema import FRAGMENT_ENTRIES, EscalationModel, OrderModel, PolicyModel, RecognitionModel, TextsModel

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.flows import Flows

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ENVIRONMENT = Path("environment")  # the "file" of problems in environment variables
DATA_SUFFIXES = (".yml", ".yaml", ".json")


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """The configuration has problems; `problems` lists every one."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def yaml_lines(path: Path) -> dict[tuple[Any, ...], int]:
    """Line numbers (1-based) of every mapping key and list item, by their path in the document:
    `("flows", "track_order", 2)` is the third step of that flow."""
    root = yaml.compose(path.read_text(encoding="utf-8"), Loader=_Loader)
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, where: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = (*where, key.value)
                lines.setdefault(here, key.start_mark.line + 1)
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for n, item in enumerate(node.value):
                lines.setdefault((*where, n), item.start_mark.line + 1)
                walk(item, (*where, n))

    if root is not None:
        walk(root, ())
    return lines


# -- reading files -------------------------------------------------------------------------------


class _Reader(_Loader):  # type: ignore[misc, valid-type]
    """A safe YAML loader that also notes a key written twice in one mapping (YAML keeps the last)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.twice: list[tuple[int, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    self.twice.append((key.start_mark.line + 1, key.value))
                seen.add(key.value)
        return super().construct_mapping(node, deep)


@dataclass
class Source:
    """One configuration file as read: its data, and (looked up only when a problem needs them)
    the lines its keys and items sit on."""

    path: Path
    data: Any
    _lines: dict[tuple[Any, ...], int] | None = field(default=None, repr=False)

    def line(self, loc: Iterable[Any]) -> int | None:
        """The line of the value at `loc`, or of its nearest ancestor that exists in the file."""
        if self._lines is None:
            try:
                self._lines = yaml_lines(self.path)
            except (OSError, ValueError, yaml.YAMLError):  # JSON that YAML cannot read, say
                self._lines = {}
        where = tuple(loc)
        while where:
            if where in self._lines:
                return self._lines[where]
            where = where[:-1]
        return None

    def has(self, loc: Iterable[Any]) -> bool:
        """Whether the file itself writes a value at `loc`."""
        node = self.data
        for part in loc:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                return False
        return True


class Report:
    """Problems found so far, and the helpers that find them."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, where: Source | Path, loc: tuple[Any, ...] | None, message: str) -> None:
        if isinstance(where, Source):
            self.problems.append(Problem(where.path, where.line(loc) if loc is not None else None, message))
        else:
            self.problems.append(Problem(where, None, message))

    def read(self, path: Path, *, what: str = "") -> Source | None:
        """Parse a YAML (or, by its suffix, JSON) file; None, with a problem noted, when it cannot be."""
        hint = f" ({what})" if what else ""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.add(path, None, f"no such file{hint}")
            return None
        except UnicodeDecodeError:
            self.add(path, None, "not UTF-8 text")
            return None
        except OSError as error:
            self.add(path, None, f"cannot read it: {error.strerror or error}{hint}")
            return None
        if path.suffix == ".json":
            try:
                return Source(path, json.loads(text))
            except json.JSONDecodeError as error:
                self.problems.append(Problem(path, error.lineno, f"not valid JSON: {error.msg}"))
                return None
        reader = _Reader(text)
        try:
            data = reader.get_single_data()
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            self.problems.append(Problem(path, mark.line + 1 if mark else None, f"not valid YAML: {error.problem}"))
            return None
        except yaml.YAMLError as error:
            self.add(path, None, f"not valid YAML: {error}")
            return None
        finally:
            reader.dispose()
        for line, key in reader.twice:
            self.problems.append(Problem(path, line, f"{key}: written twice in one mapping (the last would win)"))
        return Source(path, data)

    def validate(
        self,
        annotation: Any,
        data: Any,
        where: Source | Callable[[tuple[Any, ...]], Source],
        prefix: tuple[Any, ...] = (),
    ) -> Any:
        """`data` checked against a bot.schema type; None, with every problem noted, when it fails.
        `where` is the file a location belongs to (a function of it when files were merged)."""
        source_of = where if callable(where) else (lambda loc: where)
        try:
            return _adapter(annotation).validate_python(data)
        except ValidationError as error:
            for detail in error.errors(include_url=False):
                loc = (*prefix, *(part for part in detail["loc"] if part != "[key]"))
                self.add(source_of(loc), loc, _explain(detail, annotation, prefix))
            return None


@cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


# -- pydantic's errors in the words of a configuration file ----------------------------------------


def dotted(loc: Iterable[Any]) -> str:
    """`("markets", "EU", 3)` -> `markets.EU[3]`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "top level"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_QUOTE_HINTS = {
    bool: " (YAML reads yes/no/on/off/NO unquoted as true or false: put it in quotes)",
    int: " (put it in quotes: YAML reads it as a number)",
    float: " (put it in quotes: YAML reads it as a number)",
    type(None): " (nothing is written there)",
}


def _explain(detail: Any, annotation: Any, prefix: tuple[Any, ...]) -> str:
    loc = tuple(detail["loc"])
    is_key = bool(loc) and loc[-1] == "[key]"
    loc = tuple(part for part in loc if part != "[key]")
    name = dotted((*prefix, *loc))
    kind = detail["type"]
    given = detail.get("input")
    context = detail.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _known_keys(annotation, loc[:-1])
        return f"{name}: unknown key{_did_you_mean(str(loc[-1]), known)}"
    if kind == "missing":
        return f"{name}: missing (required)"
    if kind in ("literal_error", "enum"):
        expected = re.findall(r"'([^']*)'", str(context.get("expected", "")))
        if is_key:
            return f"{name}: unknown key{_did_you_mean(str(loc[-1]), expected)}"
        close = difflib.get_close_matches(str(given), expected, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{name}: {_short(given)} is not one of {', '.join(expected)}{hint}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{name}: expected a whole number, got {_short(given)}"
    if kind in ("float_type", "float_parsing"):
        return f"{name}: expected a number, got {_short(given)}"
    if kind == "string_type":
        return f"{name}: expected text, got {_short(given)}{_QUOTE_HINTS.get(type(given), '')}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{name}: expected a mapping (key: value), got {_short(given)}"
    if kind == "list_type":
        return f"{name}: expected a list, got {_short(given)}"
    if kind == "greater_than_equal":
        return f"{name}: must be at least {context.get('ge')}, got {_short(given)}"
    if kind == "greater_than":
        return f"{name}: must be more than {context.get('gt')}, got {_short(given)}"
    if kind == "too_short":
        return f"{name}: must not be empty"
    if kind == "value_error":
        return f"{name}: {context.get('error', detail['msg'])}"
    return f"{name}: {detail['msg']}"


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(known)})" if 0 < len(known) <= 12 else ""


def _known_keys(annotation: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys the schema names at `loc` (for "did you mean"), or [] when it takes any key."""
    current = annotation
    for part in (*loc, None):
        current = _unwrap(current)
        if part is None:
            break
        if isinstance(current, type) and issubclass(current, BaseModel):
            found = current.model_fields.get(str(part))
            current = found.annotation if found else None
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) is list:
            current = get_args(current)[0]
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """`Annotated[X, ...]` and `X | None` are X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin in (Union, UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) == 1:
                annotation = options[0]
                continue
        return annotation


# -- dialogues/policy.yml, escalation.yml, flows.yml ----------------------------------------------


def _merged(base: Any, extra: Any) -> Any:
    """`extra` over `base`: mappings merge key by key, anything else (lists too) is replaced."""
    if isinstance(base, dict) and isinstance(extra, dict):
        return {**base, **{key: _merged(base.get(key), value) for key, value in extra.items()}}
    return extra


def _policy(report: Report, path: Path, overlay: Path | None) -> Policy | None:
    base = report.read(path)
    extra = None
    if overlay is not None and overlay.exists():
        extra = report.read(overlay)
        if extra is None:
            return None
    if base is None:
        return None
    data = {} if base.data is None else base.data
    if extra is not None and extra.data is not None:
        if not isinstance(extra.data, dict):
            report.add(extra, (), "expected a mapping of policy sections (only the values you change)")
            return None
        data = _merged(data, extra.data)

    def source_of(loc: tuple[Any, ...]) -> Source:
        return extra if extra is not None and extra.has(loc) else base

    model: PolicyModel | None = report.validate(PolicyModel, data, source_of)
    if model is None:
        return None
    before = len(report.problems)
    groups = set(model.markets)

    def market_table(loc: tuple[Any, ...], table: dict[str, Any]) -> None:
        for key in table:
            if key != "default" and key not in groups and not re.fullmatch(r"[A-Z]{2}", key):
                report.add(
                    source_of((*loc, key)),
                    (*loc, key),
                    f"{dotted((*loc, key))}: not a market group of `markets`, a country code or `default`"
                    + _did_you_mean(key, sorted(groups)),
                )
        if table and "default" not in table:
            report.add(source_of(loc), loc, f"{dotted(loc)}: needs a `default` for the markets it does not name")

    for kind in Window:
        table = getattr(model.windows, str(kind))
        if table is not None:
            market_table(("windows", str(kind)), table)
    market_table(("return_address",), model.return_address)
    for n, rule in enumerate(model.sla_minutes):
        for m, region in enumerate(rule.regions or ()):
            if region not in groups:
                loc = ("sla_minutes", n, "regions", m)
                report.add(
                    source_of(loc),
                    loc,
                    f"{dotted(loc)}: {region!r} is not a market group of `markets`"
                    + _did_you_mean(region, sorted(groups)),
                )
    return Policy.from_model(model) if len(report.problems) == before else None


def _rules(report: Report, path: Path) -> EscalationRules | None:
    source = report.read(path)
    if source is None:
        return None
    model = report.validate(EscalationModel, {} if source.data is None else source.data, source)
    return None if model is None else EscalationRules.from_model(model)


def _flows(report: Report, path: Path, locales: dict[str, Locale], default: str, folder: Path) -> Flows | None:
    """The flows, checked, and every locale held against what they (and the code) say."""
    from bot.dialogue.spoken import check_texts, spoken_keys  # these take Problem from here: imported when used
    from bot.flows import read_flows

    flows, problems = read_flows(path, set(locales[default].messages))
    report.problems.extend(problems)
    macros = [key for key in locales[default].messages if key.startswith("macro_")]
    report.problems.extend(check_texts(locales, spoken_keys(flows, macros), lambda code: folder / code / TEXTS))
    return None if problems else flows


# -- locales/<code>/texts.yml and recognition.yml, with an overlay's over them ----------------------

TEXTS, RECOGNITION = "texts.yml", "recognition.yml"


@dataclass
class _Language:
    code: str
    texts: list[Source] = field(default_factory=list)  # shipped first, then the overlay's
    recognition: list[Source] = field(default_factory=list)


def _language_folders(report: Report, layers: list[Path]) -> dict[str, _Language]:
    languages: dict[str, _Language] = {}
    for layer in layers:
        for folder in sorted(layer.iterdir()):
            if folder.name.startswith((".", "_")):
                continue
            if folder.is_file():
                if folder.suffix in DATA_SUFFIXES:
                    message = f"not read: each language is a folder, <code>/ with {TEXTS} and {RECOGNITION}"
                    report.add(folder, None, message)
                continue
            for stray in sorted(folder.iterdir()):
                if stray.suffix in DATA_SUFFIXES and stray.name not in (TEXTS, RECOGNITION):
                    hint = _did_you_mean(stray.name, (TEXTS, RECOGNITION))
                    report.add(stray, None, f"not read: a language folder holds {TEXTS} and {RECOGNITION}{hint}")
            language = languages.get(folder.name)
            if language is None and not (folder / TEXTS).exists():
                report.add(folder, None, f"no {TEXTS} in this language folder")
                continue
            language = languages.setdefault(folder.name, _Language(folder.name))
            for name, sources in ((TEXTS, language.texts), (RECOGNITION, language.recognition)):
                if (folder / name).exists() and (source := report.read(folder / name)) is not None:
                    sources.append(source)
    return languages


def _locales(report: Report, folder: Path, overlay: Path | None, default: str) -> tuple[dict[str, Locale], set[str]]:
    """The checked locales, and every message key written in the default locale (or, failing that,
    in any locale), for checking flows even when a catalog has problems."""
    if not folder.is_dir():
        report.add(folder, None, "no such folder of locales")
        return {}, set()
    layers = [folder, *([overlay] if overlay is not None and overlay.is_dir() else [])]
    languages = _language_folders(report, layers)
    if not languages:
        report.add(folder, None, f"no language folders (<code>/{TEXTS})")
    locales: dict[str, Locale] = {}
    origins: dict[str, dict[tuple[str, str], Source]] = {}
    written: dict[str, set[str]] = {}
    for code, language in sorted(languages.items()):
        for source in language.texts:
            if isinstance(source.data, dict) and isinstance(source.data.get("messages"), dict):
                written.setdefault(code, set()).update(map(str, source.data["messages"]))
        built = _locale(report, language)
        if built is not None:
            locales[code], origins[code] = built
    _compare_with_default(report, locales, origins, default)
    known = written.get(default) or set().union(*written.values())
    return locales, known


def _locale(report: Report, language: _Language) -> tuple[Locale, dict[tuple[str, str], Source]] | None:
    code = language.code
    texts = [(s, report.validate(TextsModel, {} if s.data is None else s.data, s)) for s in language.texts]
    recognition = [
        (s, report.validate(RecognitionModel, {} if s.data is None else s.data, s)) for s in language.recognition
    ]
    if not texts:
        for source in language.recognition:
            report.add(source, None, f"no {TEXTS} for language {code!r}, here or in the shipped locales")
        return None
    if any(model is None for _, model in (*texts, *recognition)):
        return None
    first, first_model = texts[0]
    if first_model.language is None:
        report.add(first, (), f"language: missing (write `language: {code}`, the folder's name)")
    for source, model in texts:
        if model.language is not None and model.language != code:
            message = f"language: {model.language!r}, but the folder is {code!r}: they must be the same"
            report.add(source, ("language",), message)
    messages: dict[str, str] = {}
    fragments: dict[str, dict[str, str]] = {table: {} for table in FRAGMENT_TABLES}
    origin: dict[tuple[str, str], Source] = {}
    name = code
    for layer, (source, model) in enumerate(texts):
        name = model.name or name
        for table in ("messages", *FRAGMENT_TABLES):
            entries = messages if table == "messages" else fragments[table]
            for key, text in getattr(model, table).items():
                if layer > 0 and key not in entries:  # an overlay rewords texts the language has
                    loc = (table, key)
                    hint = _did_you_mean(key, entries)
                    report.add(source, loc, f"{dotted(loc)}: the {code} texts have no such entry to reword{hint}")
                    continue
                entries[key] = text
                origin[table, key] = source
    intents: dict[str, list[str]] = {}
    keywords: dict[str, Any] = {list_name: [] for list_name in (*SIGNALS, "agree", "function_words")}
    keywords["resolution"] = {choice: [] for choice in RESOLUTIONS}
    for _, model in recognition:
        for intent, examples in model.intents.items():
            intents.setdefault(str(intent), []).extend(examples)
        for list_name in (*SIGNALS, "agree", "function_words"):
            keywords[list_name].extend(getattr(model.keywords, list_name))
        for choice, words in model.keywords.resolution.items():
            keywords["resolution"][str(choice)].extend(words)
    missing = [key for key in REQUIRED_KEYS if not messages.get(key, "").strip()]
    if missing:
        report.add(first, ("messages",), f"messages: missing required keys: {', '.join(missing)}")
    origin["", ""] = first  # the file that defines the language
    return Locale(code, name, messages, fragments, intents, keywords), origin


def _compare_with_default(
    report: Report, locales: dict[str, Locale], origins: dict[str, dict[tuple[str, str], Source]], default: str
) -> None:
    """Every locale names the texts the default locale names, with the placeholders it fills."""
    reference = locales.get(default)
    if reference is None:
        return
    for table, names in FRAGMENT_ENTRIES.items():
        absent = [name for name in names if name not in reference.fragments[table]]
        if absent:
            report.add(origins[default]["", ""], (table,), f"{table}: missing entries: {', '.join(absent)}")
    for code, locale in locales.items():
        if code == default:
            continue
        origin = origins[code]
        tables = {"messages": (locale.messages, reference.messages)}
        tables.update({t: (locale.fragments[t], reference.fragments[t]) for t in FRAGMENT_TABLES})
        for table, (own, theirs) in tables.items():
            absent = [name for name in theirs if name not in own]
            if absent and table != "messages":  # a message it lacks is shown in the default language
                message = f"{table}: missing entries the default locale ({default}) has: {', '.join(absent)}"
                report.add(origin["", ""], (table,), message)
            for key, text in own.items():
                source, loc = origin[table, key], (table, key)
                if key not in theirs:
                    hint = _did_you_mean(key, theirs)
                    report.add(
                        source, loc, f"{dotted(loc)}: not in the default locale ({default}), so never used{hint}"
                    )
                    continue
                unknown = placeholders(text) - placeholders(theirs[key])
                if unknown:
                    known = ", ".join(f"{{{name}}}" for name in sorted(placeholders(theirs[key]))) or "none"
                    odd = ", ".join(f"{{{name}}}" for name in sorted(unknown))
                    report.add(source, loc, f"{dotted(loc)}: {odd} is never filled in for this text (known: {known})")


# -- the orders file -------------------------------------------------------------------------------


def _orders(report: Report, path: Path) -> int | None:
    source = report.read(path, what="AFTERSALES_ORDERS")
    if source is None:
        return None
    data, prefix = source.data, cast(tuple[str, ...], ())
    if isinstance(data, dict):
        for key in data:
            if key != "orders":
                message = f"{key}: unknown key (an orders file is a list of orders, or `orders:` holding that list)"
                report.add(source, (key,), message)
        data, prefix = data.get("orders"), ("orders",)
    if data is None:
        data = []
    before = len(report.problems)
    orders = report.validate(list[OrderModel], data, source, prefix)
    if orders is None:
        return None
    seen: dict[str, int] = {}
    for n, order in enumerate(orders):
        number = order.number.strip().lstrip("#").upper()
        if number in seen:
            loc = (*prefix, n, "number")
            report.add(source, loc, f"{dotted(loc)}: {order.number!r} is also order {seen[number]} of this file")
        seen.setdefault(number, n)
    return len(orders) if len(report.problems) == before else None


# -- settings and the overlay's layout -------------------------------------------------------------


def _settings(report: Report, settings: Settings) -> None:
    report.problems.extend(settings.problems)

    def environment(message: str) -> None:
        report.add(ENVIRONMENT, None, message)

    if settings.ttl_seconds <= 0:
        environment(f"AFTERSALES_TTL_DAYS must be more than 0, got {settings.ttl_seconds // 86400}")
    if settings.max_input_chars <= 0:
        environment(f"AFTERSALES_MAX_INPUT_CHARS must be more than 0, got {settings.max_input_chars}")
    if not settings.orders_timeout > 0:
        environment(f"AFTERSALES_ORDERS_TIMEOUT must be more than 0, got {settings.orders_timeout}")
    if settings.orders_url:
        if not re.match(r"https?://", settings.orders_url):
            environment("AFTERSALES_ORDERS_URL must be an http:// or https:// URL")
        if "{number}" not in settings.orders_url:
            environment(
                "AFTERSALES_ORDERS_URL needs a {number} placeholder, e.g. https://shop.example/api/orders/{number}"
            )
    if settings.orders_auth:  # a secret: named, never shown
        name, colon, value = settings.orders_auth.partition(":")
        if not (colon and re.fullmatch(r"[A-Za-z0-9-]+", name.strip()) and value.strip()):
            environment("AFTERSALES_ORDERS_AUTH must be one header, 'Name: value' (e.g. 'Authorization: Bearer ...')")
    if not settings.dialogues_dir.is_dir():
        report.add(settings.dialogues_dir, None, "no such folder (AFTERSALES_DIALOGUES)")
    if settings.overlay_dir is not None and not settings.overlay_dir.is_dir():
        report.add(settings.overlay_dir, None, "no such folder (AFTERSALES_OVERLAY)")


def _overlay_layout(report: Report, overlay: Path) -> None:
    """Files an overlay may hold are read; any other YAML or JSON file in it is a mistake."""
    allowed = "an overlay holds dialogues/policy.yml and locales/<code>/texts.yml or recognition.yml"
    for entry in sorted(overlay.iterdir()):
        if entry.name.startswith(".") or entry.name == "locales":
            continue  # locales/ is walked with the shipped locales
        files = [entry] if entry.is_file() else sorted(p for p in entry.rglob("*") if p.is_file())
        for path in files:
            if path.suffix in DATA_SUFFIXES and path != overlay / "dialogues" / "policy.yml":
                report.add(path, None, f"not read: {allowed}")


# -- the whole configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class Configuration:
    """Everything read from files at start-up, checked; `problems` empty when all is well."""

    catalog: Catalog | None
    policy: Policy | None
    rules: EscalationRules | None
    flows: Flows | None
    orders: int | None  # orders in the orders file; None when orders come from an API (or no file)
    orders_file: Path | None
    problems: tuple[Problem, ...]

    def summary(self) -> str:
        """What was read, in one line: `12 locales (ar de ...), default en; 8 escalation rules; ...`."""
        parts = []
        if self.catalog is not None:
            codes = self.catalog.codes
            parts.append(f"{len(codes)} locales ({' '.join(codes)}), default {self.catalog.default}")
        if self.rules is not None:
            parts.append(f"{len(self.rules.rules)} escalation rules")
        if self.orders is not None:
            parts.append(f"{self.orders} orders in {self.orders_file}")
        return "; ".join(parts)


def validate_configuration(settings: Settings) -> Configuration:
    """Read and check every configuration file and setting; never raises for a bad file."""
    report = Report()
    _settings(report, settings)
    overlay = settings.overlay_dir if settings.overlay_dir is not None and settings.overlay_dir.is_dir() else None
    if overlay is not None:
        _overlay_layout(report, overlay)
    dialogues = settings.dialogues_dir
    policy = rules = None
    if dialogues.is_dir():
        policy = _policy(report, dialogues / "policy.yml", overlay / "dialogues" / "policy.yml" if overlay else None)
        rules = _rules(report, dialogues / "escalation.yml")
    overlay_locales = overlay / "locales" if overlay else None
    locales, _ = _locales(report, settings.locales_dir, overlay_locales, settings.default_locale)
    catalog = None
    if settings.default_locale in locales:
        catalog = Catalog(locales, settings.default_locale)
    elif locales:
        there = ", ".join(locales)
        message = f"AFTERSALES_DEFAULT_LOCALE is {settings.default_locale!r}, which has no catalog (there are: {there})"
        report.add(ENVIRONMENT, None, message)
    flows = None
    if dialogues.is_dir() and catalog is not None:
        flows = _flows(report, dialogues / "flows.yml", locales, settings.default_locale, settings.locales_dir)
    orders_file = None if settings.orders_url else settings.orders_file
    if orders_file is None and not settings.orders_url and (dialogues / "sample_orders.yml").exists():
        orders_file = dialogues / "sample_orders.yml"
    orders = _orders(report, orders_file) if orders_file is not None else None
    return Configuration(catalog, policy, rules, flows, orders, orders_file, tuple(report.problems))


def check_configuration(settings: Settings) -> list[Problem]:
    """Every problem of the configuration, each with its file (and line where there is one)."""
    return list(validate_configuration(settings).problems)


def load_configuration(settings: Settings) -> Configuration:
    """The checked configuration; raises ConfigError listing every problem."""
    configuration = validate_configuration(settings)
    if configuration.problems:
        raise ConfigError(list(configuration.problems))
    return configuration


def load_catalog(folder: Path, default: str = "en", overlay: Path | None = None) -> Catalog:
    report = Report()
    locales, _ = _locales(report, folder, overlay, default)
    if not report.problems and default not in locales:
        report.add(folder, None, f"no catalog for the default locale {default!r}")
    if report.problems:
        raise ConfigError(report.problems)
    return Catalog(locales, default)


def load_policy(path: Path, overlay: Path | None = None) -> Policy:
    report = Report()
    policy = _policy(report, path, overlay)
    if policy is None or report.problems:
        raise ConfigError(report.problems)
    return policy


def load_rules(path: Path) -> EscalationRules:
    report = Report()
    rules = _rules(report, path)
    if rules is None or report.problems:
        raise ConfigError(report.problems)
    return rules
