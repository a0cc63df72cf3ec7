"""Conformance of recorded requests (and the fakes' answers) with the platform specs.

The specs live outside the project, in the folder `SPECS_DIR` names (`.ci/run` sets it to
`../shared/specs`): `telegram/bot-api-10.0.json` and `whatsapp/business-messaging-api_v23.0.yaml`.
When it is unset nothing can be checked: `specs_dir()` returns None and a conformance test must
say so (`SKIP_REASON`). A set `SPECS_DIR` that does not hold the files is an error, not a skip.

    problems = telegram_problems(tg.requests)            # [] when every request conforms
    problems = graph_problems(graph.requests)

Telegram: each method called exists; every parameter sent is a field of that method whose type
it has (as sent on the wire: a form value is a string that must read as that type, a JSON value
must be of it; objects and arrays are checked field by field against the spec's types); required
fields are there. The fake's `result` objects are checked against the method's return types.

Graph: each messages POST body validates against the request schema of the `sendMessage`
operation, with a small validator of the JSON Schema subset the spec uses ($ref, allOf, oneOf
with OpenAPI discriminators, type, enum, required, properties, additionalProperties, items,
length and count limits, pattern). It reads `allOf` as OpenAPI documents mean it: a branch's
`additionalProperties: false` allows the properties the other branches declare (read strictly,
every TextMessage would be invalid: the base properties sit in the other branch). Patterns in
`PATTERN_ERRATA` are malformed in the spec and skipped. A keyword the validator does not know
is an error, so nothing passes unchecked. The fake's answers are checked against the responses
the spec gives (200 payloads, GraphAPIError).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tests.fakes._server import Call

SPECS_ENV = "SPECS_DIR"
SKIP_REASON = (
    "SPECS_DIR is not set: the recorded requests were NOT checked against the platform specs "
    "(.ci/run sets SPECS_DIR=../shared/specs)"
)
TELEGRAM_SPEC = Path("telegram/bot-api-10.0.json")
GRAPH_SPEC = Path("whatsapp/business-messaging-api_v23.0.yaml")
SEND_MESSAGE_PATH = "/{Version}/{Phone-Number-ID}/messages"
MEDIA_PATH = "/{Version}/{Media-ID}"

# JSON pointer of a pattern -> why it is not applied.
PATTERN_ERRATA = {
    "#/components/schemas/TemplateComponent/properties/index/pattern": (
        "'^[2-6, 11-14]$' is a one-character class (it rejects index '0', the first button)"
    ),
    "#/components/schemas/ButtonComponent/allOf/1/properties/index/pattern": (
        "'^[2-6, 11-14]$' is a one-character class (it rejects index '0', the first button)"
    ),
}
_ANNOTATIONS = frozenset(
    {
        "description",
        "example",
        "examples",
        "default",
        "format",
        "title",
        "deprecated",
        "readOnly",
        "writeOnly",
        "externalDocs",
        "xml",
        "nullable",
        "$comment",
        "contentMediaType",
    }
)


class SpecsUnavailable(RuntimeError):
    """SPECS_DIR is not set."""


def specs_dir() -> Path | None:
    """The specs folder from SPECS_DIR, or None when it is unset (nothing can be checked)."""
    value = os.environ.get(SPECS_ENV, "").strip()
    return Path(value) if value else None


def _folder(folder: Path | None) -> Path:
    folder = folder or specs_dir()
    if folder is None:
        raise SpecsUnavailable(SKIP_REASON)
    return folder


# --- Telegram -------------------------------------------------------------------------------


class TelegramSpec:
    """The Bot API description: methods and types with their fields, types, required flags."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.version: str = data.get("version", "?")
        self.methods: dict[str, Any] = data["methods"]
        self.types: dict[str, Any] = data["types"]

    @classmethod
    def load(cls, folder: Path | None = None) -> TelegramSpec:
        return _load_telegram(_folder(folder) / TELEGRAM_SPEC)

    def check_call(self, call: Call, *, responses: bool = True) -> list[str]:
        """Problems with one recorded request (and, with `responses`, with the fake's result)."""
        if call.name == "file":
            return []
        method = self.methods.get(call.name)
        if method is None:
            return [f"{call.name}: not a method of {self.version}"]
        fields = {field["name"]: field for field in method.get("fields", [])}
        wire = call.encoding in ("form", "multipart", "query")
        problems: list[str] = []
        for name, value in call.raw.items():
            field = fields.get(name)
            if field is None:
                problems.append(f"{call.name}: {name!r} is not a parameter of {call.name}")
                continue
            problems += self.check_value(value, field["types"], f"{call.name}.{name}", wire=wire, files=call.files)
        for name, field in fields.items():
            if field["required"] and name not in call.raw and name not in call.files:
                problems.append(f"{call.name}: required parameter {name!r} is missing")
        if responses and call.status == 200 and isinstance(call.response, dict) and call.response.get("ok"):
            problems += self.check_value(
                call.response["result"], method["returns"], f"{call.name} -> result", wire=False, files={}
            )
        return problems

    def check_value(
        self,
        value: Any,
        types: list[str],
        path: str,
        *,
        wire: bool = False,
        files: dict[str, Any] | None = None,
    ) -> list[str]:
        """Problems with `value` as one of `types` (Bot API type expressions); [] if it is."""
        best: list[str] | None = None
        for type_name in types:
            problems = self._check_one(value, type_name, path, wire, files or {})
            if not problems:
                return []
            if best is None or len(problems) < len(best):
                best = problems
        if len(types) > 1 and best is not None:
            return [f"{path}: is none of {' or '.join(types)}; closest: {best[0]}", *best[1:]]
        return best or []

    def check_object(self, value: Any, type_name: str, path: str | None = None) -> list[str]:
        """Problems with a JSON object as the Bot API type `type_name` (e.g. an Update)."""
        return self._check_one(value, type_name, path or type_name, False, {})

    def _check_one(self, value: Any, type_name: str, path: str, wire: bool, files: dict[str, Any]) -> list[str]:
        if type_name.startswith("Array of "):
            inner = type_name.removeprefix("Array of ")
            if wire and isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    return [f"{path}: {value!r} is not a JSON-serialized array"]
            if not isinstance(value, list):
                return [f"{path}: expected {type_name}, got {_kind(value)}"]
            problems: list[str] = []
            for index, item in enumerate(value):
                problems += self._check_one(item, inner, f"{path}[{index}]", False, files)
            return problems
        if type_name == "Integer":
            ok = (
                bool(re.fullmatch(r"-?\d+", value))
                if wire and isinstance(value, str)
                else isinstance(value, int) and not isinstance(value, bool)
            )
            return [] if ok else [f"{path}: expected Integer, got {value!r}"]
        if type_name == "Float":
            if wire and isinstance(value, str):
                ok = bool(re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", value))
            else:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            return [] if ok else [f"{path}: expected Float, got {value!r}"]
        if type_name == "Boolean":
            if wire and isinstance(value, str):
                ok = value in ("true", "false", "True", "False")
            else:
                ok = isinstance(value, bool)
            return [] if ok else [f"{path}: expected Boolean, got {value!r}"]
        if type_name == "True":
            ok = value in ("true", "True") if wire and isinstance(value, str) else value is True
            return [] if ok else [f"{path}: expected True, got {value!r}"]
        if type_name == "String":
            return [] if isinstance(value, str) else [f"{path}: expected String, got {_kind(value)} {value!r}"]
        if type_name == "InputFile":
            if isinstance(value, str) and value.startswith("attach://") and value.removeprefix("attach://") in files:
                return []
            return [f"{path}: expected an uploaded file (multipart part or attach://<part>), got {value!r}"]
        spec_type = self.types.get(type_name)
        if spec_type is None:
            return [f"{path}: the spec has no type {type_name!r}"]
        if wire and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return [f"{path}: {value!r} is not a JSON-serialized {type_name}"]
        if spec_type.get("subtypes"):
            return self.check_value(value, spec_type["subtypes"], path, wire=False, files=files)
        if not isinstance(value, dict):
            return [f"{path}: expected {type_name} object, got {_kind(value)}"]
        fields = {field["name"]: field for field in spec_type.get("fields", [])}
        problems = []
        for key, item in value.items():
            field = fields.get(key)
            if field is None:
                problems.append(f"{path}: {key!r} is not a field of {type_name}")
            else:
                problems += self.check_value(item, field["types"], f"{path}.{key}", wire=False, files=files)
        for key, field in fields.items():
            if field["required"] and key not in value:
                problems.append(f"{path}: {type_name} requires {key!r}")
        return problems


@functools.cache
def _load_telegram(path: Path) -> TelegramSpec:
    return TelegramSpec(json.loads(path.read_text(encoding="utf-8")))


def telegram_problems(calls: Iterable[Call], folder: Path | None = None, *, responses: bool = True) -> list[str]:
    """Every problem of the recorded Telegram requests against the Bot API spec.

    Raises SpecsUnavailable when SPECS_DIR is unset and no folder is given.
    """
    spec = TelegramSpec.load(folder)
    return [problem for call in calls for problem in spec.check_call(call, responses=responses)]


# --- Graph (OpenAPI 3.1) --------------------------------------------------------------------


class SchemaValidator:
    """The JSON Schema subset the Graph spec uses, with OpenAPI's allOf and discriminator."""

    def __init__(self, document: dict[str, Any], pattern_errata: dict[str, str] | None = None) -> None:
        self.document = document
        self.pattern_errata = PATTERN_ERRATA if pattern_errata is None else pattern_errata
        self.skipped_patterns: set[str] = set()

    def resolve(self, reference: str) -> Any:
        if not reference.startswith("#/"):
            raise ValueError(f"only local references are supported: {reference}")
        node: Any = self.document
        for part in reference[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def validate(self, instance: Any, schema: Any, pointer: str = "#", path: str = "$") -> list[str]:
        """Problems with `instance` against `schema` (each once, in order); [] when it is valid."""
        problems = self._validate(instance, schema, pointer, path, frozenset(), frozenset())
        return list(dict.fromkeys(problems))

    def _declared(self, schema: Any, pointer: str, seen: frozenset[str] = frozenset()) -> set[str]:
        """Property names a schema declares, through $ref and allOf."""
        if not isinstance(schema, dict):
            return set()
        names = set(schema.get("properties", {}))
        if "$ref" in schema and schema["$ref"] not in seen:
            names |= self._declared(self.resolve(schema["$ref"]), schema["$ref"], seen | {schema["$ref"]})
        for index, branch in enumerate(schema.get("allOf", [])):
            names |= self._declared(branch, f"{pointer}/allOf/{index}", seen)
        return names

    def _validate(
        self,
        instance: Any,
        schema: Any,
        pointer: str,
        path: str,
        declared: frozenset[str],
        quiet_discriminators: frozenset[str],
    ) -> list[str]:
        if schema is True or schema == {}:
            return []
        if schema is False:
            return [f"{path}: no value is allowed here"]
        unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
        if unknown:
            raise ValueError(f"{pointer}: schema keywords this validator does not know: {sorted(unknown)}")
        problems: list[str] = []
        if "$ref" in schema:
            reference = schema["$ref"]
            problems += self._validate(
                instance, self.resolve(reference), reference, path, declared, quiet_discriminators
            )
        if "allOf" in schema:
            together = frozenset(declared | self._declared(schema, pointer))
            for index, branch in enumerate(schema["allOf"]):
                problems += self._validate(
                    instance, branch, f"{pointer}/allOf/{index}", path, together, quiet_discriminators
                )
        discriminator = schema.get("discriminator")
        chosen: str | None = None
        if discriminator and pointer not in quiet_discriminators and isinstance(instance, dict):
            name = discriminator["propertyName"]
            mapping = discriminator.get("mapping", {})
            if name not in instance:
                problems.append(f"{path}: the discriminator {name!r} is missing")
            elif mapping and instance[name] not in mapping:
                problems.append(f"{path}.{name}: {instance[name]!r} is not one of {sorted(mapping)}")
            elif mapping:
                chosen = mapping[instance[name]]
                problems += self._validate(
                    instance, {"$ref": chosen}, pointer, path, declared, quiet_discriminators | {pointer}
                )
        if "oneOf" in schema and chosen is None:
            problems += self._one_of(instance, schema["oneOf"], pointer, path, declared, quiet_discriminators)
        if "anyOf" in schema:
            outcomes = [
                self._validate(instance, branch, f"{pointer}/anyOf/{i}", path, declared, quiet_discriminators)
                for i, branch in enumerate(schema["anyOf"])
            ]
            if all(outcomes):
                problems.append(f"{path}: matches none of anyOf; closest: {min(outcomes, key=len)[0]}")
        problems += self._type(instance, schema, path)
        if problems and "type" in schema and any(p.startswith(f"{path}: expected type") for p in problems):
            return problems
        if "enum" in schema and instance not in schema["enum"]:
            problems.append(f"{path}: {instance!r} is not one of {schema['enum']}")
        if "const" in schema and instance != schema["const"]:
            problems.append(f"{path}: must be {schema['const']!r}")
        if isinstance(instance, dict):
            problems += self._object(instance, schema, pointer, path, declared)
        if isinstance(instance, list):
            problems += self._array(instance, schema, pointer, path)
        if isinstance(instance, str):
            problems += self._string(instance, schema, pointer, path)
        if isinstance(instance, int | float) and not isinstance(instance, bool):
            if "minimum" in schema and instance < schema["minimum"]:
                problems.append(f"{path}: {instance} is below {schema['minimum']}")
            if "maximum" in schema and instance > schema["maximum"]:
                problems.append(f"{path}: {instance} is above {schema['maximum']}")
        return problems

    def _one_of(
        self,
        instance: Any,
        branches: list[Any],
        pointer: str,
        path: str,
        declared: frozenset[str],
        quiet: frozenset[str],
    ) -> list[str]:
        outcomes = [
            self._validate(instance, branch, f"{pointer}/oneOf/{i}", path, declared, quiet)
            for i, branch in enumerate(branches)
        ]
        matching = [i for i, outcome in enumerate(outcomes) if not outcome]
        if len(matching) == 1:
            return []
        if len(matching) > 1:
            return [f"{path}: matches {len(matching)} branches of oneOf at {pointer} (exactly one allowed)"]
        closest = min(outcomes, key=len)
        return [f"{path}: matches no branch of oneOf at {pointer}; closest branch says:", *closest]

    @staticmethod
    def _type(instance: Any, schema: dict[str, Any], path: str) -> list[str]:
        if "type" not in schema:
            return []
        wanted = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        checks = {
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list),
            "string": lambda v: isinstance(v, str),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "boolean": lambda v: isinstance(v, bool),
            "null": lambda v: v is None,
        }
        if any(checks[kind](instance) for kind in wanted):
            return []
        return [f"{path}: expected type {'/'.join(wanted)}, got {_kind(instance)} {instance!r}"[:300]]

    def _object(
        self, instance: dict[str, Any], schema: dict[str, Any], pointer: str, path: str, declared: frozenset[str]
    ) -> list[str]:
        problems = []
        for name in schema.get("required", []):
            if name not in instance:
                problems.append(f"{path}: required property {name!r} is missing")
        properties = schema.get("properties", {})
        for name, subschema in properties.items():
            if name in instance:
                problems += self._validate(
                    instance[name], subschema, f"{pointer}/properties/{name}", f"{path}.{name}", _NONE, _NONE
                )
        extra = schema.get("additionalProperties", True)
        if extra is not True:
            for name in instance:
                if name in properties or name in declared:
                    continue
                if extra is False:
                    problems.append(f"{path}: property {name!r} is not allowed")
                else:
                    problems += self._validate(
                        instance[name], extra, f"{pointer}/additionalProperties", f"{path}.{name}", _NONE, _NONE
                    )
        return problems

    def _array(self, instance: list[Any], schema: dict[str, Any], pointer: str, path: str) -> list[str]:
        problems = []
        if "minItems" in schema and len(instance) < schema["minItems"]:
            problems.append(f"{path}: {len(instance)} items, at least {schema['minItems']} required")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            problems.append(f"{path}: {len(instance)} items, at most {schema['maxItems']} allowed")
        if "items" in schema:
            for index, item in enumerate(instance):
                problems += self._validate(
                    item, schema["items"], f"{pointer}/items", f"{path}[{index}]", frozenset(), frozenset()
                )
        return problems

    def _string(self, instance: str, schema: dict[str, Any], pointer: str, path: str) -> list[str]:
        problems = []
        if "minLength" in schema and len(instance) < schema["minLength"]:
            problems.append(f"{path}: {len(instance)} characters, at least {schema['minLength']} required")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            problems.append(f"{path}: {len(instance)} characters, at most {schema['maxLength']} allowed")
        if "pattern" in schema:
            where = f"{pointer}/pattern"
            if where in self.pattern_errata:
                self.skipped_patterns.add(where)
            elif not re.search(schema["pattern"], instance):
                problems.append(f"{path}: {instance!r} does not match {schema['pattern']!r}")
        return problems


_NONE: frozenset[str] = frozenset()
_KEYWORDS = frozenset(
    {
        "$ref",
        "allOf",
        "oneOf",
        "anyOf",
        "discriminator",
        "type",
        "enum",
        "const",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
    }
)


class GraphSpec:
    """The WhatsApp Cloud API OpenAPI document and the checks of the fake's recorded calls."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.version: str = document["info"]["version"]
        self.validator = SchemaValidator(document)

    @classmethod
    def load(cls, folder: Path | None = None) -> GraphSpec:
        return _load_graph(_folder(folder) / GRAPH_SPEC)

    def operation(self, path: str, method: str) -> dict[str, Any]:
        return self.document["paths"][path][method]

    @property
    def send_message_schema(self) -> dict[str, Any]:
        """The request body schema of POST /{Version}/{Phone-Number-ID}/messages (operation sendMessage)."""
        return self.operation(SEND_MESSAGE_PATH, "post")["requestBody"]["content"]["application/json"]["schema"]

    def check_body(self, body: Any, path: str = "$") -> list[str]:
        """Problems with one send-message request body."""
        return self.validator.validate(body, self.send_message_schema, "#sendMessage.requestBody", path)

    def check_read_receipt(self, body: dict[str, Any]) -> list[str]:
        """A read receipt / typing indicator body. The spec gives it only as an example of the
        sendMessage operation ("Send typing indicator and read receipt"), not in the schema: it is
        held to that example's fields and values."""
        examples = self.operation(SEND_MESSAGE_PATH, "post")["requestBody"]["content"]["application/json"]
        example = next(
            (e["value"] for e in examples.get("examples", {}).values() if e.get("value", {}).get("status") == "read"),
            None,
        )
        if example is None:
            return ["$: the spec has no read-receipt example to check against"]
        problems = [
            f"$: property {key!r} is not in the spec's read-receipt example" for key in body if key not in example
        ]
        if body.get("messaging_product") != "whatsapp":
            problems.append("$.messaging_product: must be 'whatsapp'")
        if body.get("status") != example["status"]:
            problems.append(f"$.status: must be {example['status']!r}")
        if not isinstance(body.get("message_id"), str):
            problems.append("$: required property 'message_id' is missing or not a string")
        if "typing_indicator" in body and body["typing_indicator"] != example["typing_indicator"]:
            problems.append(f"$.typing_indicator: must be {example['typing_indicator']!r}")
        return problems

    def _response_schema(self, path: str, method: str, status: int) -> Any:
        response = self.operation(path, method)["responses"].get(str(status))
        if response is None or "content" not in response:
            return None
        return response["content"]["application/json"]["schema"]

    def check_call(self, call: Call, *, responses: bool = True) -> list[str]:
        where = f"{call.http_method} {call.path}"
        problems: list[str] = []
        if call.name == "messages":
            version = call.path.strip("/").split("/")[0]
            if version != self.version:
                problems.append(f"{where}: version {version!r}, the spec describes {self.version!r}")
            if call.encoding != "json":
                problems.append(f"{where}: the body is not a JSON object")
            elif "status" in call.params:
                problems += [f"{where}: {p}" for p in self.check_read_receipt(call.params)]
            else:
                problems += [f"{where}: {p}" for p in self.check_body(call.params)]
            operation = (SEND_MESSAGE_PATH, "post")
        elif call.name == "media":
            operation = (MEDIA_PATH, "get")
        else:
            return problems
        if responses and isinstance(call.response, dict):
            if call.status == 200:
                schema = self._response_schema(*operation, 200)
            else:
                schema = {"$ref": "#/components/schemas/GraphAPIError"}
            if schema is not None:
                problems += [
                    f"{where} -> {call.status}: {p}"
                    for p in self.validator.validate(call.response, schema, "#response", "$response")
                ]
        return problems


@functools.cache
def _load_graph(path: Path) -> GraphSpec:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open(encoding="utf-8") as handle:
        return GraphSpec(yaml.load(handle, Loader=loader))


def graph_problems(calls: Iterable[Call], folder: Path | None = None, *, responses: bool = True) -> list[str]:
    """Every problem of the recorded Graph requests against the WhatsApp Cloud API spec.

    Raises SpecsUnavailable when SPECS_DIR is unset and no folder is given.
    """
    spec = GraphSpec.load(folder)
    return [problem for call in calls for problem in spec.check_call(call, responses=responses)]


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
