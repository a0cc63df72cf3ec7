"""The `aftersales` command: check, chat, test, classify, agent, tickets.

The command line is an edge like any channel, so it lives here and wires adapters to the core.
Every command first checks the whole configuration (`aftersales check` does only that), so a
mistake in a file stops the start with its file and line instead of surfacing mid-conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from bot.config import Settings
from bot.validation import ConfigError, Configuration, validate_configuration

# bot.app (and the machine-learning libraries behind it) is imported by the commands that run the
# bot, not at start: `aftersales check` stays quick.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aftersales", description="After-sales customer service chat bot.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="check every configuration file and setting; list each problem")
    chat = commands.add_parser("chat", help="talk to the bot in the terminal, as a customer")
    chat.add_argument("--user", help="your customer id (default: your login name)")
    test = commands.add_parser("test", help="run scripted dialogue tests (YAML files or folders)")
    test.add_argument("paths", nargs="+", type=Path)
    commands.add_parser("classify", help="JSON lines {text, locale_hint} in, language and intent out")
    serve = commands.add_parser("run", help="serve the customer channels (Telegram, WhatsApp) over HTTP")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    agent = commands.add_parser("agent", help="the terminal agent console: queue, claim, reply, resolve")
    agent.add_argument("--name", default="Agent", help="your name as customers see it")
    tickets = commands.add_parser("tickets", help="list or show tickets")
    tickets_sub = tickets.add_subparsers(dest="tickets_command", required=True)
    listing = tickets_sub.add_parser("list")
    listing.add_argument("--limit", type=int, default=50)
    show = tickets_sub.add_parser("show")
    show.add_argument("ticket_id")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    configuration = validate_configuration(settings)
    if args.command == "check":
        return _check(configuration)
    if configuration.problems:
        _print_problems(configuration, sys.stderr)
        print(f"aftersales {args.command}: not started; `aftersales check` lists the same problems", file=sys.stderr)
        return 2
    try:
        if args.command == "test":
            return asyncio.run(_test(settings, configuration, args.paths))
        if args.command == "classify":
            return _classify(settings, configuration)
        if args.command == "run":
            return _run(settings, configuration, args.host, args.port)
        if args.command == "chat":
            return asyncio.run(_chat(settings, configuration, args.user))
        if args.command == "agent":
            return asyncio.run(_agent(settings, configuration, args.name))
        if args.command == "tickets":
            return asyncio.run(_tickets(settings, configuration, args))
    except ConfigError as error:  # the flows, which bot.app reads once more
        _print_problems(error, sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _run(settings: Settings, configuration: Configuration, host: str, port: int) -> int:
    import uvicorn

    from channels.server import ChannelSettingsError, build

    logging.getLogger().setLevel(logging.INFO)
    try:
        asgi = build(settings, app=_app(settings, configuration))
    except ChannelSettingsError as error:
        print(f"aftersales run: {error}", file=sys.stderr)
        return 2
    # uvicorn turns SIGTERM into a graceful shutdown: the app's lifespan then drains turns in flight.
    uvicorn.run(asgi, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=30)
    return 0


def _check(configuration: Configuration) -> int:
    if configuration.problems:
        _print_problems(configuration, sys.stdout)
        return 1
    print(f"configuration ok: {configuration.summary()}")
    return 0


def _print_problems(found: Configuration | ConfigError, out: TextIO) -> None:
    problems = found.problems
    for problem in problems:
        print(problem, file=out)
    print(f"{len(problems)} configuration problem{'s' if len(problems) != 1 else ''}", file=out)


def _app(settings: Settings, configuration: Configuration) -> Any:
    from bot.app import App, load_brain

    return App(settings, brain=load_brain(settings, configuration))


async def _chat(settings: Settings, configuration: Configuration, user: str | None) -> int:
    from channels.console import chat

    async with _app(settings, configuration) as manager:
        await chat(manager, user=user)
    return 0


async def _test(settings: Settings, configuration: Configuration, paths: list[Path]) -> int:
    from bot.app import load_brain
    from bot.scripted import ScriptRunner
    from bot.store import Store
    from channels.scripted import close_codecs, script_codecs

    files = sorted({f for p in paths for f in ([p] if p.is_file() else p.rglob("*.yml"))})
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"aftersales test: no such file or folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    brain = load_brain(settings, configuration)
    # The embedded Valkey may still be closing its files in the scratch folder as it is removed.
    with tempfile.TemporaryDirectory(prefix="aftersales-test-", ignore_cleanup_errors=True) as scratch:
        data = settings.data_dir if settings.redis_url else Path(scratch)
        store = await Store.open(settings.redis_url, data, ttl_seconds=3600)
        codecs = script_codecs()  # `channel: telegram|whatsapp` scripts run through those adapters
        try:
            runner = ScriptRunner(brain, store, Path(scratch) / "evidence", codecs)
            passed = failed = 0
            for path in files:
                result = await runner.run_path(path)
                if result.passed:
                    passed += 1
                    print(f"PASS {path}  {result.script}")
                else:
                    failed += 1
                    print(f"FAIL {path}  {result.script}")
                    for failure in result.failures:
                        print(f"    {failure}")
        finally:
            await close_codecs(codecs)
            await store.close()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def _classify(settings: Settings, configuration: Configuration) -> int:
    from bot.app import load_brain

    brain = load_brain(settings, configuration)
    dialogue = brain.dialogue
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text = str(item["text"])
        except (json.JSONDecodeError, KeyError, TypeError):
            print(json.dumps({"line": n, "error": "expected a JSON object with a 'text' field"}), flush=True)
            continue
        language = dialogue.detector.decide(text, None, item.get("locale_hint"), dialogue.default_locale).language
        understanding = dialogue.recognizer.understand(text, language)
        result = {
            "text": text,
            "language": language,
            "intent": understanding.intent or "other",
            "confidence": round(understanding.confidence, 4),
        }
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


async def _agent(settings: Settings, configuration: Configuration, name: str) -> int:
    from channels.agent_console import run_console

    async with _app(settings, configuration) as manager:
        await run_console(manager, name)
    return 0


async def _tickets(settings: Settings, configuration: Configuration, args: argparse.Namespace) -> int:
    from channels.agent_console import format_ticket, format_ticket_line

    async with _app(settings, configuration) as manager:
        if args.tickets_command == "list":
            tickets = await manager.tickets.recent(args.limit)
            if not tickets:
                print("no tickets")
            for ticket in tickets:
                print(format_ticket_line(ticket))
            return 0
        ticket = await manager.tickets.get(args.ticket_id)
        if ticket is None:
            print(f"no ticket {args.ticket_id}", file=sys.stderr)
            return 1
        print(format_ticket(ticket))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
